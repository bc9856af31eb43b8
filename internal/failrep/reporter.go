package failrep

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
)

// Store is what the reporter needs of internal/store.
type Store interface {
	TakeLimit(ctx context.Context, name string, max int, window time.Duration, now time.Time) (bool, error)
	QueueFailure(ctx context.Context, now time.Time, policyDomain, uri, data string) (string, error)
}

// Resolver looks up the SPF record for SPF-DNS (the daemon's resolver).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Message is what the service hands over at the end of a checked message.
type Message struct {
	Result      *engine.Result
	Action      string     // what the MTA was told: accept, quarantine, tempfail, reject
	ClientIP    netip.Addr // invalid when unknown
	MailFrom    string     // without angle brackets; "" for the null sender
	Header      []byte     // the header block as received, CRLF line ends
	AuthResults string     // the Authentication-Results value we added
	Time        time.Time
}

// Outcomes counted by Observe (metrics label values).
const (
	OutcomeQueued        = "queued"         // a report queued for a destination
	OutcomeLimitedSource = "limited_source" // (policy domain, IP, kind) already reported in this interval
	OutcomeLimitedGlobal = "limited_global" // max_per_hour reached
	OutcomeNotAllowed    = "not_allowed"    // policy domain not in policy_domains
	OutcomeReportMail    = "report_mail"    // the message is itself a report or automatic mail
	OutcomePSD           = "psd"            // ruf of a psd=y record (RFC 9991 §2)
	OutcomeBusy          = "busy"           // the queue to the store was full
	OutcomeError         = "error"          // the store failed
)

// Reporter turns failing messages into queued failure reports. Offer is
// called on the mail path and never waits: the store work runs on one
// goroutine behind a bounded queue, and a full queue drops the report
// (counted), never the mail.
type Reporter struct {
	Store         Store
	Resolver      Resolver // nil: no SPF-DNS field
	ReportingMTA  string   // our authserv-id
	PolicyDomains []string // allowed policy domains (and subdomains); "*" for all
	Redact        bool     // local parts of addresses become "redacted"
	Interval      time.Duration
	MaxPerHour    int
	Log           *slog.Logger
	Observe       func(outcome string) // nil: not counted
	Now           func() time.Time     // nil: time.Now

	once sync.Once
	jobs chan job
	done chan struct{}
}

type job struct {
	m     Message
	items []item
}

// item is one author domain's failure with its DMARC evaluation.
type item struct {
	res dmarc.Result
	f   Failure
}

// queueSize bounds the reports waiting for the store.
const queueSize = 256

// Start runs the store goroutine until ctx ends; Stop waits for it.
func (r *Reporter) Start(ctx context.Context) {
	r.once.Do(func() {
		r.jobs = make(chan job, queueSize)
		r.done = make(chan struct{})
		go r.run(ctx)
	})
}

// Stop waits for the goroutine Start began (after its ctx ended).
func (r *Reporter) Stop() {
	if r.done != nil {
		<-r.done
	}
}

func (r *Reporter) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Reporter) observe(o string) {
	if r.Observe != nil {
		r.Observe(o)
	}
}

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Offer looks at one checked message and queues the failure reports it
// warrants. Cheap when there are none (most mail): no parsing, no store.
func (r *Reporter) Offer(m Message) {
	if r == nil || m.Result == nil || r.jobs == nil {
		return
	}
	var items []item
	for _, res := range m.Result.DMARCAll {
		if res.Discovery == nil || res.Discovery.Record == nil || len(res.Discovery.Record.RUF) == 0 {
			continue
		}
		fs := Failures(m.Result, res)
		if len(fs) == 0 {
			continue
		}
		if res.Discovery.Record.PSD == 'y' {
			// RFC 9991 §2: ruf of a PSD record only by agreement.
			r.observe(OutcomePSD)
			continue
		}
		if !r.allowed(res.Discovery.PolicyDomain) {
			r.observe(OutcomeNotAllowed)
			continue
		}
		for _, f := range fs {
			items = append(items, item{res: res, f: f})
		}
	}
	if len(items) == 0 {
		return
	}
	if IsReportMail(m.Header) {
		r.observe(OutcomeReportMail)
		return
	}
	select {
	case r.jobs <- job{m: m, items: items}:
	default:
		r.observe(OutcomeBusy)
		r.log().Warn("failure report dropped: queue to the store is full", "author_domain", items[0].res.AuthorDomain)
	}
}

// allowed: the policy domain is listed, or below a listed domain, or "*".
// Both are in identity.ASCII form: discovery's policy domain, and the
// configuration's list (normalised when it was loaded).
func (r *Reporter) allowed(dom string) bool {
	for _, a := range r.PolicyDomains {
		if a == "*" || dom == a || strings.HasSuffix(dom, "."+a) {
			return true
		}
	}
	return false
}

// IsReportMail reports whether a header block belongs to mail no failure
// report may be made about (loop prevention, RFC 9991 §5.1, RFC 3834): a
// report (multipart/report, of any report-type: ARF, DSN, MDN), an
// aggregate report (RFC 9990 §3.5.2 Subject "Report Domain: …"), or any
// automatic mail (Auto-Submitted other than "no"), or a header block that
// cannot be read (when in doubt, no report).
func IsReportMail(header []byte) bool {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(header[:len(header):len(header)], "\r\n\r\n"...)))).ReadMIMEHeader()
	if err != nil {
		// A header block Go's reader refuses: when in doubt, no report.
		return true
	}
	for _, ct := range h.Values("Content-Type") {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "multipart/report") {
			return true
		}
	}
	for _, as := range h.Values("Auto-Submitted") {
		v := strings.ToLower(strings.TrimSpace(as))
		if i := strings.IndexAny(v, " \t;("); i >= 0 {
			v = v[:i]
		}
		if v != "no" {
			return true
		}
	}
	for _, s := range h.Values("Subject") {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "report domain:") {
			return true
		}
	}
	return false
}

func (r *Reporter) run(ctx context.Context) {
	defer close(r.done)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.jobs:
			for _, it := range j.items {
				r.one(ctx, j.m, it)
			}
		}
	}
}

// one applies the rate limits to one failure and queues a report per ruf
// URI. The per-source limit comes first, so that a flood from one IP
// spends one global slot per interval, not one per message.
func (r *Reporter) one(ctx context.Context, m Message, it item) {
	now := r.now()
	res, f := it.res, it.f
	rec := res.Discovery.Record
	pd := res.Discovery.PolicyDomain
	ip := ""
	if m.ClientIP.IsValid() {
		ip = m.ClientIP.Unmap().String()
	}
	log := r.log().With("policy_domain", pd, "author_domain", res.AuthorDomain, "source_ip", ip, "kind", string(f.Kind))
	ok, err := r.Store.TakeLimit(ctx, "fr|"+pd+"|"+ip+"|"+string(f.Kind), 1, r.Interval, now)
	if err != nil {
		r.observe(OutcomeError)
		log.Warn("failure report not queued", "err", err)
		return
	}
	if !ok {
		r.observe(OutcomeLimitedSource)
		log.Debug("failure report rate-limited: this source and kind were reported in the interval")
		return
	}
	ok, err = r.Store.TakeLimit(ctx, "fr-global", r.MaxPerHour, time.Hour, now)
	if err != nil {
		r.observe(OutcomeError)
		log.Warn("failure report not queued", "err", err)
		return
	}
	if !ok {
		r.observe(OutcomeLimitedGlobal)
		log.Info("failure report rate-limited: failure_reports.max_per_hour reached")
		return
	}
	rep := r.build(ctx, m, res, f, ip)
	for _, u := range rec.RUF {
		rep.URI = u.Address
		data, err := json.Marshal(rep)
		if err == nil {
			_, err = r.Store.QueueFailure(ctx, now, pd, u.Address, string(data))
		}
		if err != nil {
			r.observe(OutcomeError)
			log.Warn("failure report not queued", "uri", u.Address, "err", err)
			continue
		}
		r.observe(OutcomeQueued)
		log.Info("failure report queued", "uri", u.Address, "auth_failure", f.AuthFailure)
	}
}

func (r *Reporter) build(ctx context.Context, m Message, res dmarc.Result, f Failure, ip string) Report {
	redact := func(s string) string { return s }
	if r.Redact {
		redact = RedactLocalParts
	}
	rep := Report{
		Kind:              f.Kind,
		AuthFailure:       f.AuthFailure,
		Arrival:           m.Time.UTC(),
		ReportingMTA:      r.ReportingMTA,
		SourceIP:          ip,
		AuthorDomain:      res.AuthorDomain,
		PolicyDomain:      res.Discovery.PolicyDomain,
		DiscoveryMethod:   res.Discovery.Method,
		OriginalMailFrom:  redact(m.MailFrom),
		IdentityAlignment: f.IdentityAlignment,
		AuthResults:       redact(m.AuthResults),
		DeliveryResult:    deliveryResult(m.Action),
		Headers:           redact(string(m.Header)),
	}
	if f.DKIM != nil {
		rep.DKIMDomain, rep.DKIMIdentity, rep.DKIMSelector = f.DKIM.Domain, redact(f.DKIM.Identifier), f.DKIM.Selector
	}
	spfFailed := f.Kind == KindSPF
	for _, a := range f.IdentityAlignment {
		spfFailed = spfFailed || a == "spf"
	}
	if spf := m.Result.SPF; spfFailed && spf.Domain != "" && r.Resolver != nil {
		rep.SPFDomain = spf.Domain
		// Cached by the daemon's resolver: the check just asked the same.
		if txts, err := r.Resolver.LookupTXT(ctx, spf.Domain); err == nil {
			for _, t := range txts {
				if t == "v=spf1" || strings.HasPrefix(strings.ToLower(t), "v=spf1 ") {
					rep.SPFDNS = append(rep.SPFDNS, t)
				}
			}
		}
	}
	return rep
}
