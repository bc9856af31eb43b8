package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// checkDNSZone has, per domain, good and broken records of each kind.
// @RSA2048@ and the like are replaced by key records made at test time.
const checkDNSZone = `
; good.test: everything right.
good.test.                       IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.good.test mx -all"
good.test.                       IN MX 10 mx.good.test.
mx.good.test.                    IN A 192.0.2.25
_spf.good.test.                  IN TXT "v=spf1 a:out.good.test -all"
out.good.test.                   IN A 192.0.2.20
s2048._domainkey.good.test.      IN TXT @RSA2048@
ed._domainkey.good.test.         IN TXT @ED25519@
_dmarc.good.test.                IN TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@good.test,mailto:agg@reports.test"
good.test._report._dmarc.reports.test. IN TXT "v=DMARC1"
www.sub.good.test.               IN A 192.0.2.80

; weak.test: legal but worth a warning, and an SPF syntax error.
weak.test.                       IN TXT "v=spf1 ip4:192.0.2.300 -all"
s1024._domainkey.weak.test.      IN TXT @RSA1024@
_dmarc.weak.test.                IN TXT "v=DMARC1; p=none; pct=50"
_adsp._domainkey.weak.test.      IN TXT "dkim=all"

; broken.test: records that make checks fail.
broken.test.                     IN TXT "v=spf1 -all"
broken.test.                     IN TXT "v=spf1 ip4:192.0.2.1 -all"
s._domainkey.broken.test.        IN TXT @RSA2048-SHA1@
_dmarc.broken.test.              IN TXT "v=DMARC1; p=bogus; rua=mailto:dmarc@elsewhere.test"
elsewhere.test.                  IN MX 10 mx.elsewhere.test.

; many.test: too many lookups, void lookups, ptr, a missing include,
; several DMARC records, a revoked key.
many.test.   IN TXT ( "v=spf1 include:i1.many.test include:i2.many.test include:i3.many.test"
                      " include:i4.many.test include:i5.many.test include:i6.many.test"
                      " include:i7.many.test include:nospf.many.test a:nx1.many.test"
                      " a:nx2.many.test a:nx3.many.test ptr -all" )
i1.many.test.  IN TXT "v=spf1 -all"
i2.many.test.  IN TXT "v=spf1 -all"
i3.many.test.  IN TXT "v=spf1 -all"
i4.many.test.  IN TXT "v=spf1 -all"
i5.many.test.  IN TXT "v=spf1 -all"
i6.many.test.  IN TXT "v=spf1 -all"
i7.many.test.  IN TXT "v=spf1 exists:%{i}.x.many.test -all"
nospf.many.test. IN TXT "not spf"
r._domainkey.many.test. IN TXT "v=DKIM1; k=rsa; p="
two._domainkey.many.test. IN TXT @ED25519@
two._domainkey.many.test. IN TXT @RSA2048@
_dmarc.many.test. IN TXT "v=DMARC1; p=reject"
_dmarc.many.test. IN TXT "v=DMARC1; p=none"

; typo.test: a DMARC record with a wrong version, a DKIM key in testing mode.
typo.test.                  IN TXT "v=spf1 redirect=good.test"
t._domainkey.typo.test.     IN TXT @ED25519-TESTING@
_dmarc.typo.test.           IN TXT "v=DMARC1 p=reject"
`

// zoneTXT quotes a TXT value for the zone, split into 255-byte strings.
func zoneTXT(v string) string {
	var q []string
	for _, p := range dkimsign.SplitTXT(v) {
		q = append(q, `"`+p+`"`)
	}
	return "( " + strings.Join(q, " ") + " )"
}

func keyTXT(t testing.TB, k crypto.Signer) string {
	t.Helper()
	txt, err := dkimsign.TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return txt
}

func TestCheckDNSGolden(t *testing.T) {
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherEd, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaTXT, edTXT := keyTXT(t, rsa2048), keyTXT(t, ed)
	zone := strings.NewReplacer(
		"@RSA2048@", zoneTXT(rsaTXT),
		"@RSA1024@", zoneTXT(keyTXT(t, rsa1024)),
		"@ED25519@", zoneTXT(edTXT),
		"@RSA2048-SHA1@", zoneTXT(strings.Replace(rsaTXT, "k=rsa;", "k=rsa; h=sha1;", 1)),
		"@ED25519-TESTING@", zoneTXT(strings.Replace(edTXT, "k=ed25519;", "k=ed25519; t=y;", 1)),
	).Replace(checkDNSZone)
	srv := dnstest.New(t, zone)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "authmilter.toml")
	if err := os.WriteFile(cfg, []byte("[dns]\nservers = [\""+srv.Addr()+"\"]\ncache_size = -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := func(name string, k crypto.Signer) string {
		b, err := dkimsign.MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodKey, wrongKey := keyFile("good.key", rsa2048), keyFile("wrong.key", otherEd)

	tests := []struct {
		golden string
		args   []string
		code   int
	}{
		{"good", []string{"good.test", "--selector", "s2048", "--key", goodKey, "--ip", "192.0.2.20"}, 0},
		{"good-wrong-key", []string{"--selector", "ed", "--key", wrongKey, "--ip", "198.51.100.7", "good.test"}, 1},
		{"good-json", []string{"good.test", "--selector", "ed", "--json"}, 0},
		{"sub", []string{"sub.good.test"}, 0},
		{"weak", []string{"weak.test", "--selector", "s1024"}, 1},
		{"broken", []string{"broken.test", "--selector", "s"}, 1},
		{"many", []string{"many.test", "--selector", "r", "--ip", "192.0.2.1"}, 1},
		{"many-two-keys", []string{"many.test", "--selector", "two"}, 1},
		{"typo", []string{"typo.test", "--selector", "t", "--ip", "192.0.2.20"}, 1},
		{"nothing", []string{"nothing.test", "--selector", "x"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"check-dns", "-config", cfg}, tt.args...)
			code := run(args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errb.String())
			}
			if errb.Len() > 0 {
				t.Errorf("stderr: %s", errb.String())
			}
			if strings.HasSuffix(tt.golden, "json") {
				var rep dnsReport
				if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Checks) == 0 {
					t.Errorf("JSON output does not decode: %v", err)
				}
			}
			golden := filepath.Join("testdata", "checkdns", tt.golden+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s (run with -update after checking):\n%s", golden, out.String())
			}
		})
	}
}

// DNS failure is never reported as a pass or as a missing record.
func TestCheckDNSDown(t *testing.T) {
	srv := dnstest.New(t, "good.test. IN TXT \"v=spf1 -all\"\n")
	srv.Stop()
	cfg := filepath.Join(t.TempDir(), "authmilter.toml")
	if err := os.WriteFile(cfg, []byte("[dns]\nservers = [\""+srv.Addr()+"\"]\ntimeout = \"200ms\"\nattempts = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"check-dns", "-config", cfg, "good.test", "--selector", "s", "--json"}, &out, &errb)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var rep dnsReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"spf.record": "fail", "dkim.record": "fail", "dmarc.record": "fail", "dmarc.policy": "fail", "adsp": "warn"}
	for _, c := range rep.Checks {
		if w, ok := want[c.Check]; !ok || c.Status != w || !strings.Contains(strings.ToLower(c.Detail), "dns") && !strings.Contains(c.Detail, "temporary") {
			t.Errorf("%+v, want status %q and a DNS error", c, w)
		}
		delete(want, c.Check)
	}
	if len(want) > 0 {
		t.Errorf("checks missing: %v", want)
	}
}

// A SERVFAIL for one name fails that check only.
func TestCheckDNSServfail(t *testing.T) {
	srv := dnstest.New(t, "good.test. IN TXT \"v=spf1 -all\"\n_dmarc.good.test. IN TXT \"v=DMARC1; p=reject\"\n")
	srv.Fail("s._domainkey.good.test.", dns.RcodeServerFailure)
	cfg := filepath.Join(t.TempDir(), "authmilter.toml")
	if err := os.WriteFile(cfg, []byte("[dns]\nservers = [\""+srv.Addr()+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check-dns", "-config", cfg, "good.test", "--selector", "s", "--json"}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var rep dnsReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		want := "pass"
		switch c.Check {
		case "dkim.record":
			want = "fail"
		case "dmarc.rua":
			want = "warn"
		}
		if c.Status != want {
			t.Errorf("%+v, want %s", c, want)
		}
	}
}

func TestCheckDNSUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"check-dns"}, "usage"},
		{[]string{"check-dns", "a.test", "b.test"}, "usage"},
		{[]string{"check-dns", "a.test", "--ip", "999.1.1.1"}, "not an IP address"},
		{[]string{"check-dns", "a.test", "--key", "k.pem"}, "--key needs --selector"},
		{[]string{"check-dns", "[192.0.2.1]"}, "address literal"},
		{[]string{"check-dns", "--bogus", "a.test"}, "usage"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errb.String(), tt.want)
		}
	}
}

// check-dns says of a key record exactly what the verifier does: a record
// it passes (or only warns about) verifies a good signature, one it fails
// does not. The first four records were passed by check-dns's former parser
// and refused by the verifier (issue 18).
func TestCheckDNSKeyRecordAsVerifier(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := keyTXT(t, k)
	p := good[strings.Index(good, "p=")+2:]
	records := []string{
		"v=DKIM1;; k=rsa; p=" + p,
		"v=DKIM1; k=rsa; p=" + p + ";;",
		"v=DKIM1; 1x=y; k=rsa; p=" + p,
		"v=DKIM1; n=a\x01b; k=rsa; p=" + p,
		good,
		good + ";",
		"k=rsa; p=" + p,
		"v=DKIM1; k=rsa; t=y; x-extra=1; p=" + p,
		"v=DKIM1; k=rsa; h=sha1; p=" + p,
		"v=DKIM1; k=rsa; s=tlsrpt; p=" + p,
		"v=DKIM1; k=ed25519; p=" + p,
		"v=DKIM1; k=rsa; p=",
	}
	var zone strings.Builder
	for i, rec := range records {
		fmt.Fprintf(&zone, "s%d._domainkey.agree.test. IN TXT %s\n", i, zoneTXT(strings.ReplaceAll(rec, "\x01", `\001`)))
	}
	srv := dnstest.New(t, zone.String())
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "authmilter.toml")
	if err := os.WriteFile(cfg, []byte("[dns]\nservers = [\""+srv.Addr()+"\"]\ncache_size = -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := dkimsign.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, rec := range records {
		sel := fmt.Sprintf("s%d", i)
		txts, err := r.LookupTXT(context.Background(), sel+"._domainkey.agree.test.")
		if err != nil || len(txts) != 1 || txts[0] != rec {
			t.Fatalf("served %q, %v; want %q", txts, err, rec)
		}
		var out, errb bytes.Buffer
		run([]string{"check-dns", "-config", cfg, "agree.test", "--selector", sel, "--json"}, &out, &errb)
		var rep dnsReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("%s: %v (%s)", sel, err, errb.String())
		}
		approved := true
		for _, c := range rep.Checks {
			if strings.HasPrefix(c.Check, "dkim.") && c.Status != "pass" && (c.Status == "fail" || strings.Contains(c.Detail, "revoked")) {
				approved = false
			}
		}

		key := []dkimsign.Key{{Name: "k", Domain: "agree.test", Selector: sel, File: keyFile}}
		tab, err := dkimsign.NewTable(key, []dkimsign.SigningRule{{Pattern: "agree.test", Keys: []string{"k"}}})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := signAndVerify(t, r, tab.Select("agree.test"), headerblock.Append(nil, "From", " a@agree.test"), "Hello.\r\n")
		verified := len(res) == 1 && res[0].Status == dkimverify.StatusPass
		if approved != verified {
			t.Errorf("%q: check-dns approves %v, verifier passes %v (%+v)\n%s", rec, approved, verified, res, out.String())
		}
	}
}
