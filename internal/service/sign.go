package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// Signing is the outbound half of the service, OpenDKIM's Mode sv: it
// decides which messages are ours to sign (Direction) and signs them while
// they stream through. A signed message is not verified, gets no
// Authentication-Results, is not judged by DMARC and leaves no record: it
// is our own mail on its way out.
//
// A Signing is immutable; a reload (key rotation) builds a new one.
type Signing struct {
	Table   *dkimsign.Table
	Options *dkimsign.Options
	// Internal are the clients whose mail is signed.
	Internal config.HostList
	// ExternalIgnore are outside clients allowed to send as a signing
	// domain without the log line of External.
	ExternalIgnore config.HostList
	// Authenticated signs mail from clients that used SMTP AUTH.
	Authenticated bool
	// MaxHeaderBytes and MaxHeaders bound the header block kept until the
	// end of the headers; a larger message passes unsigned.
	MaxHeaderBytes, MaxHeaders int
	Log                        *slog.Logger
}

// NewSigning builds the signing half from a validated configuration,
// reading the key files. It returns nil (signing off) when the section is
// not enabled.
func NewSigning(c config.Signing, limits config.Milter, log *slog.Logger) (*Signing, error) {
	if !c.Enabled {
		return nil, nil
	}
	internal, err := config.ParseHostList(c.InternalHosts)
	if err != nil {
		return nil, fmt.Errorf("signing.internal_hosts: %w", err)
	}
	external, err := config.ParseHostList(c.ExternalIgnore)
	if err != nil {
		return nil, fmt.Errorf("signing.external_ignore: %w", err)
	}
	table, err := c.Table()
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return &Signing{Table: table, Options: c.SignOptions(), Internal: internal, ExternalIgnore: external,
		Authenticated: c.SignAuthenticated, MaxHeaderBytes: limits.MaxHeaderBytes,
		MaxHeaders: limits.MaxHeaders, Log: log}, nil
}

// Direction reports whether a message from env is signed rather than
// verified, and why: the client is an internal host, or it authenticated
// and SignAuthenticated is set. A nil Signing signs nothing.
func (sg *Signing) Direction(env milter.Envelope) (sign bool, why string) {
	switch {
	case sg == nil:
		return false, ""
	case sg.Internal.Match(env.ClientIP, env.ClientHost):
		return true, "internal host"
	case sg.Authenticated && env.AuthUser != "":
		return true, "authenticated client"
	}
	return false, ""
}

// External logs a verified (inbound) message whose From domain is one we
// sign for, from a client that is neither internal nor in ExternalIgnore:
// either forged, or our own mail taking a path that does not sign it
// (OpenDKIM logs "external host tried to send mail as"). A nil Signing
// logs nothing.
func (sg *Signing) External(env milter.Envelope, fromDomains []string, queueID string) {
	if sg == nil || sg.ExternalIgnore.Match(env.ClientIP, env.ClientHost) {
		return
	}
	for _, d := range fromDomains {
		if sg.Table.Select(d) != nil {
			sg.Log.Info("external host sent mail as a signing domain; verified, not signed",
				"queue_id", queueID, "client_ip", addrString(env.ClientIP), "client_host", env.ClientHost, "from_domain", d)
			return
		}
	}
}

// Sign starts signing one message; why says for the log how its direction
// was chosen.
func (sg *Signing) Sign(env milter.Envelope, why string) milter.Message {
	return &signMessage{sg: sg, env: env, why: why, start: time.Now(),
		header: headerblock.Block{MaxFields: sg.MaxHeaders, MaxBytes: sg.MaxHeaderBytes}}
}

// signMessage signs one message. The header block is kept until the end of
// the headers (the From domain picks the keys, and the signer needs the
// whole block first); the body goes straight to the signer, chunk by chunk.
type signMessage struct {
	sg    *Signing
	env   milter.Envelope
	why   string
	start time.Time

	header headerblock.Block // within MaxHeaders / MaxHeaderBytes
	from   []string
	eoh    bool

	fromDomain string
	keys       []*dkimsign.LoadedKey
	skip       string // why the message is not signed after all

	// mu guards signer: Abort may run on another goroutine while the
	// session's goroutine writes the body or finishes (shutdown).
	mu     sync.Mutex
	signer *dkimsign.Signer
}

func (m *signMessage) Recipient(string) {}

func (m *signMessage) Header(name, value string) {
	if m.eoh || m.header.Over() {
		return
	}
	if !m.header.Add(name, value) {
		m.header.Buf = nil
		return
	}
	if strings.EqualFold(name, "From") {
		m.from = append(m.from, value)
	}
}

// EndOfHeaders picks the keys by the From domain and starts the signer.
func (m *signMessage) EndOfHeaders() {
	if m.eoh {
		return
	}
	m.eoh = true
	defer func() { m.header.Buf = nil }()
	switch {
	case m.header.Over():
		m.skip = "header too large to sign"
		return
	case len(m.from) != 1:
		// RFC 5322 §3.6: exactly one From field; RFC 6376 §5.4 requires
		// it signed, and with none or two a verifier's DMARC can't use us.
		m.skip = fmt.Sprintf("%d From fields (want 1)", len(m.from))
		return
	}
	domains, err := dmarc.AuthorDomains(m.from)
	switch {
	case err != nil:
		m.skip = "From: " + err.Error()
		return
	case len(domains) != 1:
		m.skip = "From has several domains: " + strings.Join(domains, ",")
		return
	}
	m.fromDomain = domains[0]
	m.keys = m.sg.Table.Select(m.fromDomain)
	if len(m.keys) == 0 {
		m.skip = "no signing rule matches the From domain"
		return
	}
	sg := dkimsign.Start(m.header.Buf, m.keys, m.sg.Options)
	m.mu.Lock()
	m.signer = sg
	m.mu.Unlock()
}

func (m *signMessage) Body(chunk []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signer != nil {
		_, _ = m.signer.Write(chunk) // never fails; errors come from Finish
	}
}

func (m *signMessage) Abort() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signer != nil {
		m.signer.Abort()
		m.signer = nil
	}
}

// takeSigner hands the signer to End, so that a concurrent Abort finds
// none.
func (m *signMessage) takeSigner() *dkimsign.Signer {
	m.mu.Lock()
	defer m.mu.Unlock()
	sg := m.signer
	m.signer = nil
	return sg
}

// End completes the signatures and inserts them at the top of the header
// (RFC 6376 §5.6: prepended, like trace fields). A message that could not
// be signed passes unchanged: refusing our own users' mail for a signing
// problem would be worse than sending it unsigned, and the log says why.
func (m *signMessage) End(ctx context.Context, queueID string) milter.Verdict {
	if !m.eoh {
		m.skip = "message ended before its header did"
	}
	signer := m.takeSigner()
	if signer == nil {
		if m.skip == "" {
			m.skip = "message aborted"
		}
		m.log(queueID, slog.LevelInfo, "message not signed", "why", m.skip)
		return milter.Verdict{}
	}
	values, err := signer.Finish()
	var v milter.Verdict
	sigs := make([]string, 0, len(values))
	for _, val := range values {
		v.Insert = append(v.Insert, milter.HeaderField{Name: "DKIM-Signature", Value: strings.TrimPrefix(val, " ")})
		sigs = append(sigs, sigSummary(val))
	}
	level, msg := slog.LevelInfo, "message signed"
	attrs := []any{"signatures", strings.Join(sigs, ",")}
	if err != nil {
		level, msg = slog.LevelWarn, "message signed partly"
		if len(values) == 0 {
			msg = "message not signed"
		}
		attrs = append(attrs, "err", err.Error())
	}
	m.log(queueID, level, msg, attrs...)
	return v
}

// log writes the one line per signed message.
func (m *signMessage) log(queueID string, level slog.Level, msg string, extra ...any) {
	if m.sg.Log == nil {
		return
	}
	attrs := []any{"queue_id", queueID, "direction", "sign", "reason", m.why,
		"client_ip", addrString(m.env.ClientIP), "mail_from", m.env.MailFrom, "from_domain", m.fromDomain}
	if m.env.AuthUser != "" {
		attrs = append(attrs, "auth_user", m.env.AuthUser)
	}
	attrs = append(attrs, extra...)
	attrs = append(attrs, "duration", time.Since(m.start).Round(100*time.Microsecond).String())
	m.sg.Log.Log(context.Background(), level, msg, attrs...)
}

// sigSummary names a signature for the log: "d/s/a".
func sigSummary(value string) string {
	tag := func(t string) string {
		for _, item := range strings.Split(value, ";") {
			k, v, _ := strings.Cut(item, "=")
			if strings.TrimSpace(k) == t {
				return strings.Join(strings.Fields(v), "")
			}
		}
		return ""
	}
	return tag("d") + "/" + tag("s") + "/" + tag("a")
}

// sign starts signing a message for the Service, counting it as not
// checked ("signed_…") for the metrics.
func (s *Service) sign(env milter.Envelope, why string) milter.Message {
	if s.Observe != nil {
		s.Observe.NotChecked("signed " + why)
	}
	return s.Signing.Sign(env, why)
}

// SignOnly is the milter Backend of the signing.listen sockets: every
// message is signed, whoever the client is, by the Signing of the Service
// current when it begins (so a reload rotates keys here too).
type SignOnly struct{ Current *Current }

// Begin signs the message, or passes it unchanged when the current
// Service does not sign.
func (b SignOnly) Begin(ctx context.Context, env milter.Envelope) milter.Message {
	s := b.Current.Load()
	if s.Signing == nil {
		s.Log.Warn("message on a signing socket passed unsigned: signing is off", "client_ip", addrString(env.ClientIP))
		return nil
	}
	return s.sign(env, "signing socket")
}
