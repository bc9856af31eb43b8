package dmarc

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

const evalZone = `
example.com.            300 IN A   192.0.2.1
_dmarc.example.com.     300 IN TXT "v=DMARC1; p=reject; sp=quarantine"
sub.example.com.        300 IN A   192.0.2.2
_dmarc.dept.example.com. 300 IN TXT "v=DMARC1; p=none; psd=n"
strict.example.         300 IN A   192.0.2.3
_dmarc.strict.example.  300 IN TXT "v=DMARC1; p=quarantine; adkim=s; aspf=s"
sub.strict.example.     300 IN A   192.0.2.4
testing.example.        300 IN A   192.0.2.5
_dmarc.testing.example. 300 IN TXT "v=DMARC1; p=reject; t=y"
pct.example.            300 IN A   192.0.2.6
_dmarc.pct.example.     300 IN TXT "v=DMARC1; p=reject; pct=30"
monitor.example.        300 IN A   192.0.2.7
_dmarc.monitor.example. 300 IN TXT "v=DMARC1; p=none; t=y"
nop.example.            300 IN A   192.0.2.8
_dmarc.nop.example.     300 IN TXT "v=DMARC1; adkim=s"
norec.example.          300 IN A   192.0.2.9
_dmarc.bank.example.    300 IN TXT "v=DMARC1; p=reject; psd=y"
_dmarc.giant.bank.example. 300 IN TXT "v=DMARC1; p=quarantine"
`

func spfIn(author, result, domain string, dkim ...DKIMInput) Input {
	return Input{AuthorDomain: author, SPFResult: result, SPFDomain: domain, DKIM: dkim}
}

func dk(domain, result string) DKIMInput {
	return DKIMInput{Domain: domain, Selector: "s1", Result: result}
}

// TestEvaluateAlignment: relaxed/strict × SPF/DKIM × subdomains (RFC 9989
// §3.2.10, §4.4, Appendix B.1).
func TestEvaluateAlignment(t *testing.T) {
	_, r := newDNS(t, evalZone)
	tests := []struct {
		name            string
		in              Input
		status          Status
		published       Policy
		applied         Policy
		spfAl, dkimAl   bool
		alignedDKIMName string
	}{
		// relaxed (default adkim=r, aspf=r)
		{"SPF exact", spfIn("example.com", "pass", "example.com"), StatusPass, "reject", "none", true, false, ""},
		{"SPF subdomain relaxed", spfIn("example.com", "pass", "bounce.example.com"), StatusPass, "reject", "none", true, false, ""},
		{"SPF parent relaxed", spfIn("sub.example.com", "pass", "example.com"), StatusPass, "quarantine", "none", true, false, ""},
		{"SPF other org", spfIn("example.com", "pass", "example.net"), StatusFail, "reject", "reject", false, false, ""},
		{"SPF look-alike suffix", spfIn("example.com", "pass", "badexample.com"), StatusFail, "reject", "reject", false, false, ""},
		{"SPF fail aligned domain", spfIn("example.com", "fail", "example.com"), StatusFail, "reject", "reject", false, false, ""},
		{"SPF softfail aligned domain", spfIn("example.com", "softfail", "example.com"), StatusFail, "reject", "reject", false, false, ""},
		{"SPF psd=n boundary", spfIn("example.com", "pass", "x.dept.example.com"), StatusFail, "reject", "reject", false, false, ""},
		{"DKIM exact", spfIn("example.com", "none", "", dk("example.com", "pass")), StatusPass, "reject", "none", false, true, "example.com"},
		{"DKIM subdomain relaxed", spfIn("example.com", "none", "", dk("mail.example.com", "pass")), StatusPass, "reject", "none", false, true, "mail.example.com"},
		{"DKIM parent domain relaxed", spfIn("sub.example.com", "none", "", dk("EXAMPLE.COM", "pass")), StatusPass, "quarantine", "none", false, true, "example.com"},
		{"DKIM failing signature ignored", spfIn("example.com", "none", "", dk("example.com", "fail")), StatusFail, "reject", "reject", false, false, ""},
		{"DKIM second signature aligns", spfIn("example.com", "none", "", dk("example.net", "pass"), dk("example.com", "fail"), dk("s.example.com", "pass")),
			StatusPass, "reject", "none", false, true, "s.example.com"},
		{"DKIM unaligned only", spfIn("example.com", "pass", "example.net", dk("example.org", "pass")), StatusFail, "reject", "reject", false, false, ""},
		{"both aligned", spfIn("example.com", "pass", "example.com", dk("example.com", "pass")), StatusPass, "reject", "none", true, true, "example.com"},
		{"DKIM org different below PSD", spfIn("giant.bank.example", "none", "", dk("mail.mega.bank.example", "pass")), StatusFail, "quarantine", "quarantine", false, false, ""},
		{"SPF same org below PSD", spfIn("giant.bank.example", "pass", "mail.giant.bank.example"), StatusPass, "quarantine", "none", true, false, ""},
		// strict (adkim=s, aspf=s)
		{"strict SPF exact", spfIn("strict.example", "pass", "STRICT.example."), StatusPass, "quarantine", "none", true, false, ""},
		{"strict SPF subdomain", spfIn("strict.example", "pass", "mail.strict.example"), StatusFail, "quarantine", "quarantine", false, false, ""},
		{"strict DKIM exact", spfIn("strict.example", "none", "", dk("strict.example", "pass")), StatusPass, "quarantine", "none", false, true, "strict.example"},
		{"strict DKIM subdomain", spfIn("strict.example", "none", "", dk("mail.strict.example", "pass")), StatusFail, "quarantine", "quarantine", false, false, ""},
		{"strict DKIM parent of author", spfIn("sub.strict.example", "none", "", dk("strict.example", "pass")), StatusFail, "quarantine", "quarantine", false, false, ""},
		// policy variations
		{"t=y steps reject down to quarantine", spfIn("testing.example", "fail", "testing.example"), StatusFail, "reject", "quarantine", false, false, ""},
		{"t=y with p=none", spfIn("monitor.example", "fail", "monitor.example"), StatusFail, "none", "none", false, false, ""},
		{"pct ignored in RFC 9989 mode", spfIn("pct.example", "fail", "pct.example"), StatusFail, "reject", "reject", false, false, ""},
		{"no record: none", spfIn("norec.example", "pass", "norec.example"), StatusNone, "", "", false, false, ""},
		{"no valid p and no rua: none", spfIn("nop.example", "fail", "nop.example"), StatusNone, "", "", false, false, ""},
		{"invalid author domain: permerror", spfIn("exa mple.com", "pass", "example.com"), StatusPermError, "", "", false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := evaluate(context.Background(), r, tt.in, nil)
			if res.Status != tt.status || res.Published != tt.published || res.Applied != tt.applied ||
				res.SPFAligned != tt.spfAl || res.DKIMAligned != tt.dkimAl || res.AlignedDKIMDomain != tt.alignedDKIMName {
				t.Errorf("got status=%s published=%q applied=%q spf=%v dkim=%v d=%q (%s, err %v)\nwant status=%s published=%q applied=%q spf=%v dkim=%v d=%q",
					res.Status, res.Published, res.Applied, res.SPFAligned, res.DKIMAligned, res.AlignedDKIMDomain, res.Reason, res.Err,
					tt.status, tt.published, tt.applied, tt.spfAl, tt.dkimAl, tt.alignedDKIMName)
			}
			if res.Reason == "" {
				t.Error("empty Reason")
			}
		})
	}
}

// TestEvaluateEveryIdentifier: every identifier that passed is checked for
// alignment in the record's mode (RFC 9989 §5.3.4), also when another one
// already aligned exactly: the common "Return-Path on a subdomain, DKIM on
// the organizational domain" setup reports SPF aligned too.
func TestEvaluateEveryIdentifier(t *testing.T) {
	_, r := newDNS(t, evalZone)
	tests := []struct {
		name   string
		in     Input
		status Status
		spf    Alignment
		dkim   []Alignment
		reason string
	}{
		{"SPF relaxed, DKIM exact", spfIn("example.com", "pass", "bounce.example.com", dk("example.com", "pass")),
			StatusPass, AlignRelaxed, []Alignment{AlignExact},
			"SPF aligned (smtp.mailfrom=bounce.example.com, relaxed), DKIM aligned (header.d=example.com)"},
		{"SPF exact, DKIM relaxed", spfIn("example.com", "pass", "example.com", dk("mail.example.com", "pass")),
			StatusPass, AlignExact, []Alignment{AlignRelaxed},
			"SPF aligned (smtp.mailfrom=example.com), DKIM aligned (header.d=mail.example.com, relaxed)"},
		{"SPF exact, DKIM other org and failing and relaxed", spfIn("example.com", "pass", "example.com",
			dk("example.net", "pass"), dk("example.com", "fail"), dk("s.example.com", "pass")),
			StatusPass, AlignExact, []Alignment{AlignNone, AlignNotPassed, AlignRelaxed},
			"SPF aligned (smtp.mailfrom=example.com), DKIM aligned (header.d=s.example.com, relaxed)"},
		{"DKIM exact and relaxed, SPF across the psd=n boundary", spfIn("example.com", "pass", "x.dept.example.com",
			dk("mail.example.com", "pass"), dk("example.com", "pass")),
			StatusPass, AlignNone, []Alignment{AlignRelaxed, AlignExact},
			"DKIM aligned (header.d=mail.example.com, relaxed; header.d=example.com)"},
		{"strict: a subdomain is not aligned even beside an exact one", spfIn("strict.example", "pass", "mail.strict.example", dk("strict.example", "pass")),
			StatusPass, AlignNone, []Alignment{AlignExact}, "DKIM aligned (header.d=strict.example)"},
		{"nothing aligned", spfIn("example.com", "pass", "example.net", dk("example.org", "pass")),
			StatusFail, AlignNone, []Alignment{AlignNone}, "no aligned identifier passed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := evaluate(context.Background(), r, tt.in, nil)
			if res.Status != tt.status || res.SPFAlignment != tt.spf || !slices.Equal(res.DKIMAlignment, tt.dkim) || res.Reason != tt.reason {
				t.Errorf("got %s spf=%q dkim=%q %q\nwant %s spf=%q dkim=%q %q", res.Status, res.SPFAlignment, res.DKIMAlignment, res.Reason,
					tt.status, tt.spf, tt.dkim, tt.reason)
			}
			if res.SPFAligned != tt.spf.Aligned() {
				t.Errorf("SPFAligned %v, SPFAlignment %q", res.SPFAligned, res.SPFAlignment)
			}
		})
	}
}

func TestEvaluateTestMode(t *testing.T) {
	_, r := newDNS(t, evalZone)
	res := evaluate(context.Background(), r, spfIn("testing.example", "fail", "testing.example"), nil)
	if !res.TestMode || res.SampledOut {
		t.Errorf("TestMode=%v SampledOut=%v, want true false", res.TestMode, res.SampledOut)
	}
	res = evaluate(context.Background(), r, spfIn("monitor.example", "fail", "monitor.example"), nil)
	if res.TestMode {
		t.Error("t=y has no effect on p=none (RFC 9989 §4.7), TestMode should be false")
	}
}

// TestEvaluatePctZero: RFC 9989 has no pct and makes t=y the analogue of
// pct=0 (Appendix A.6): in rfc9989 mode a record with pct=0 and no t tag is
// t=y (one level lower); t=n or another pct value leaves the policy as is.
func TestEvaluatePctZero(t *testing.T) {
	_, r := newDNS(t, `_dmarc.rej0.example.   300 IN TXT "v=DMARC1; p=reject; pct=0"
_dmarc.quar0.example.  300 IN TXT "v=DMARC1; p=quarantine; pct=0; rua=mailto:d@quar0.example"
_dmarc.tn0.example.    300 IN TXT "v=DMARC1; p=reject; pct=0; t=n"
_dmarc.ty0.example.    300 IN TXT "v=DMARC1; p=reject; pct=0; t=y"
_dmarc.rej50.example.  300 IN TXT "v=DMARC1; p=reject; pct=50"
_dmarc.none0.example.  300 IN TXT "v=DMARC1; p=none; pct=0"`)
	tests := []struct {
		author           string
		applied          Policy
		testMode, figPct bool
		reason           string
	}{
		{"rej0.example", PolicyQuarantine, true, true, "no aligned identifier passed; pct=0 without t read as t=y: policy stepped down"},
		{"quar0.example", PolicyNone, true, true, "no aligned identifier passed; pct=0 without t read as t=y: policy stepped down"},
		{"tn0.example", PolicyReject, false, false, "no aligned identifier passed"},
		{"ty0.example", PolicyQuarantine, true, false, "no aligned identifier passed; t=y: policy stepped down"},
		{"rej50.example", PolicyReject, false, false, "no aligned identifier passed"},
		{"none0.example", PolicyNone, false, false, "no aligned identifier passed"},
	}
	for _, tt := range tests {
		res := evaluate(context.Background(), r, spfIn(tt.author, "fail", tt.author), nil)
		if res.Status != StatusFail || res.Applied != tt.applied || res.TestMode != tt.testMode || res.TestModeFromPct != tt.figPct || res.Reason != tt.reason {
			t.Errorf("%s: %s applied %q testMode %v fromPct %v %q; want fail %q %v %v %q", tt.author, res.Status, res.Applied,
				res.TestMode, res.TestModeFromPct, res.Reason, tt.applied, tt.testMode, tt.figPct, tt.reason)
		}
	}
	// rfc7489 mode keeps RFC 7489 §6.6.4 sampling: pct=0 samples every
	// failing message out, and it is reported as such.
	res := evaluate(context.Background(), r, spfIn("rej0.example", "fail", "rej0.example"), &Options{Mode: ModeRFC7489, Rand: func() int { return 0 }})
	if res.Applied != PolicyQuarantine || !res.SampledOut || res.TestMode {
		t.Errorf("rfc7489: applied %q sampledOut %v testMode %v; want quarantine true false", res.Applied, res.SampledOut, res.TestMode)
	}
}

// TestEvaluatePct: RFC 7489 mode samples pct% of failing mail; the rest gets
// the next-lower policy.
func TestEvaluatePct(t *testing.T) {
	_, r := newDNS(t, evalZone)
	tests := []struct {
		rand       int
		applied    Policy
		sampledOut bool
	}{
		{0, "reject", false},
		{29, "reject", false},
		{30, "quarantine", true},
		{99, "quarantine", true},
	}
	for _, tt := range tests {
		calls := 0
		o := &Options{Mode: ModeRFC7489, Rand: func() int { calls++; return tt.rand }}
		res := evaluate(context.Background(), r, spfIn("pct.example", "fail", "pct.example"), o)
		if res.Status != StatusFail || res.Published != "reject" || res.Applied != tt.applied || res.SampledOut != tt.sampledOut {
			t.Errorf("rand %d: status %s published %q applied %q sampledOut %v; want fail reject %q %v",
				tt.rand, res.Status, res.Published, res.Applied, res.SampledOut, tt.applied, tt.sampledOut)
		}
		if calls != 1 {
			t.Errorf("rand %d: Rand called %d times", tt.rand, calls)
		}
		if res.Discovery.Method != MethodPSL {
			t.Errorf("method %q", res.Discovery.Method)
		}
	}
	// Passing mail is never sampled.
	o := &Options{Mode: ModeRFC7489, Rand: func() int { t.Error("Rand called for passing mail"); return 0 }}
	if res := evaluate(context.Background(), r, spfIn("pct.example", "pass", "pct.example"), o); res.Status != StatusPass {
		t.Errorf("status %s, want pass", res.Status)
	}
	// Same relaxed alignment under the PSL.
	res := evaluate(context.Background(), r, spfIn("sub.example.com", "none", "", dk("example.com", "pass")), &Options{Mode: ModeRFC7489})
	if res.Status != StatusPass || res.Published != "quarantine" {
		t.Errorf("PSL relaxed: %s %q (%s)", res.Status, res.Published, res.Reason)
	}
}

// TestEvaluateTempError: a DNS failure the result depends on gives temperror
// and no policy (RFC 9989 §5.3.6); one it does not depend on changes
// nothing.
func TestEvaluateTempError(t *testing.T) {
	zone := `example.com. 300 IN A 192.0.2.1
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.a.example.com. 300 IN TXT "v=DMARC1; p=reject"`
	tests := []struct {
		name   string
		fail   string
		in     Input
		status Status
	}{
		{"SERVFAIL on the policy record", "_dmarc.example.com", spfIn("example.com", "pass", "example.com"), StatusTempError},
		{"SERVFAIL above the author record, exact SPF", "_dmarc.example.com", spfIn("a.example.com", "pass", "a.example.com"), StatusPass},
		{"SERVFAIL above the author record, relaxed DKIM", "_dmarc.example.com", spfIn("a.example.com", "none", "", dk("example.com", "pass")), StatusTempError},
		// RFC 9989 §4.10.1: the author's own record settles the policy;
		// nothing needs the failed name above it.
		{"SERVFAIL above the author record, SPF fail", "_dmarc.example.com", spfIn("a.example.com", "fail", "a.example.com"), StatusFail},
		{"SERVFAIL in the alignment walk", "_dmarc.x.example.com", spfIn("example.com", "none", "", dk("x.example.com", "pass")), StatusTempError},
		{"SERVFAIL in the alignment walk, other identifier aligned", "_dmarc.x.example.com",
			spfIn("example.com", "pass", "example.com", dk("x.example.com", "pass")), StatusPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, r := newDNS(t, zone)
			srv.Fail(tt.fail, dns.RcodeServerFailure)
			res := evaluate(context.Background(), r, tt.in, nil)
			if res.Status != tt.status {
				t.Fatalf("status %s (%s, %v), want %s", res.Status, res.Reason, res.Err, tt.status)
			}
			if tt.status == StatusTempError {
				if !errors.Is(res.Err, ErrTemporary) || res.Applied != "" {
					t.Errorf("err %v applied %q; want ErrTemporary and no policy", res.Err, res.Applied)
				}
			}
		})
	}
	t.Run("pass with one alignment left open says so", func(t *testing.T) {
		srv, r := newDNS(t, zone)
		srv.Fail("_dmarc.x.example.com", dns.RcodeServerFailure)
		res := evaluate(context.Background(), r, spfIn("example.com", "pass", "example.com", dk("x.example.com", "pass")), nil)
		want := "SPF aligned (smtp.mailfrom=example.com), DKIM alignment of some signatures unknown (DNS failure)"
		if res.Status != StatusPass || !slices.Equal(res.DKIMAlignment, []Alignment{AlignUnknown}) || res.Reason != want {
			t.Errorf("got %s %q %q, want pass [unknown] %q", res.Status, res.DKIMAlignment, res.Reason, want)
		}
	})
}

// TestEvaluateOnlyNeededQueries: the Author Domain's own record settles the
// policy (RFC 9989 §4.10.1); names above it are asked only when a passing
// identifier's relaxed alignment depends on them (§4.10.2), and a failure
// there is temperror only when its answer could change the result (§5.3.6).
// A spoofed message from a p=reject domain stays a fail when the parent's
// DNS is broken.
func TestEvaluateOnlyNeededQueries(t *testing.T) {
	zone := `mail.bank.test.          300 IN A   192.0.2.1
_dmarc.mail.bank.test.   300 IN TXT "v=DMARC1; p=reject"
_dmarc.bank.test.        300 IN TXT "v=DMARC1; p=none"`
	tests := []struct {
		name    string
		fail    string // answers SERVFAIL
		in      Input
		status  Status
		queries int64 // on the wire (uncached resolver)
	}{
		{"spoof, nothing passed, parent SERVFAIL", "_dmarc.bank.test",
			spfIn("mail.bank.test", "fail", "evil.example"), StatusFail, 1},
		{"spoof, SPF pass under another TLD", "_dmarc.bank.test",
			spfIn("mail.bank.test", "pass", "evil.example", dk("evil.example", "pass")), StatusFail, 1},
		{"spoof, SPF pass under the same TLD: the parent cannot make it align", "_dmarc.bank.test",
			spfIn("mail.bank.test", "pass", "evil.test"), StatusFail, 3},
		{"exact DKIM, parent SERVFAIL", "_dmarc.bank.test",
			spfIn("mail.bank.test", "none", "", dk("mail.bank.test", "pass")), StatusPass, 1},
		{"relaxed DKIM at the parent needs its record", "_dmarc.bank.test",
			spfIn("mail.bank.test", "none", "", dk("bank.test", "pass")), StatusTempError, 5},
		{"relaxed SPF at a sibling needs the parent's record", "_dmarc.bank.test",
			spfIn("mail.bank.test", "pass", "bounce.bank.test"), StatusTempError, 6},
		{"TLD SERVFAIL: a subdomain aligns whatever the TLD says", "_dmarc.test",
			spfIn("mail.bank.test", "pass", "x.mail.bank.test"), StatusPass, 7},
		// A record without psd=y at the TLD would make every .test name one
		// Organizational Domain (RFC 9989 §4.10.2 rule 3; the risk its
		// "Relaxed Alignment Considerations" name): the answer can change
		// the result, so temperror.
		{"TLD SERVFAIL: another name under the TLD depends on it", "_dmarc.test",
			spfIn("mail.bank.test", "pass", "evil.test"), StatusTempError, 5},
		{"TLD SERVFAIL: nothing passed", "_dmarc.test",
			spfIn("mail.bank.test", "softfail", "mail.bank.test"), StatusFail, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, r := newDNS(t, zone)
			srv.Fail(tt.fail, dns.RcodeServerFailure)
			res := evaluate(context.Background(), r, tt.in, nil)
			if res.Status != tt.status {
				t.Errorf("status %s (%s, %v), want %s", res.Status, res.Reason, res.Err, tt.status)
			}
			if got := srv.Queries(); got != tt.queries {
				t.Errorf("%d queries, want %d", got, tt.queries)
			}
			if tt.status == StatusTempError && !errors.Is(res.Err, ErrTemporary) {
				t.Errorf("err %v, want ErrTemporary", res.Err)
			}
			if tt.status == StatusFail && res.Applied != PolicyReject {
				t.Errorf("applied %q, want reject", res.Applied)
			}
		})
	}
}

func TestPendingEvaluate(t *testing.T) {
	srv, r := newDNS(t, evalZone)
	p := StartDiscovery(context.Background(), r, "example.com", ModeRFC9989)
	res := p.Evaluate(context.Background(), r, spfIn("example.com", "none", "", dk("mail.example.com", "pass")), nil)
	if res.Status != StatusPass || res.AlignedDKIMDomain != "mail.example.com" {
		t.Fatalf("got %s %q (%s)", res.Status, res.AlignedDKIMDomain, res.Reason)
	}
	// Discovery: _dmarc.example.com, _dmarc.com; alignment: _dmarc.mail.example.com
	// (then example.com and com again, uncached in this test).
	if n := srv.Queries(); n != 5 {
		t.Errorf("%d queries, want 5", n)
	}
}

// TestEvaluateEach: several Author Domains (RFC 9989 §11.5) — the failing
// result with the strictest policy wins.
func TestEvaluateEach(t *testing.T) {
	_, r := newDNS(t, evalZone)
	tests := []struct {
		name    string
		domains []string
		in      Input
		max     int
		status  Status
		author  string
		applied Policy
		n       int
	}{
		{"strictest failure wins", []string{"strict.example", "example.com", "norec.example"}, spfIn("", "fail", "x.example"), 0,
			StatusFail, "example.com", "reject", 3},
		{"failure beats pass", []string{"example.com", "strict.example"}, spfIn("", "pass", "example.com"), 0,
			StatusFail, "strict.example", "quarantine", 2},
		{"test mode lowers the failing policy", []string{"testing.example", "strict.example"}, spfIn("", "fail", "x.example"), 0,
			StatusFail, "testing.example", "quarantine", 2}, // applied quarantine ties (t=y: reject→quarantine); published reject breaks it
		{"all pass", []string{"example.com", "sub.example.com"}, spfIn("", "pass", "example.com"), 0,
			StatusPass, "example.com", "none", 2},
		{"pass and none", []string{"norec.example", "example.com"}, spfIn("", "pass", "example.com"), 0,
			StatusPass, "example.com", "none", 2},
		{"cap reached without failure: permerror", []string{"example.com", "sub.example.com", "strict.example"}, spfIn("", "pass", "example.com"), 2,
			StatusPermError, "example.com", "", 2},
		{"cap reached with a failure: the failure", []string{"strict.example", "example.com", "norec.example"}, spfIn("", "pass", "example.com"), 2,
			StatusFail, "strict.example", "quarantine", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			best, all := EvaluateEach(context.Background(), r, tt.domains, tt.in, tt.max, nil)
			if best.Status != tt.status || best.AuthorDomain != tt.author || best.Applied != tt.applied || len(all) != tt.n {
				t.Errorf("got %s %s %q (%d results, %s); want %s %s %q (%d)", best.Status, best.AuthorDomain, best.Applied, len(all), best.Reason,
					tt.status, tt.author, tt.applied, tt.n)
			}
		})
	}
	if best, _ := EvaluateEach(context.Background(), r, nil, Input{}, 0, nil); best.Status != StatusPermError {
		t.Errorf("no domains: %s, want permerror", best.Status)
	}
}

// TestOrgDomainForAlignment: what ARC vouching and failure reports compare
// with when the Author Domain's own record left the names above it unasked
// (RFC 9989 §4.10.1): the Author Domain itself, never a guess above it.
func TestOrgDomainForAlignment(t *testing.T) {
	_, r := newDNS(t, evalZone)
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"own record, nothing needed the walk", spfIn("example.com", "fail", "example.com"), "example.com"},
		{"own record, a relaxed check walked", spfIn("example.com", "pass", "bounce.example.com"), "example.com"},
		{"subdomain without a record: from discovery", spfIn("sub.example.com", "fail", "x.example"), "example.com"},
		{"own record at a subdomain, nothing walked", spfIn("giant.bank.example", "fail", "x.example"), "giant.bank.example"},
		{"no record anywhere: the start itself (§4.10.2)", spfIn("norec.example", "pass", "norec.example"), "norec.example"},
	}
	for _, tt := range tests {
		res := evaluate(context.Background(), r, tt.in, nil)
		if got := res.OrgDomainForAlignment(); got != tt.want {
			t.Errorf("%s: %q, want %q (OrgDomain %q)", tt.name, got, tt.want, res.OrgDomain)
		}
	}
}
