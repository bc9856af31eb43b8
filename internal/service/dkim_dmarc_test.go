package service_test

import (
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/engine"
)

// emlMsg reads a CRLF message file and sends it as Postfix does: header
// values after the colon with their leading whitespace (SMFIP_HDR_LEADSPC),
// folds joined by a bare "\n", the body in chunks of at most 65535 bytes
// cut anywhere.
func emlMsg(t testing.TB, path, mailFrom string) msg {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(data), "\r\n\r\n")
	if !ok {
		t.Fatalf("%s: no header/body separator", path)
	}
	m := msg{from: mailFrom}
	for _, line := range strings.Split(head, "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(m.headers) > 0 {
			m.headers[len(m.headers)-1][1] += "\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		m.headers = append(m.headers, [2]string{strings.TrimRight(name, " \t"), value})
	}
	for b := []byte(body); len(b) > 0; {
		n := min(len(b), 65535)
		m.bodyBufs = append(m.bodyBufs, b[:n])
		b = b[n:]
	}
	return m
}

func dkimZone(t testing.TB, extra string) string {
	t.Helper()
	keys, err := os.ReadFile("../../pkg/dkimverify/testdata/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	return baseZone + string(keys) + extra
}

const fixtures = "../../pkg/dkimverify/testdata/"

// Issue #3 through the milter path.
func TestDKIMThroughMilter(t *testing.T) {
	h := newHarness(t, dkimZone(t, `
example.org.        300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`), nil)
	tests := []struct {
		name, file string
		edit       func(*msg)
		want       []string
		reply      string
	}{
		{"c=simple over odd whitespace", "simple-odd-whitespace.eml", nil,
			[]string{"dkim=pass header.d=example.org header.s=rsa2048 header.a=rsa-sha256", "dmarc=pass header.from=example.org"}, ""},
		{"relaxed/relaxed", "rsa2048-relaxed.eml", nil, []string{"dkim=pass header.d=example.org header.i=alice@example.org"}, ""},
		{"ed25519", "ed25519-relaxed.eml", nil, []string{"dkim=pass header.a=ed25519-sha256"}, ""},
		{"body altered", "simple-odd-whitespace.eml", func(m *msg) {
			last := m.bodyBufs[len(m.bodyBufs)-1]
			m.bodyBufs[len(m.bodyBufs)-1] = append(append([]byte(nil), last...), "added after signing\r\n"...)
		}, []string{"dkim=fail header.d=example.org", "dmarc=fail"}, "550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"rsa-sha1", "rsa-sha1.eml", nil, []string{"dkim=policy"}, "550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"two signatures, one broken", "two-signatures-one-broken.eml", nil, []string{"dkim=pass", "dkim=fail", "dmarc=pass"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := emlMsg(t, fixtures+tt.file, "alice@example.org")
			if tt.edit != nil {
				tt.edit(&m)
			}
			c := h.connect("198.51.100.1", "[198.51.100.1]", "mx.example.org")
			r := c.send(m)
			ar := r.ar(t)
			for _, w := range tt.want {
				if !hasResult(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
			if tt.name == "body altered" && !strings.Contains(ar, "(body hash mismatch)") {
				t.Errorf("no reason in:\n%s", ar)
			}
			if got := r.reply(); !strings.HasSuffix(got, tt.reply) || (tt.reply == "") != (got == "") {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
		})
	}
}

func TestDKIMKeyServfailIsTemperror(t *testing.T) {
	h := newHarness(t, dkimZone(t, `example.org. 300 IN TXT "v=spf1 -all"`), nil)
	h.dns.Fail("rsa2048._domainkey.example.org.", dns.RcodeServerFailure)
	c := h.connect("198.51.100.1", "[198.51.100.1]", "mx.example.org")
	ar := c.send(emlMsg(t, fixtures+"rsa2048-relaxed.eml", "alice@example.org")).ar(t)
	if !hasResult(ar, "dkim=temperror header.d=example.org header.s=rsa2048") {
		t.Errorf("A-R:\n%s", ar)
	}
}

// Issue #4 through the milter path.
func TestDMARCDispositions(t *testing.T) {
	zone := dkimZone(t, `
example.org.        300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine"
testing.test.       300 IN TXT "v=spf1 -all"
_dmarc.testing.test. 300 IN TXT "v=DMARC1; p=reject; t=y"
`)
	forged := func(domain string) msg {
		return msg{from: "x@" + domain, headers: stdHeaders(domain), body: "x\r\n"}
	}
	tests := []struct {
		name       string
		edit       func(*config.Config)
		m          msg
		ip         string
		want       []string
		reply      string
		quarantine bool
	}{
		{"p=reject fails", nil, forged("sender.test"), "198.51.100.1",
			[]string{"dmarc=fail header.from=sender.test policy.dmarc=reject"}, "550 5.7.1 Email rejected per DMARC policy for sender.test", false},
		{"reject text escaped", func(c *config.Config) { c.DMARC.RejectText = "100% not {domain}" }, forged("sender.test"), "198.51.100.1",
			nil, "550 5.7.1 100%% not sender.test", false},
		{"p=quarantine holds", nil, forged("quar.test"), "198.51.100.1",
			[]string{"dmarc=fail policy.dmarc=quarantine"}, "", true},
		{"p=quarantine header only", func(c *config.Config) { c.DMARC.Quarantine = "header" }, forged("quar.test"), "198.51.100.1",
			[]string{"dmarc=fail policy.dmarc=quarantine"}, "", false},
		{"sp=quarantine for a subdomain", nil, forged("sub.example.org"), "198.51.100.1",
			[]string{"dmarc=fail header.from=sub.example.org policy.dmarc=quarantine"}, "", true},
		{"p=none only reports", nil, forged("none.test"), "198.51.100.1", []string{"dmarc=fail policy.dmarc=none"}, "", false},
		{"monitor never rejects", func(c *config.Config) { c.DMARC.Monitor = true }, forged("sender.test"), "198.51.100.1",
			[]string{"dmarc=fail policy.dmarc=reject"}, "", false},
		{"monitor never holds", func(c *config.Config) { c.DMARC.Monitor = true }, forged("quar.test"), "198.51.100.1",
			[]string{"dmarc=fail"}, "", false},
		{"t=y steps reject down to quarantine", nil, forged("testing.test"), "198.51.100.1",
			[]string{"dmarc=fail policy.dmarc=reject"}, "", true},
		{"ignored From domain", func(c *config.Config) { c.DMARC.IgnoreFromDomains = []string{"sender.test"} }, forged("sender.test"), "198.51.100.1",
			[]string{"dmarc=fail"}, "", false},
		{"trusted forwarder", func(c *config.Config) { c.DMARC.TrustedForwarders = []string{"198.51.100.0/24"} }, forged("sender.test"), "198.51.100.1",
			[]string{"dmarc=fail"}, "", false},
		{"spf fail_action reject", func(c *config.Config) { c.SPF.FailAction = "reject"; c.DMARC.Monitor = true }, forged("sender.test"), "198.51.100.1",
			[]string{"spf=fail"}, "550 5.7.23 SPF validation failed for sender.test", false},
		{"pass by SPF", nil, forged("sender.test"), "192.0.2.1", []string{"dmarc=pass"}, "", false},
		{"pass by a parent-domain DKIM signature (relaxed)", nil, emlMsg(t, "testdata/parent-domain.eml", "news@news.example.org"), "198.51.100.1",
			[]string{"dkim=pass header.d=example.org", "spf=none", "dmarc=pass header.from=news.example.org"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, zone, tt.edit)
			c := h.connect(tt.ip, "["+tt.ip+"]", "client.test")
			r := c.send(tt.m)
			ar := r.ar(t)
			for _, w := range tt.want {
				if !hasResult(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
			if got := r.reply(); !strings.HasSuffix(got, tt.reply) || (tt.reply == "") != (got == "") {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
			if r.quarantined() != tt.quarantine {
				t.Errorf("quarantined = %v, want %v", r.quarantined(), tt.quarantine)
			}
		})
	}
}

// A strict adkim makes the parent-domain signature not align.
func TestDMARCStrictAlignment(t *testing.T) {
	h := newHarness(t, dkimZone(t, `
example.org.        300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; adkim=s"
`), nil)
	c := h.connect("198.51.100.1", "[198.51.100.1]", "client.test")
	r := c.send(emlMsg(t, "testdata/parent-domain.eml", "news@news.example.org"))
	if ar := r.ar(t); !hasResult(ar, "dkim=pass") || !hasResult(ar, "dmarc=fail") {
		t.Errorf("A-R:\n%s", ar)
	}
	if r.reply() == "" {
		t.Error("not rejected")
	}
}

func TestDMARCTemperror(t *testing.T) {
	for _, mode := range []string{"accept", "tempfail"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, baseZone, func(c *config.Config) { c.DMARC.TempError = mode })
			h.dns.Fail("_dmarc.sender.test.", dns.RcodeServerFailure)
			c := h.connect("198.51.100.1", "[198.51.100.1]", "client.test")
			r := c.send(msg{from: "x@sender.test", headers: stdHeaders("sender.test")})
			if ar := r.ar(t); !hasResult(ar, "dmarc=temperror header.from=sender.test") {
				t.Errorf("A-R:\n%s", ar)
			}
			want := ""
			if mode == "tempfail" {
				want = "451 4.7.5 Temporary DNS failure evaluating DMARC policy for sender.test"
			}
			if got := r.reply(); !strings.HasSuffix(got, want) || (want == "") != (got == "") {
				t.Errorf("reply %q, want %q", got, want)
			}
		})
	}
}

// RFC 9989 §11.5: zero, several From fields or several author domains.
func TestMultiFrom(t *testing.T) {
	two := msg{from: "x@none.test", headers: [][2]string{
		{"From", " a@none.test"}, {"From", " b@sender.test"}, {"Subject", " two"}}, body: "x\r\n"}
	oneFieldTwo := msg{from: "x@none.test", headers: [][2]string{{"From", " a@none.test, b@quar.test"}}, body: "x\r\n"}
	zero := msg{from: "x@sender.test", headers: [][2]string{{"Subject", " no from"}}, body: "x\r\n"}
	tests := []struct {
		mode, unusable string
		m              msg
		want           string
		reply          string
		quarantine     bool
	}{
		// Two From fields or none: unusable (RFC 5322 §3.6), whatever multi_from says.
		{"evaluate-each", "reject", two, "dmarc=permerror header.from=none.test", "550 5.7.1 Message rejected: From header field not usable for DMARC: more than one From field: 2 fields (RFC 5322 §3.6 allows one)", false},
		{"evaluate-each", "reject", zero, "dmarc=permerror", "550 5.7.1 Message rejected: From header field not usable for DMARC: dmarc: no From field", false},
		{"evaluate-each", "accept", two, "dmarc=permerror", "", false},
		{"evaluate-each", "accept", zero, "dmarc=permerror", "", false},
		{"reject", "reject", two, "dmarc=permerror", "550 5.7.1 Message rejected: From header field not usable", false},
		{"skip", "reject", two, "dmarc=permerror", "550 5.7.1 Message rejected: From header field not usable", false},
		// Several addresses in one From field: multi_from decides.
		{"evaluate-each", "reject", oneFieldTwo, "dmarc=fail header.from=quar.test policy.dmarc=quarantine", "", true},
		{"reject", "reject", oneFieldTwo, "dmarc=permerror", "550 5.7.1 Message rejected: several author domains", false},
		{"skip", "reject", oneFieldTwo, "dmarc=permerror", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.unusable, func(t *testing.T) {
			h := newHarness(t, baseZone, func(c *config.Config) {
				c.DMARC.MultiFrom, c.DMARC.UnusableFrom = engine.MultiFrom(tt.mode), tt.unusable
			})
			c := h.connect("198.51.100.1", "[198.51.100.1]", "client.test")
			r := c.send(tt.m)
			if ar := r.ar(t); !hasResult(ar, tt.want) {
				t.Errorf("A-R lacks %q:\n%s", tt.want, ar)
			}
			got := r.reply()
			if (tt.reply == "") != (got == "") || !strings.Contains(got, tt.reply) {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
			if r.quarantined() != tt.quarantine {
				t.Errorf("quarantined = %v", r.quarantined())
			}
		})
	}
}
