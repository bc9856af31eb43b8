package service_test

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// signingConfig is a [signing] section over the two test keys: From
// rsa.example.com is signed with RSA, ed.example.com with Ed25519, and
// any other domain below example.com with both (RFC 8463 §4 dual
// signing).
func signingConfig(rsaKey, edKey testKey, canon string) config.Signing {
	c := config.Default().Signing
	c.Enabled = true
	c.Canonicalization = canon
	for _, k := range []testKey{rsaKey, edKey} {
		c.Keys = append(c.Keys, config.SigningKey{Name: k.name, Domain: k.domain, Selector: k.selector, File: k.file})
	}
	c.Rules = []config.SigningRule{
		{Pattern: "rsa.example.com", Keys: []string{"rsa"}},
		{Pattern: "ed.example.com", Keys: []string{"ed"}},
		{Pattern: ".example.com", Keys: []string{"rsa", "ed"}},
	}
	return c
}

// newSigning builds the service's signing half from a section, logging
// into logs.
func newSigning(t testing.TB, c config.Signing, logs *testmilter.Logs) *service.Signing {
	t.Helper()
	cfg := config.Default()
	cfg.Signing = c
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	sg, err := service.NewSigning(c, cfg.Milter, testmilter.Logger(logs, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// signOnly is the backend of a signing.listen socket whose service signs
// with sg: every message signed, as serve runs it.
func signOnly(sg *service.Signing) milter.Backend {
	return service.SignOnly{Current: service.NewCurrent(&service.Service{Signing: sg, Log: sg.Log})}
}

// serveBackend runs the real milter server with backend on a loopback
// port.
func serveBackend(t testing.TB, backend milter.Backend, logs *testmilter.Logs) *harness {
	t.Helper()
	h := &harness{t: t, logs: logs}
	return h.serve(backend, testmilter.Logger(logs, slog.LevelDebug))
}

// outboundHeaders are header fields as Postfix hands them over with the
// leading-space option: byte-exact values, folds as bare LF, odd spacing
// that c=simple must keep.
func outboundHeaders(fromDomain string) [][2]string {
	return [][2]string{
		{"From", " Alice <alice@" + fromDomain + ">"},
		{"To", " bob@example.net,\n\tcarol@example.net"},
		{"Subject", "  two  spaces\n\tand a fold "},
		{"Date", " Sun, 22 Nov 2026 10:00:00 +0000"},
		{"Message-ID", " <1@" + fromDomain + ">"},
		{"MIME-Version", " 1.0"},
		{"Content-Type", " text/plain;\n charset=utf-8"},
		{"X-Mailer", "no leading space"},
	}
}

// outboundBody is cut mid-line into two chunks, as Postfix may cut it.
var outboundBody = []string{"Hello  \r\n\r\nline with trailing ws \t\r\n.do", "t line\r\n\r\n\r\n"}

// sendSigned sends one message through the milter and returns it as the
// MTA would deliver it.
func sendSigned(t *testing.T, c *conn, fromDomain, auth string) signedMessage {
	t.Helper()
	hdrs := outboundHeaders(fromDomain)
	var bufs [][]byte
	for _, b := range outboundBody {
		bufs = append(bufs, []byte(b))
	}
	r := c.send(msg{from: "alice@" + fromDomain, auth: auth, headers: hdrs, bodyBufs: bufs})
	if got := r.reply(); got != "" {
		t.Fatalf("reply %q, want accept", got)
	}
	return applyInserts(t, r.mods, hdrs, strings.Join(outboundBody, ""))
}

// The first proof: what the milter signs verifies with dkimpy and
// with OpenDKIM, RSA and Ed25519 and both, every canonicalization.
func TestSignedMailVerifiesElsewhere(t *testing.T) {
	rsaKey, edKey := newTestKeys(t, t.TempDir())
	records := map[string]string{rsaKey.recordName(): rsaKey.record, edKey.recordName(): edKey.record}
	odk := startOpenDKIM(t, records)

	type sent struct {
		name, canon string
		want        int // signatures
		algs        string
		m           signedMessage
	}
	var msgs []sent
	for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
		logs := &testmilter.Logs{}
		h := serveBackend(t, signOnly(newSigning(t, signingConfig(rsaKey, edKey, canon), logs)), logs)
		c := h.connect("192.0.2.1", "client.example.org", "client.example.org")
		for _, tc := range []struct {
			from string
			want int
			algs string
		}{
			{"rsa.example.com", 1, "rsa-sha256"},
			{"ed.example.com", 1, "ed25519-sha256"},
			{"dual.example.com", 2, "rsa-sha256,ed25519-sha256"},
		} {
			m := sendSigned(t, c, tc.from, "")
			msgs = append(msgs, sent{name: canon + "/" + tc.from, canon: canon, want: tc.want, algs: tc.algs, m: m})
		}
	}
	// A negative control: a changed body must fail in both verifiers,
	// or a "pass" above would prove nothing.
	tampered := msgs[len(msgs)-1]
	tampered.name += "/tampered"
	tampered.m.body = strings.Replace(tampered.m.body, "Hello", "Hallo", 1)
	msgs = append(msgs, tampered)

	var all []signedMessage
	for _, s := range msgs {
		all = append(all, s.m)
	}
	py := dkimpyVerify(t, records, all)
	for i, s := range msgs {
		t.Run(s.name, func(t *testing.T) {
			if n := s.m.count("DKIM-Signature"); n != s.want {
				t.Fatalf("%d DKIM-Signature fields, want %d", n, s.want)
			}
			if s.m.fields[0].name != "DKIM-Signature" {
				t.Errorf("top field is %s, want DKIM-Signature", s.m.fields[0].name)
			}
			var algs []string
			for _, f := range s.m.fields[:s.want] {
				algs = append(algs, tag(f.value, "a"))
				if got := tag(f.value, "c"); got != s.canon {
					t.Errorf("c=%s, want %s", got, s.canon)
				}
				if tag(f.value, "t") == "" {
					t.Errorf("no t= tag: %q", f.value)
				}
				if h := strings.ToLower(tag(f.value, "h")); !strings.HasPrefix(h, "from:from:") {
					t.Errorf("h=%s: From is not oversigned", h)
				}
			}
			if got := strings.Join(algs, ","); got != s.algs {
				t.Errorf("algorithms %s, want %s", got, s.algs)
			}
			want := "pass"
			if strings.HasSuffix(s.name, "/tampered") {
				want = "fail"
			}
			if len(py[i]) != s.want {
				t.Errorf("dkimpy saw %v, want %d signatures", py[i], s.want)
			}
			for _, r := range py[i] {
				if r != want {
					t.Errorf("dkimpy: %v, want all %s", py[i], want)
					break
				}
			}
			odkResults := odk.verify(t, s.m)
			if len(odkResults) != s.want {
				t.Errorf("OpenDKIM results %v, want %d", odkResults, s.want)
			}
			for _, r := range odkResults {
				if r != want {
					t.Errorf("OpenDKIM: %v, want all %s", odkResults, want)
					break
				}
			}
		})
	}
}

// tag returns the value of a tag of a DKIM-Signature value, whitespace
// removed.
func tag(value, name string) string {
	for _, item := range strings.Split(value, ";") {
		k, v, _ := strings.Cut(item, "=")
		if strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

func TestSigningDirection(t *testing.T) {
	internal, err := config.ParseHostList([]string{"10.0.0.0/8", "2001:db8:10::/48", ".corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	on := &service.Signing{Internal: internal, Authenticated: true}
	noAuth := &service.Signing{Internal: internal}
	env := func(ip, host, auth string) milter.Envelope {
		e := milter.Envelope{ClientHost: host, AuthUser: auth}
		if ip != "" {
			e.ClientIP = netip.MustParseAddr(ip)
		}
		return e
	}
	tests := []struct {
		name string
		sg   *service.Signing
		env  milter.Envelope
		sign bool
		why  string
	}{
		{"internal v4", on, env("10.1.2.3", "[10.1.2.3]", ""), true, "internal host"},
		{"internal v6", on, env("2001:db8:10::5", "", ""), true, "internal host"},
		{"internal by name", on, env("192.0.2.9", "ws1.corp.example", ""), true, "internal host"},
		{"authenticated", on, env("198.51.100.7", "dsl.example.net", "alice"), true, "authenticated client"},
		{"authenticated, not configured", noAuth, env("198.51.100.7", "dsl.example.net", "alice"), false, ""},
		{"outside", on, env("198.51.100.7", "mx.example.net", ""), false, ""},
		{"outside, name lookalike", on, env("198.51.100.7", "corp.example.evil.test", ""), false, ""},
		{"signing off", nil, env("10.1.2.3", "", "alice"), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sign, why := tc.sg.Direction(tc.env)
			if sign != tc.sign || why != tc.why {
				t.Errorf("Direction = %v, %q; want %v, %q", sign, why, tc.sign, tc.why)
			}
		})
	}
}

// Messages the milter can't or won't sign pass unchanged, and the log says
// why.
func TestNotSigned(t *testing.T) {
	rsaKey, edKey := newTestKeys(t, t.TempDir())
	c := signingConfig(rsaKey, edKey, "relaxed/relaxed")
	c.Rules = c.Rules[:2] // only rsa.example.com and ed.example.com
	logs := &testmilter.Logs{}
	h := serveBackend(t, signOnly(newSigning(t, c, logs)), logs)
	cn := h.connect("192.0.2.1", "client.example.org", "client.example.org")
	var big [][2]string // more than max_header_bytes, in fields the protocol can carry
	for range 11 {
		big = append(big, [2]string{"X-Big", strings.Repeat(strings.Repeat("x", 70)+"\n\t", 100<<10/72)})
	}
	tests := []struct {
		name    string
		headers [][2]string
		why     string
	}{
		{"no rule for the domain", outboundHeaders("other.example"), "no signing rule matches the From domain"},
		{"no From", outboundHeaders("rsa.example.com")[1:], "0 From fields (want 1)"},
		{"two From fields", append(outboundHeaders("rsa.example.com"), [2]string{"From", " bob@ed.example.com"}), "2 From fields (want 1)"},
		{"two From domains", append([][2]string{{"From", " a@rsa.example.com, b@ed.example.com"}}, outboundHeaders("x")[1:]...),
			"From has several domains: rsa.example.com,ed.example.com"},
		{"From without domain", append([][2]string{{"From", " undisclosed"}}, outboundHeaders("x")[1:]...), "From: "},
		{"header too large", append(outboundHeaders("rsa.example.com"), big...),
			"header too large to sign"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cn.send(msg{from: "alice@rsa.example.com", headers: tc.headers, body: "body\r\n"})
			if len(r.mods) != 0 || r.reply() != "" {
				t.Errorf("mods %+v reply %q, want the message unchanged", r.mods, r.reply())
			}
			if !strings.Contains(logs.String(), `msg="message not signed"`) || !strings.Contains(logs.String(), tc.why) {
				t.Errorf("log does not say %q:\n%s", tc.why, logs.String())
			}
		})
	}
	// After all that, the connection still signs.
	m := sendSigned(t, cn, "rsa.example.com", "")
	if m.count("DKIM-Signature") != 1 {
		t.Errorf("no signature after the unsigned messages")
	}
	if !strings.Contains(logs.String(), `msg="message signed"`) || !strings.Contains(logs.String(), "signatures=example.com/rsa2048/rsa-sha256") {
		t.Errorf("no log line for the signed message:\n%s", logs.String())
	}
}

func TestNewSigningOff(t *testing.T) {
	sg, err := service.NewSigning(config.Signing{}, config.Default().Milter, nil)
	if sg != nil || err != nil {
		t.Errorf("NewSigning(disabled) = %v, %v; want nil, nil", sg, err)
	}
}
