package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/engine"
)

// baseZone is the DNS every milter test starts from.
const baseZone = `
sender.test.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
_dmarc.sender.test.   300 IN TXT "v=DMARC1; p=reject"
mx.sender.test.       300 IN A   192.0.2.1
mx.sender.test.       300 IN TXT "v=spf1 a -all"
soft.test.            300 IN TXT "v=spf1 ~all"
quar.test.            300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.quar.test.     300 IN TXT "v=DMARC1; p=quarantine"
none.test.            300 IN TXT "v=spf1 -all"
_dmarc.none.test.     300 IN TXT "v=DMARC1; p=none"
other.test.           300 IN TXT "v=spf1 -all"
_dmarc.other.test.    300 IN TXT "v=DMARC1; p=reject"
`

const authservID = "mx.rcpt.test"

// harness runs the real milter server with the real service on a loopback
// port, resolving through the real resolver against a test DNS server.
type harness struct {
	t    testing.TB
	dns  *dnstest.Server
	srv  *milter.Server
	addr string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t testing.TB, zone string, edit func(*config.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dns: dnstest.New(t, zone), logs: &syncBuffer{}}
	cfg := config.Default()
	cfg.AuthservID = authservID
	cfg.Policy.IgnoreHosts = []string{"127.0.0.0/8", "::1"}
	cfg.DNS.Servers = []string{h.dns.Addr()}
	cfg.DNS.Timeout = config.Duration{Duration: 300 * time.Millisecond}
	cfg.DNS.Attempts = 1
	cfg.SPF.Timeout = config.Duration{Duration: 2 * time.Second}
	if edit != nil {
		edit(cfg)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.Duration, Attempts: cfg.DNS.Attempts})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(h.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := service.EngineOptions(cfg)
	svc := &service.Service{AuthservID: cfg.AuthservID, Engine: engine.New(res, opts), Policy: pol,
		ReceivedSPF: cfg.SPF.ReceivedSPFHeader, Log: log}
	h.srv = milter.NewServer(svc, milter.Options{IdleTimeout: 5 * time.Second, Log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("milter log:\n%s", h.logs.String())
		}
	})
	return h
}

// conn is one MTA connection, speaking as Postfix does.
type conn struct {
	t testing.TB
	s *gomilter.ClientSession
}

func (h *harness) connect(ip, host, helo string) *conn {
	h.t.Helper()
	c := gomilter.NewClientWithOptions("tcp", h.addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	fam := gomilter.FamilyInet
	if strings.Contains(ip, ":") {
		fam = gomilter.FamilyInet6
	}
	must(h.t, s.Macros(gomilter.CodeConn, "j", authservID, "{daemon_name}", authservID))
	cont(h.t)(s.Conn(host, fam, 25, ip))
	cont(h.t)(s.Helo(helo))
	return &conn{t: h.t, s: s}
}

// msg is one message to send.
type msg struct {
	from     string // MAIL FROM
	auth     string // {auth_authen}
	headers  [][2]string
	body     string
	bodyBufs [][]byte // used instead of body when set
	macros   []string // extra macros at the header stage
	noAbort  bool     // do not send Abort after the end of message
}

// result is what the MTA got back at end of message.
type result struct {
	mods   []gomilter.ModifyAction
	action *gomilter.Action
}

func (c *conn) send(m msg) result {
	c.t.Helper()
	mail := []string{"{mail_addr}", m.from}
	if m.auth != "" {
		mail = append(mail, "{auth_type}", "PLAIN", "{auth_authen}", m.auth)
	}
	must(c.t, c.s.Macros(gomilter.CodeMail, mail...))
	cont(c.t)(c.s.Mail("<"+m.from+">", nil))
	cont(c.t)(c.s.Rcpt("<rcpt@rcpt.test>", nil))
	for _, f := range m.headers {
		must(c.t, c.s.Macros(gomilter.CodeHeader, append([]string{"i", "ABC123"}, m.macros...)...))
		cont(c.t)(c.s.HeaderField(f[0], f[1]))
	}
	cont(c.t)(c.s.HeaderEnd())
	bufs := m.bodyBufs
	if bufs == nil && m.body != "" {
		bufs = [][]byte{[]byte(m.body)}
	}
	for _, b := range bufs {
		cont(c.t)(c.s.BodyChunk(b))
	}
	mods, act, err := c.s.End()
	if err != nil {
		c.t.Fatalf("end of message: %v", err)
	}
	if !m.noAbort {
		must(c.t, c.s.Abort()) // Postfix sends Abort after every message
	}
	return result{mods: mods, action: act}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cont returns a check that a milter step answered continue:
// cont(t)(s.Helo(name)).
func cont(t testing.TB) func(*gomilter.Action, error) {
	return func(a *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if a.Code != gomilter.ActContinue {
			t.Fatalf("got action %c, want continue", a.Code)
		}
	}
}

// ar returns the value of the Authentication-Results field we inserted at
// the top, or fails.
func (r result) ar(t testing.TB) string {
	t.Helper()
	for _, m := range r.mods {
		if m.Code == gomilter.ActInsertHeader && m.HeaderName == "Authentication-Results" {
			if m.HeaderIndex != 0 {
				t.Errorf("A-R inserted at index %d, want 0 (the top)", m.HeaderIndex)
			}
			if !strings.HasPrefix(m.HeaderValue, " "+authservID+";") {
				t.Errorf("A-R value %q does not start with a space and our authserv-id", m.HeaderValue)
			}
			return m.HeaderValue
		}
	}
	t.Fatalf("no Authentication-Results inserted; mods %+v", r.mods)
	return ""
}

// reply returns the custom SMTP reply, "" for continue/accept.
func (r result) reply() string {
	if r.action.Code == gomilter.ActContinue || r.action.Code == gomilter.ActAccept {
		return ""
	}
	return fmt.Sprintf("%c %d %s", r.action.Code, r.action.SMTPCode, r.action.SMTPText)
}

func (r result) quarantined() bool {
	for _, m := range r.mods {
		if m.Code == gomilter.ActQuarantine {
			return true
		}
	}
	return false
}

func stdHeaders(from string) [][2]string {
	return [][2]string{
		{"From", " Alice <alice@" + from + ">"},
		{"To", " rcpt@rcpt.test"},
		{"Subject", " test"},
		{"Message-ID", " <1@" + from + ">"},
	}
}

// hasResult reports whether the A-R value has a result matching want,
// written "method=value prop=v …" (comments and folding ignored).
func hasResult(ar, want string) bool {
	_, rs := authres.Parse(ar)
	_, w := authres.Parse("x; " + want)
	if len(w) != 1 {
		return false // not a result: the caller compares text
	}
next:
	for _, r := range rs {
		if r.Method != w[0].Method || r.Value != w[0].Value {
			continue
		}
		for _, p := range w[0].Props {
			if r.Prop(p.Key) != p.Value {
				continue next
			}
		}
		return true
	}
	return false
}
