// Package engine evaluates one inbound message: SPF of the envelope, DKIM
// of the streamed content and DMARC of the author domain, returned as plain
// values. It knows nothing of the milter protocol, of stores or of the
// action taken on the result: the milter adapter, `authmilter verify` and
// the tests all drive it the same way.
//
// The DNS work starts as early as its input is known: SPF at MAIL FROM
// (Begin), the DMARC policy lookup when a From field is seen, the DKIM key
// lookups at the end of the header block. Finish joins them.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/headerblock"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// Resolver is the DNS client every check uses. internal/resolver is the
// production one; its errors follow the *net.DNSError contract the check
// libraries rely on.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	DomainExists(ctx context.Context, name string) (bool, error)
}

// MultiFrom says what to do when the From field does not give exactly one
// author domain (RFC 9989 §11.5).
type MultiFrom string

// The MultiFrom choices.
const (
	EvaluateEach MultiFrom = "evaluate-each" // evaluate every domain, keep the strictest failing result
	RejectMulti  MultiFrom = "reject"        // report permerror; local policy rejects
	SkipMulti    MultiFrom = "skip"          // report permerror; no DMARC evaluation
)

// Options are the checks' settings. The zero value disables every check;
// DefaultOptions gives the documented defaults.
type Options struct {
	SPF        bool
	CheckHELO  bool
	SPFTimeout time.Duration

	DKIM        bool
	DKIMOptions dkimverify.Options

	// ARC validates the chain of forwarded mail (RFC 8617); whether a
	// passing chain matters is local policy (internal/policy).
	ARC        bool
	ARCOptions arc.Options

	DMARC            bool
	DMARCMode        dmarc.Mode
	MultiFrom        MultiFrom
	MaxAuthorDomains int

	// MaxHeaderBytes and MaxHeaders bound what one message may make us keep.
	MaxHeaderBytes int
	MaxHeaders     int

	// MessageBudget bounds all DNS work of one message, from Begin to the
	// end of Finish: SPF, DKIM key lookups and DMARC discovery and
	// alignment. Checks still waiting on DNS when it runs out report
	// temperror. Zero means no bound beyond the caller's context.
	MessageBudget time.Duration
}

// DefaultOptions returns every check on, with the defaults of
// config.example.toml.
func DefaultOptions() Options {
	return Options{
		SPF: true, CheckHELO: true, SPFTimeout: 20 * time.Second,
		DKIM:        true,
		DKIMOptions: dkimverify.Options{MinRSABits: 1024, MaxSignatures: 5, ClockDrift: 300 * time.Second, BodyLength: dkimverify.BodyLengthWhole},
		ARC:         true, ARCOptions: arc.Options{MinRSABits: 1024, MaxSets: 10},
		DMARC: true, DMARCMode: dmarc.ModeRFC9989, MultiFrom: EvaluateEach, MaxAuthorDomains: 5,
		MaxHeaderBytes: 1 << 20, MaxHeaders: 1000,
		MessageBudget: 30 * time.Second,
	}
}

// Engine evaluates messages. It is safe for concurrent use; each message
// gets its own Message.
type Engine struct {
	r Resolver
	o Options
}

// New returns an engine that resolves through r.
func New(r Resolver, o Options) *Engine {
	return &Engine{r: r, o: o}
}

// Options returns the settings the engine runs with.
func (e *Engine) Options() Options { return e.o }

// Envelope is what the SMTP conversation told us before the content.
type Envelope struct {
	ClientIP   netip.Addr // invalid when unknown (e.g. a unix-socket client)
	ClientHost string     // verified or claimed host name, "[addr]" when unknown
	HELO       string
	MailFrom   string // the sender SPF checks, without angle brackets; "" for the null sender
	// MailFromRaw is the MAIL FROM argument as the client sent it, when it
	// differs from MailFrom (Postfix's {mail_addr} is what it parsed):
	// shown in the A-R comment, never in a property.
	MailFromRaw string
}

// Message is one message in evaluation. Its methods are called in SMTP order
// from one goroutine: Begin, Header…, EndOfHeaders, Body…, then Finish or
// Abort.
type Message struct {
	e      *Engine
	ctx    context.Context
	cancel context.CancelFunc
	env    Envelope
	start  time.Time
	budget time.Time // end of the DNS budget; zero: none

	spf, helo chan spfcheck.Result

	header     headerblock.Block // the header block for DKIM and ARC, within the limits
	fromValues []string
	fromFields int // From fields seen, kept or not
	fromBytes  int
	// firstFrom is fromValues[0] as startDiscovery parsed it: with the
	// usual single From field, evaluateDMARC reuses it instead of parsing
	// the same value again.
	firstFrom    dmarc.From
	firstFromErr error
	discoveries  map[string]*dmarc.Pending
	dkim         *dkimverify.Verifier
	signatures   int // DKIM-Signature fields seen
	arcFields    int // ARC fields seen
	arc          *arc.Validator
	eohDone      bool
	finishOnce   sync.Once
}

// Begin starts evaluating a message: SPF lookups start now. ctx bounds all
// DNS work of the message; Finish or Abort releases it.
func (e *Engine) Begin(ctx context.Context, env Envelope) *Message {
	start := time.Now()
	var budget time.Time
	var cancel context.CancelFunc
	if e.o.MessageBudget > 0 {
		budget = start.Add(e.o.MessageBudget)
		ctx, cancel = context.WithDeadline(ctx, budget)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	m := &Message{e: e, ctx: ctx, cancel: cancel, env: env, start: start, budget: budget}
	m.header = headerblock.Block{MaxFields: e.o.MaxHeaders, MaxBytes: e.o.MaxHeaderBytes, CountOnly: !e.o.DKIM && !e.o.ARC}
	if e.o.SPF {
		o := &spfcheck.Options{Timeout: e.o.SPFTimeout}
		ip := netIP(env.ClientIP)
		m.spf = make(chan spfcheck.Result, 1)
		go func() {
			m.spf <- spfcheck.CheckMailFrom(ctx, e.r, ip, env.HELO, env.MailFrom, o)
		}()
		if e.o.CheckHELO && env.HELO != "" {
			m.helo = make(chan spfcheck.Result, 1)
			go func() { m.helo <- spfcheck.CheckHELO(ctx, e.r, ip, env.HELO, o) }()
		}
	}
	return m
}

// Header takes one header field as internal/milter hands it over: the
// value starts after the colon, leading white space kept, folds as CRLF
// (see pkg/headerblock). A From field starts its DMARC policy lookup at
// once.
func (m *Message) Header(name, value string) {
	if m.eohDone {
		return
	}
	if m.header.Buf == nil && !m.header.CountOnly && !m.header.Over() {
		m.header.Buf = (*headerBufs.Get().(*[]byte))[:0]
	}
	if !m.header.Add(name, value) {
		m.releaseHeader() // stop keeping it: DKIM is not verified for this message
	}
	// RFC 5322 §4.5: white space may precede the colon ("From :"); the
	// field is the same one to readers (obs-from).
	name = strings.TrimRight(name, " \t")
	if strings.EqualFold(name, "DKIM-Signature") {
		m.signatures++
	} else if m.e.o.ARC && arc.IsARCField(name) {
		m.arcFields++
	}
	if strings.EqualFold(name, "From") {
		// Every From field is kept and read, however many there are (a
		// decoy before the victim's must not hide it), also past the
		// header limits that stop DKIM; only past MaxHeaderBytes of From
		// values are they counted, not kept, and the From is unusable.
		m.fromFields++
		m.fromBytes += len(value)
		if limit := m.e.o.MaxHeaderBytes; m.fromBytes > limit && limit > 0 || m.fromBytes > 1<<20 {
			return
		}
		m.fromValues = append(m.fromValues, value)
		if m.e.o.DMARC {
			m.startDiscovery(value)
		}
	}
}

// startDiscovery begins the policy lookup of the domains in one From value,
// so that the answer is usually in by the end of the message.
func (m *Message) startDiscovery(value string) {
	f, err := dmarc.ParseFrom([]string{value})
	if len(m.fromValues) == 1 {
		m.firstFrom, m.firstFromErr = f, err
	}
	if err != nil {
		return
	}
	domains := f.All()
	if m.discoveries == nil {
		m.discoveries = map[string]*dmarc.Pending{}
	}
	for _, d := range domains {
		if len(m.discoveries) >= m.e.o.MaxAuthorDomains {
			return
		}
		if _, ok := m.discoveries[d]; !ok {
			m.discoveries[d] = dmarc.StartDiscovery(m.ctx, m.e.r, d, m.e.o.DMARCMode)
		}
	}
}

// EndOfHeaders starts DKIM verification: key lookups begin now, the body
// streams into it through Body.
func (m *Message) EndOfHeaders() {
	if m.eohDone {
		return
	}
	m.eohDone = true
	defer m.releaseHeader() // Start keeps a copy of what it needs
	if m.header.Over() || ((!m.e.o.DKIM || m.signatures == 0) && m.arcFields == 0) {
		return
	}
	block := append(m.header.Buf, '\r', '\n')
	m.header.Buf = block
	if m.e.o.DKIM && m.signatures > 0 {
		m.dkim = dkimverify.Start(m.ctx, m.e.r, block, &m.e.o.DKIMOptions)
	}
	if m.arcFields > 0 {
		// Only mail with ARC sets pays for ARC (RFC 8617 §5.2).
		m.arc = arc.Start(m.ctx, m.e.r, block, &m.e.o.ARCOptions)
	}
}

// headerBufs recycles the buffers the header block is rebuilt in (a few KiB
// per message, grown field by field).
var headerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// releaseHeader returns the header buffer to the pool; one that grew very
// large (up to max_header_bytes) is left to the collector.
func (m *Message) releaseHeader() {
	if m.header.Buf != nil && cap(m.header.Buf) <= 64<<10 {
		b := m.header.Buf[:0]
		headerBufs.Put(&b)
	}
	m.header.Buf = nil
}

// Body takes one chunk of the body (CRLF line ends, as the MTA sends it).
func (m *Message) Body(chunk []byte) {
	if !m.eohDone {
		m.EndOfHeaders()
	}
	if m.dkim != nil {
		m.dkim.Write(chunk) //nolint:errcheck // the verifier never fails a write
	}
	if m.arc != nil {
		m.arc.Write(chunk) //nolint:errcheck // never fails
	}
}

// Abort drops the message: background lookups are cancelled, and so is
// the DKIM work, whose budget is the message's context. Abort never waits
// and is safe on any goroutine: a forced shutdown aborts a message whose
// Finish is running on the session's goroutine (it used to wait for that
// Finish, so milter.shutdown_timeout did not hold, issue 16).
func (m *Message) Abort() {
	m.cancel()
}

// Finish waits for every check and returns the result. ctx bounds the wait
// (the MTA's content timeout); checks still running when it ends report
// temperror.
func (m *Message) Finish(ctx context.Context) *Result {
	if !m.eohDone {
		m.EndOfHeaders()
	}
	r := &Result{Envelope: m.env, HeaderTooLarge: m.header.Over()}
	if !m.budget.IsZero() {
		// The alignment lookups at the end count against the budget too.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, m.budget)
		defer cancel()
	}
	m.finishOnce.Do(func() {
		defer m.cancel()
		r.SPF, r.HELO = m.waitSPF(ctx)
		r.DKIM = m.dkimResults()
		r.ARC = m.arcResult()
		m.evaluateDMARC(ctx, r)
	})
	r.Duration = time.Since(m.start)
	return r
}

func (m *Message) waitSPF(ctx context.Context) (mfrom, helo spfcheck.Result) {
	wait := func(c chan spfcheck.Result) spfcheck.Result {
		if c == nil {
			return spfcheck.Result{}
		}
		select {
		case o := <-c:
			return o
		case <-ctx.Done():
			return spfcheck.Result{Status: spfcheck.StatusTempError, Reason: "time budget exhausted", Err: ctx.Err()}
		}
	}
	return wait(m.spf), wait(m.helo)
}

func (m *Message) dkimResults() []dkimverify.Result {
	switch {
	case !m.e.o.DKIM:
		return nil
	case m.header.Over() && m.signatures > 0:
		return []dkimverify.Result{{Status: dkimverify.StatusPermError, Reason: "header block too large, not verified"}}
	case m.dkim == nil:
		return []dkimverify.Result{} // enabled, no signature: dkim=none
	}
	return m.dkim.Results()
}

func (m *Message) arcResult() arc.Result {
	switch {
	case !m.e.o.ARC:
		return arc.Result{}
	case m.header.Over() && m.arcFields > 0:
		return arc.Result{Status: arc.StatusFail, Reason: "header block too large, not verified"}
	case m.arc == nil:
		return arc.Result{Status: arc.StatusNone}
	}
	return m.arc.Result()
}

// evaluateDMARC decides the DMARC result (RFC 9989 §4.8) from the author
// domain(s) and the SPF and DKIM results.
//
// A From that cannot be judged gives permerror with FromUnusable set, and
// local policy rejects it by default (dmarc.unusable_from): no From, more
// than one From field (RFC 5322 §3.6 requires exactly one; clients then
// show either), a value not readable with certainty, or more author
// domains than MaxAuthorDomains (RFC 9989 §11.5: an unevaluated domain may
// be the victim, so the strictest policy is the only safe one).
func (m *Message) evaluateDMARC(ctx context.Context, r *Result) {
	if !m.e.o.DMARC {
		return
	}
	f, err := m.firstFrom, m.firstFromErr
	if len(m.fromValues) != 1 {
		f, err = dmarc.ParseFrom(m.fromValues)
	}
	r.AuthorDomains, r.ShownDomains = f.Domains, f.Shown
	all := f.All()
	max := m.e.o.MaxAuthorDomains
	if max <= 0 {
		max = dmarc.DefaultMaxAuthorDomains
	}
	switch {
	case m.fromFields > len(m.fromValues):
		err = fmt.Errorf("%w: %d From fields, not all kept (header block too large)", dmarc.ErrUnreadableFrom, m.fromFields)
	case err != nil:
	case f.Fields > 1:
		err = fmt.Errorf("%w: %d fields (RFC 5322 §3.6 allows one)", ErrSeveralFrom, f.Fields)
	case len(all) > max:
		err = fmt.Errorf("%w: %d author domains, more than dmarc.max_author_domains = %d", dmarc.ErrTooManyAuthors, len(all), max)
	}
	if err != nil {
		r.FromProblem, r.FromUnusable = err.Error(), true
		r.DMARC = dmarc.Result{Status: dmarc.StatusPermError, Reason: r.FromProblem, Err: err}
		if len(all) > 0 {
			r.DMARC.AuthorDomain = all[0]
		}
		return
	}
	domains := f.Domains
	if len(domains) > 1 {
		r.FromProblem = "several author domains"
		if m.e.o.MultiFrom != EvaluateEach {
			r.DMARC = dmarc.Result{Status: dmarc.StatusPermError, AuthorDomain: domains[0], Reason: r.FromProblem}
			return
		}
	}
	if len(f.Shown) > 0 {
		// The message must fail for every domain it might show: an
		// address in a display name, comment or encoded-word is
		// evaluated like an author domain.
		r.FromProblem = "address in display name or comment: " + strings.Join(f.Shown, ",")
	}
	in := dmarc.Input{AuthorDomain: all[0], SPFResult: string(r.SPF.Status), SPFDomain: r.SPF.Domain}
	for _, d := range r.DKIM {
		if d.Testing {
			// RFC 6376 §3.6.1: a signer in testing mode is treated as
			// unsigned, so its signature never makes DMARC pass.
			continue
		}
		in.DKIM = append(in.DKIM, dmarc.DKIMInput{Domain: d.Domain, Selector: d.Selector, Result: string(d.Status)})
	}
	o := &dmarc.Options{Mode: m.e.o.DMARCMode}
	if len(all) == 1 {
		p := m.discoveries[all[0]]
		if p == nil {
			p = dmarc.StartDiscovery(m.ctx, m.e.r, all[0], m.e.o.DMARCMode)
		}
		r.DMARC = p.Evaluate(ctx, m.e.r, in, o)
		r.DMARCAll = []dmarc.Result{r.DMARC}
		return
	}
	// RFC 9989 §11.5: evaluate each, act on the strictest failing result.
	// The discoveries started at the From fields are in the resolver's
	// cache (or in flight, joined by singleflight) by now.
	r.DMARC, r.DMARCAll = dmarc.EvaluateEach(ctx, m.e.r, all, in, max, o)
}

// ErrSeveralFrom: the message has more than one From field.
var ErrSeveralFrom = errors.New("more than one From field")

// netIP is the client address as the SPF library takes it; nil when unknown.
func netIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}
