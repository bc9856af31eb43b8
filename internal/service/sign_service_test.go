package service_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
)

// signZone makes example.com our domain: no SPF passes for it and DMARC
// says reject, so only our DKIM signature lets its mail through.
const signZone = `
example.com.         300 IN TXT "v=spf1 -all"
_dmarc.example.com.  300 IN TXT "v=DMARC1; p=reject"
`

// newSignService builds the whole Service (engine, policy, signing) as
// serve does from cfg, on a test DNS server with zone.
func newSignService(t *testing.T, zone string, edit func(*config.Config)) (*service.Service, *testmilter.Logs) {
	t.Helper()
	srv := dnstest.New(t, zone)
	cfg := testmilter.Config(authservID, srv.Addr(), time.Second)
	edit(cfg)
	logs := &testmilter.Logs{}
	svc := testmilter.NewService(t, cfg, testmilter.Logger(logs, slog.LevelDebug), func(o *engine.Options) {
		*o = engine.Options{SPF: true, CheckHELO: true, SPFTimeout: 5 * time.Second, DKIM: true,
			DKIMOptions: dkimverify.Options{MinRSABits: 1024, MaxSignatures: 5}, DMARC: true, DMARCMode: dmarc.Mode(cfg.DMARC.Mode),
			MultiFrom: cfg.DMARC.MultiFrom, MaxAuthorDomains: 5, MaxHeaderBytes: 1 << 20, MaxHeaders: 1000}
	})
	return svc, logs
}

// Direction through the Service: internal and authenticated clients are
// signed (even where policy would skip them) and get no A-R; outside mail
// is verified and not signed; and what was signed, sent back in from
// outside, passes DKIM and DMARC in our own verifier.
func TestServiceSignsOrVerifies(t *testing.T) {
	rsaKey, edKey := newTestKeys(t, t.TempDir())
	zone := baseZone + signZone +
		dkimsign.ZoneRecord(rsaKey.recordName(), rsaKey.record) + "\n" +
		dkimsign.ZoneRecord(edKey.recordName(), edKey.record) + "\n"
	svc, logs := newSignService(t, zone, func(c *config.Config) {
		c.Signing = signingConfig(rsaKey, edKey, "relaxed/relaxed")
		c.Signing.InternalHosts = []string{"10.0.0.0/8", "127.0.0.0/8"}
		c.Policy.IgnoreHosts = []string{"127.0.0.0/8"} // signing wins over it
		c.Policy.SkipAuthenticated = true              // and over this
	})
	h := serveBackend(t, svc, logs)

	var signed []signedMessage
	for _, tc := range []struct {
		name, ip, auth string
	}{
		{"internal host", "10.0.0.7", ""},
		{"loopback, also an ignored host", "127.0.0.1", ""},
		{"authenticated client", "198.51.100.7", "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.connect(tc.ip, "["+tc.ip+"]", "client.example.org")
			m := sendSigned(t, c, "dual.example.com", tc.auth)
			if n := m.count("DKIM-Signature"); n != 2 {
				t.Fatalf("%d signatures, want 2", n)
			}
			if n := m.count("Authentication-Results"); n != 0 {
				t.Errorf("a signed message got %d A-R fields", n)
			}
			signed = append(signed, m)
		})
	}

	t.Run("outside mail is verified, not signed", func(t *testing.T) {
		c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
		r := c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "hi\r\n"})
		if ar := r.ar(t); !hasResult(ar, "spf=pass") || !hasResult(ar, "dmarc=pass") {
			t.Errorf("A-R %s", ar)
		}
		for _, mod := range r.mods {
			if mod.HeaderName == "DKIM-Signature" {
				t.Errorf("outside mail was signed")
			}
		}
	})

	t.Run("outside mail claiming our domain is rejected", func(t *testing.T) {
		c := h.connect("198.51.100.7", "spoofer.example.net", "spoofer.example.net")
		r := c.send(msg{from: "alice@dual.example.com", headers: outboundHeaders("dual.example.com"), body: "hi\r\n"})
		if !strings.Contains(r.reply(), "550 5.7.1") {
			t.Errorf("reply %q, want a DMARC reject (unsigned)", r.reply())
		}
	})

	t.Run("signed mail verifies on the way in", func(t *testing.T) {
		if len(signed) == 0 {
			t.Fatal("nothing signed")
		}
		c := h.connect("198.51.100.7", "relay.example.net", "relay.example.net")
		for _, m := range signed {
			var hdrs [][2]string
			for _, f := range m.fields {
				hdrs = append(hdrs, [2]string{f.name, strings.ReplaceAll(f.value, "\r\n", "\n")})
			}
			r := c.send(msg{from: "alice@dual.example.com", headers: hdrs, body: m.body})
			ar := r.ar(t)
			for _, want := range []string{"dkim=pass header.s=rsa2048", "dkim=pass header.s=ed2026", "dmarc=pass header.from=dual.example.com"} {
				if !hasResult(ar, want) {
					t.Errorf("A-R lacks %s:\n%s", want, ar)
				}
			}
			if r.reply() != "" {
				t.Errorf("reply %q", r.reply())
			}
		}
	})

	t.Run("not signing authenticated clients when told so", func(t *testing.T) {
		svc, logs := newSignService(t, zone, func(c *config.Config) {
			c.Signing = signingConfig(rsaKey, edKey, "relaxed/relaxed")
			c.Signing.InternalHosts = []string{}
			c.Signing.SignAuthenticated = false
		})
		h := serveBackend(t, svc, logs)
		c := h.connect("198.51.100.7", "dsl.example.net", "dsl.example.net")
		r := c.send(msg{from: "alice@dual.example.com", auth: "alice", headers: outboundHeaders("dual.example.com"), body: "hi\r\n"})
		if len(r.mods) != 0 || r.reply() != "" {
			t.Errorf("mods %+v reply %q; want untouched (skip_authenticated)", r.mods, r.reply())
		}
	})
}

// The signing.listen backend signs whatever comes, with the Signing of
// the Service current when the message begins: a reload (Set) switches
// keys for the next message.
func TestSignOnlyFollowsReload(t *testing.T) {
	dir := t.TempDir()
	rsaKey, edKey := newTestKeys(t, dir)
	svc, logs := newSignService(t, baseZone, func(c *config.Config) {
		c.Signing = signingConfig(rsaKey, edKey, "relaxed/relaxed")
	})
	cur := service.NewCurrent(svc)
	h := serveBackend(t, service.SignOnly{Current: cur}, logs)
	c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test") // an outside client: signed anyway

	m := sendSigned(t, c, "dual.example.com", "")
	if got := sels(m); got != "rsa2048,ed2026" {
		t.Fatalf("selectors %s, want rsa2048,ed2026", got)
	}
	// Rotation: the new configuration names only the Ed25519 key.
	svc2, _ := newSignService(t, baseZone, func(c *config.Config) {
		c.Signing = signingConfig(rsaKey, edKey, "relaxed/relaxed")
		c.Signing.Rules = []config.SigningRule{{Pattern: "*", Keys: []string{"ed"}}}
	})
	svc2.Log = svc.Log
	cur.Set(svc2)
	m = sendSigned(t, c, "dual.example.com", "")
	if got := sels(m); got != "ed2026" {
		t.Errorf("after reload: selectors %s, want ed2026", got)
	}
	// Signing switched off by a reload: messages pass unchanged.
	svc3 := *svc2
	svc3.Signing = nil
	cur.Set(&svc3)
	r := c.send(msg{from: "alice@dual.example.com", headers: outboundHeaders("dual.example.com"), body: "hi\r\n"})
	for _, mod := range r.mods {
		if mod.Code == gomilter.ActInsertHeader {
			t.Errorf("signing off, yet %s inserted", mod.HeaderName)
		}
	}
}

func sels(m signedMessage) string {
	var s []string
	for _, f := range m.fields {
		if f.name == "DKIM-Signature" {
			s = append(s, tag(f.value, "s"))
		}
	}
	return strings.Join(s, ",")
}

// OpenDKIM's ExternalIgnoreList and OpenDMARC's IgnoreMailFrom (issue 19):
// mail from outside claiming a signing domain is logged unless its client
// is in signing.external_ignore; an envelope sender in
// policy.ignore_mail_from is not checked at all.
func TestExternalSenderAndIgnoredMailFrom(t *testing.T) {
	rsaKey, edKey := newTestKeys(t, t.TempDir())
	zone := baseZone + signZone + dkimsign.ZoneRecord(rsaKey.recordName(), rsaKey.record) + "\n"
	svc, logs := newSignService(t, zone, func(c *config.Config) {
		c.Signing = signingConfig(rsaKey, edKey, "relaxed/relaxed")
		c.Signing.InternalHosts = []string{"10.0.0.0/8"}
		c.Signing.ExternalIgnore = []string{"198.51.100.0/24"}
		c.Policy.IgnoreMailFrom = []string{"quiet.test"}
	})
	h := serveBackend(t, svc, logs)
	const line = "external host sent mail as a signing domain"
	for _, tc := range []struct {
		name, ip string
		logged   bool
	}{
		{"listed in external_ignore", "198.51.100.7", false},
		{"not listed", "192.0.2.9", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), line)
			c := h.connect(tc.ip, "relay.example.net", "relay.example.net")
			c.send(msg{from: "alice@dual.example.com", headers: outboundHeaders("dual.example.com"), body: "hi\r\n"})
			if got := strings.Count(logs.String(), line) > before; got != tc.logged {
				t.Errorf("logged %v, want %v\n%s", got, tc.logged, logs.String())
			}
		})
	}
	t.Run("ignore_mail_from", func(t *testing.T) {
		c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
		r := c.send(msg{from: "bob@quiet.test", headers: stdHeaders("sender.test"), body: "hi\r\n"})
		if len(r.mods) != 0 || r.reply() != "" {
			t.Errorf("mods %+v reply %q; want the message untouched", r.mods, r.reply())
		}
		r = c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "hi\r\n"})
		if ar := r.ar(t); !hasResult(ar, "spf=pass") {
			t.Errorf("a sender not listed was not checked: %s", ar)
		}
	})
}
