package service_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/authres"
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
	srv  *testmilter.Server
	addr string
	logs *testmilter.Logs
}

func newHarness(t testing.TB, zone string, edit func(*config.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dns: dnstest.New(t, zone), logs: &testmilter.Logs{}}
	cfg := testmilter.Config(authservID, h.dns.Addr(), 300*time.Millisecond)
	cfg.Policy.IgnoreHosts = []string{"127.0.0.0/8", "::1"}
	cfg.SPF.Timeout = config.Duration{Duration: 2 * time.Second}
	if edit != nil {
		edit(cfg)
	}
	log := testmilter.Logger(h.logs, slog.LevelDebug)
	return h.serve(testmilter.NewService(t, cfg, log, nil), log)
}

// serve runs the real milter server with backend on a loopback port.
func (h *harness) serve(backend milter.Backend, log *slog.Logger) *harness {
	h.t.Helper()
	h.srv = testmilter.Serve(h.t, backend, milter.Options{IdleTimeout: 5 * time.Second, Log: log}, h.logs)
	h.addr = h.srv.Addr
	return h
}

// conn is one MTA connection, speaking as Postfix does.
type conn struct {
	t testing.TB
	s *gomilter.ClientSession
}

func (h *harness) connect(ip, host, helo string) *conn {
	h.t.Helper()
	s, err := testmilter.Dial("tcp", h.addr, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	must(h.t, testmilter.Connect(s, []string{"j", authservID, "{daemon_name}", authservID}, host, ip, helo))
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
	// rawMail, when set, is the MAIL argument as the client typed it;
	// from is then what the MTA parsed ({mail_addr}).
	rawMail string
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
	bufs := m.bodyBufs
	if bufs == nil && m.body != "" {
		bufs = [][]byte{[]byte(m.body)}
	}
	raw := m.from
	if m.rawMail != "" {
		raw = m.rawMail
	}
	r, err := testmilter.Send(c.s, testmilter.Message{MailMacros: mail, From: raw,
		HeaderMacros: append([]string{"i", "ABC123"}, m.macros...), Headers: m.headers, Body: bufs,
		NoAbort: m.noAbort}) // Postfix sends Abort after every message
	if err != nil {
		c.t.Fatal(err)
	}
	return result{mods: r.Mods, action: r.Action}
}

// sendNoMailAddr sends m as an MTA that sends no {mail_addr} macro.
func (c *conn) sendNoMailAddr(m msg) result {
	c.t.Helper()
	r, err := testmilter.Send(c.s, testmilter.Message{From: m.from,
		HeaderMacros: []string{"i", "ABC123"}, Headers: m.headers, Body: [][]byte{[]byte(m.body)}})
	if err != nil {
		c.t.Fatal(err)
	}
	return result{mods: r.Mods, action: r.Action}
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
