// Package service joins the pieces for one message: it is the milter
// Backend that runs the engine, asks the policy for the action, and turns
// both into the header edits and the reply the MTA applies.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/authmilter/authmilter/internal/failrep"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/headerblock"
	"github.com/authmilter/authmilter/pkg/resultheader"
)

// Service is the milter backend.
type Service struct {
	AuthservID  string
	Engine      *engine.Engine
	Policy      *policy.Policy
	ReceivedSPF bool
	Log         *slog.Logger
	// Records keeps each message's records for aggregate reports
	// (internal/store); nil keeps none. In sync mode the reply waits for
	// the commit.
	Records *store.Recorder
	// Observe is told about every message (metrics); nil observes nothing.
	Observe Observer
	// Signing signs outbound mail (sign.go); nil signs nothing.
	Signing *Signing
	// Failures queues DMARC failure reports (internal/failrep); nil sends
	// none. Only then is the header block kept for the report.
	Failures *failrep.Reporter
	// Incoming reads report mails sent to the site's rua mailboxes
	// (incoming.go); nil reads none.
	Incoming *Incoming
}

// Observer is told what happened to each message, for metrics
// (internal/metrics implements it). Its methods must be fast and safe for
// concurrent use.
type Observer interface {
	// Message: a checked message, its decision, and how long its end of
	// message took (the checks still running, the policy, the store).
	Message(r *engine.Result, d policy.Decision, eom time.Duration)
	// NotChecked: a message the policy skipped, and why.
	NotChecked(reason string)
	// Recorded: how long storing the message's records took.
	Recorded(took time.Duration)
}

// Current is the milter Backend of a daemon that reloads its
// configuration: each message goes to the Service current when it begins
// and keeps that one to its end, so a reload (Set) never changes a message
// in flight and never drops a connection.
type Current struct{ p atomic.Pointer[Service] }

// NewCurrent returns a Current serving s.
func NewCurrent(s *Service) *Current {
	c := &Current{}
	c.p.Store(s)
	return c
}

// Begin hands the message to the current Service.
func (c *Current) Begin(ctx context.Context, env milter.Envelope) milter.Message {
	return c.p.Load().Begin(ctx, env)
}

// Set makes s the Service for messages that begin from now on.
func (c *Current) Set(s *Service) { c.p.Store(s) }

// Load returns the current Service.
func (c *Current) Load() *Service { return c.p.Load() }

// Begin starts a message, or returns nil for a client that is not checked.
func (s *Service) Begin(ctx context.Context, env milter.Envelope) milter.Message {
	// Our own mail on its way out is signed, never verified; this comes
	// before Skip, which would pass internal and authenticated clients.
	if sign, why := s.Signing.Direction(env); sign {
		return s.sign(env, why)
	}
	if skip, why := s.Skip(env); skip {
		s.Log.Debug("not checked", "reason", why, "client_ip", addrString(env.ClientIP), "mail_from", env.MailFrom)
		if s.Observe != nil {
			s.Observe.NotChecked(why)
		}
		return nil
	}
	return s.Check(ctx, env)
}

// Skip reports whether the policy leaves a message from env unchecked and
// unchanged, and why.
func (s *Service) Skip(env milter.Envelope) (bool, string) {
	skip, why := s.Policy.Skip(env.ClientIP, env.ClientHost, env.AuthUser)
	if !skip {
		skip, why = s.Policy.SkipMailFrom(env.MailFrom)
	}
	return skip, why
}

// Check starts a message that is checked whatever Skip says: the milter's
// path once Begin has decided to check, and `authmilter verify`'s, which
// explains what a skipped client's message would get too.
func (s *Service) Check(ctx context.Context, env milter.Envelope) *Message {
	// SPF checks the address the MTA parsed ({mail_addr}), not the raw
	// MAIL argument (issue #15 item 5); the raw one is only shown.
	ee := engine.Envelope{ClientIP: env.ClientIP, ClientHost: env.ClientHost, HELO: env.HELO, MailFrom: env.MailFrom}
	if env.MailAddrSet && env.MailAddr != env.MailFrom {
		ee.MailFrom, ee.MailFromRaw = env.MailAddr, env.MailFrom
	}
	m := s.Engine.Begin(ctx, ee)
	return &Message{s: s, env: env, em: m}
}

// Message is one checked message: a milter.Message whose Outcome, after
// End, is the engine's results and the policy's decision.
type Message struct {
	s        *Service
	env      milter.Envelope
	em       *engine.Message
	rcpts    []string
	arSeen   int      // Authentication-Results fields so far (the protocol's 1-based index)
	from     []string // From fields, kept only when signing is on
	forged   []milter.HeaderRef
	header   []byte                  // the header block, kept only for failure reports
	report   atomic.Pointer[capture] // a report mail to a rua mailbox (incoming.go); Abort may read it from another goroutine
	result   *engine.Result
	decision policy.Decision
}

// maxReportHeader bounds the header block kept for a failure report; fields
// past it are left out of the report (a report is a diagnosis, not an
// archive).
const maxReportHeader = 64 << 10

func (m *Message) Recipient(addr string) {
	m.rcpts = append(m.rcpts, addr)
	m.incomingRecipient(addr)
}

func (m *Message) Header(name, value string) {
	// RFC 5322 §4.5 obsolete syntax allows white space before the colon
	// ("Authentication-Results :"); readers take it for the same field,
	// and so does Postfix when it counts a name's fields.
	if n := strings.TrimRight(name, " \t"); strings.EqualFold(n, authres.HeaderName) {
		m.arSeen++
		// RFC 8601 §5: a field claiming to be ours did not come from us.
		if authres.SameServID(value, m.s.AuthservID) {
			m.forged = append(m.forged, milter.HeaderRef{Name: n, Index: m.arSeen})
		}
	}
	if m.s.Failures != nil && len(m.header)+len(name)+len(value) < maxReportHeader {
		m.header = headerblock.Append(m.header, name, value)
	}
	if m.s.Signing != nil && strings.EqualFold(name, "From") && len(m.from) < 2 {
		m.from = append(m.from, value) // for Signing.External when DMARC is off
	}
	m.incomingHeader(name, value)
	m.em.Header(name, value)
}

func (m *Message) EndOfHeaders() {
	m.incomingEOH()
	m.em.EndOfHeaders()
}

func (m *Message) Body(chunk []byte) {
	m.incomingBody(chunk)
	m.em.Body(chunk)
}

// Abort may run on another goroutine while the session's goroutine is in
// any other method (the connection closed at shutdown): it only frees the
// report slot (once) and cancels the checks, both safe to do concurrently.
func (m *Message) Abort() {
	m.incomingDone()
	m.em.Abort()
}

func (m *Message) End(ctx context.Context, queueID string) milter.Verdict {
	start := time.Now()
	r := m.em.Finish(ctx)
	d := m.s.Policy.Decide(r, m.env.ClientIP, m.env.ClientHost)
	m.result, m.decision = r, d
	if m.s.Signing != nil {
		authors := r.AuthorDomains
		if len(authors) == 0 { // DMARC off: the engine did not read From
			authors, _ = dmarc.AuthorDomains(m.from)
		}
		m.s.Signing.External(m.env, authors, queueID)
	}
	v := milter.Verdict{Delete: m.forged, Reply: d.Reply}
	ar := authres.Format(m.s.AuthservID, resultheader.ARCOverride(resultheader.AuthResults(r), d.Sealer, d.Why))
	v.Insert = append(v.Insert, milter.HeaderField{Name: authres.HeaderName, Value: ar})
	if m.s.ReceivedSPF && r.SPF.Status != "" {
		v.Insert = append(v.Insert, milter.HeaderField{Name: "Received-SPF", Value: resultheader.ReceivedSPF(m.s.AuthservID,
			engine.Envelope{ClientIP: m.env.ClientIP, HELO: m.env.HELO, MailFrom: m.env.MailFrom}, r.SPF)})
	}
	if d.Action == policy.Quarantine {
		v.Quarantine = "DMARC policy quarantine for " + r.DMARC.AuthorDomain
	}
	if m.s.Records != nil {
		t := time.Now()
		m.s.Records.Record(ctx, store.Message{Result: r, Decision: d, Reporter: m.s.AuthservID, QueueID: queueID,
			ClientIP: m.env.ClientIP, MailFrom: m.env.MailFrom, Recipients: m.rcpts, Time: time.Now()})
		if m.s.Observe != nil {
			m.s.Observe.Recorded(time.Since(t))
		}
	}
	m.s.Failures.Offer(failrep.Message{Result: r, Action: d.Action.String(), ClientIP: m.env.ClientIP,
		MailFrom: m.env.MailFrom, Header: m.header, AuthResults: ar, Time: time.Now()})
	eom := time.Since(start)
	m.log(ctx, queueID, r, d, eom)
	if m.s.Observe != nil {
		m.s.Observe.Message(r, d, eom)
	}
	if m.incomingEnd(ctx, queueID) && d.Reply == "" {
		return discardVerdict
	}
	return v
}

// Outcome returns what End found: the engine's results and the policy's
// decision (nil and the zero Decision before End).
func (m *Message) Outcome() (*engine.Result, policy.Decision) { return m.result, m.decision }

// log writes the one info line of a checked message: who sent it, every
// result, what the MTA was told and why, and how long it took. Its
// attributes are built only when Info is enabled (they cost ~20
// allocations per message).
func (m *Message) log(ctx context.Context, queueID string, r *engine.Result, d policy.Decision, eom time.Duration) {
	if !m.s.Log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	dkim := make([]string, 0, len(r.DKIM))
	for _, k := range r.DKIM {
		dkim = append(dkim, fmt.Sprintf("%s:%s", k.Domain, k.Status))
	}
	attrs := []any{
		"queue_id", queueID, "client_ip", addrString(m.env.ClientIP), "helo", m.env.HELO,
		"mail_from", m.env.MailFrom, "from_domain", joinCapped(r.AuthorDomains, maxLoggedDomains),
		"spf", string(r.SPF.Status), "spf_helo", string(r.HELO.Status), "dkim", strings.Join(dkim, ","),
		"dmarc", string(r.DMARC.Status), "policy", string(r.DMARC.Applied),
		"action", d.Action.String(), "disposition", d.Disposition, "rcpts", len(m.rcpts),
	}
	if d.Override != "" {
		attrs = append(attrs, "override", d.Override)
	}
	if d.Why != "" {
		attrs = append(attrs, "why", d.Why)
	}
	attrs = append(attrs, "duration", r.Duration.Round(100*time.Microsecond).String(),
		"eom", eom.Round(100*time.Microsecond).String())
	m.s.Log.Info("message", attrs...)
}

// maxLoggedDomains caps the author domains in a message's log line: one
// From field may list tens of thousands (issue 16), and the log must not
// grow with the message.
const maxLoggedDomains = 10

// joinCapped joins the first n elements of l with commas and says how many
// more there were.
func joinCapped(l []string, n int) string {
	if len(l) <= n {
		return strings.Join(l, ",")
	}
	return fmt.Sprintf("%s,…(%d more)", strings.Join(l[:n], ","), len(l)-n)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
