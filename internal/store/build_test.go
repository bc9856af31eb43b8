package store

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

func discovery(author, policyDomain, txt, method string) *dmarc.Discovery {
	rec, err := dmarc.ParseRecord(txt)
	if err != nil {
		panic(err)
	}
	return &dmarc.Discovery{AuthorDomain: author, PolicyDomain: policyDomain, OrgDomain: policyDomain, Record: rec, Method: method}
}

func dres(author string, st dmarc.Status, applied dmarc.Policy, d *dmarc.Discovery) dmarc.Result {
	return dmarc.Result{Status: st, AuthorDomain: author, Discovery: d, Published: applied, Applied: applied,
		SPFAligned: st == dmarc.StatusPass}
}

func baseResult(all ...dmarc.Result) *engine.Result {
	r := &engine.Result{
		SPF: spfcheck.Result{Status: spfcheck.StatusPass, Domain: "bounce.sender.test", Scope: spfcheck.ScopeMailFrom},
		DKIM: []dkimverify.Result{
			{Status: dkimverify.StatusPass, Domain: "sender.test", Selector: "s1"},
			{Status: "fail", Domain: "other.test", Selector: "s2"},
		},
		DMARCAll: all,
	}
	if len(all) > 0 {
		r.DMARC = all[0]
	}
	return r
}

func TestBuild(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	withRUA := discovery("sender.test", "sender.test", "v=DMARC1; p=reject; rua=mailto:agg@sender.test!10m,mailto:b@sender.test; adkim=s; fo=1", dmarc.MethodTreeWalk)
	noRUA := discovery("norua.test", "norua.test", "v=DMARC1; p=reject", dmarc.MethodTreeWalk)
	psl := discovery("sub.psl.test", "psl.test", "v=DMARC1; p=quarantine; sp=none; pct=50; t=y; rua=mailto:r@psl.test", dmarc.MethodPSL)
	excl, err := ParseExclusions([]string{"DMARC-Reports@rcpt.test", "@loop.test"})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(r *engine.Result, d policy.Decision, rcpts ...string) Message {
		return Message{Result: r, Decision: d, Reporter: "mx.rcpt.test", QueueID: "Q1",
			ClientIP: netip.MustParseAddr("::ffff:192.0.2.1"), MailFrom: "Bounce@Bounce.Sender.Test", Recipients: rcpts, Time: now}
	}
	pass := policy.Decision{Disposition: "pass"}
	rej := policy.Decision{Action: policy.Reject, Disposition: "reject", Why: "dmarc fail, policy reject"}
	mon := policy.Decision{Disposition: "none", Override: policy.ReasonLocalPolicy, Why: "dmarc fail, monitor mode"}

	tests := []struct {
		name string
		m    Message
		want int    // records
		disp string // of the first record
		over []report.Override
		to   []string
	}{
		{"pass", msg(baseResult(dres("sender.test", dmarc.StatusPass, dmarc.PolicyNone, withRUA)), pass, "<a@Rcpt.Test>", "b@rcpt.test", "c@two.test"),
			1, "pass", nil, []string{"rcpt.test", "two.test"}},
		{"reject", msg(baseResult(dres("sender.test", dmarc.StatusFail, dmarc.PolicyReject, withRUA)), rej, "a@rcpt.test"),
			1, "reject", nil, []string{"rcpt.test"}},
		{"monitor override", msg(baseResult(dres("sender.test", dmarc.StatusFail, dmarc.PolicyReject, withRUA)), mon, "a@rcpt.test"),
			1, "none", []report.Override{{Type: "local_policy", Comment: "dmarc fail, monitor mode"}}, []string{"rcpt.test"}},
		{"no rua: nobody to report to", msg(baseResult(dres("norua.test", dmarc.StatusFail, dmarc.PolicyReject, noRUA)), rej, "a@rcpt.test"),
			0, "", nil, nil},
		{"no policy record", msg(baseResult(dmarc.Result{Status: dmarc.StatusNone, AuthorDomain: "x.test", Discovery: &dmarc.Discovery{}}), pass, "a@rcpt.test"),
			0, "", nil, nil},
		{"no DMARC evaluation", msg(baseResult(), pass, "a@rcpt.test"), 0, "", nil, nil},
		{"excluded recipients only", msg(baseResult(dres("sender.test", dmarc.StatusPass, dmarc.PolicyNone, withRUA)), pass, "dmarc-reports@rcpt.test", "x@LOOP.test"),
			0, "", nil, nil},
		{"excluded recipient dropped", msg(baseResult(dres("sender.test", dmarc.StatusPass, dmarc.PolicyNone, withRUA)), pass, "dmarc-reports@rcpt.test", "x@loop.test", "y@other.test"),
			1, "pass", nil, []string{"other.test"}},
		{"several author domains", msg(baseResult(
			dres("sender.test", dmarc.StatusFail, dmarc.PolicyReject, withRUA),
			dres("sub.psl.test", dmarc.StatusFail, dmarc.PolicyNone, psl),
			dres("norua.test", dmarc.StatusPass, dmarc.PolicyNone, noRUA)), rej, "a@rcpt.test"),
			2, "reject", nil, []string{"rcpt.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Build(tt.m, excl)
			if len(got) != tt.want {
				t.Fatalf("got %d records, want %d: %+v", len(got), tt.want, got)
			}
			if tt.want == 0 {
				return
			}
			r := got[0]
			if r.Disposition != tt.disp || !reflect.DeepEqual(r.Overrides, tt.over) || !reflect.DeepEqual(r.EnvelopeTo, tt.to) {
				t.Errorf("disposition %q overrides %+v to %v; want %q %+v %v", r.Disposition, r.Overrides, r.EnvelopeTo, tt.disp, tt.over, tt.to)
			}
			if r.SourceIP != "192.0.2.1" || r.EnvelopeFrom != "bounce.sender.test" || r.Reporter != "mx.rcpt.test" ||
				r.QueueID != "Q1" || !r.Time.Equal(now) || r.Time.Location() != time.UTC {
				t.Errorf("envelope fields: %+v", r)
			}
			wantSPF := []report.SPFResult{{Domain: "bounce.sender.test", Scope: "mfrom", Result: "pass"}}
			wantDKIM := []report.DKIMResult{{Domain: "sender.test", Selector: "s1", Result: "pass"}, {Domain: "other.test", Selector: "s2", Result: "fail"}}
			if !reflect.DeepEqual(r.SPF, wantSPF) || !reflect.DeepEqual(r.DKIM, wantDKIM) {
				t.Errorf("auth results: %+v %+v", r.SPF, r.DKIM)
			}
		})
	}

	// The published policy, field by field.
	got := Build(tests[len(tests)-1].m, excl)
	want0 := report.PolicyPublished{Domain: "sender.test", DiscoveryMethod: "treewalk", ADKIM: "s", ASPF: "r", P: "reject",
		Testing: "n", Pct: -1, FO: "1", RUA: []report.URI{{Address: "mailto:agg@sender.test", MaxSize: "10m"}, {Address: "mailto:b@sender.test"}}}
	if !reflect.DeepEqual(got[0].Policy, want0) {
		t.Errorf("policy 0:\n got %+v\nwant %+v", got[0].Policy, want0)
	}
	want1 := report.PolicyPublished{Domain: "psl.test", DiscoveryMethod: "psl", ADKIM: "r", ASPF: "r", P: "quarantine", SP: "none",
		Testing: "y", Pct: 50, FO: "0", RUA: []report.URI{{Address: "mailto:r@psl.test"}}}
	if !reflect.DeepEqual(got[1].Policy, want1) {
		t.Errorf("policy 1:\n got %+v\nwant %+v", got[1].Policy, want1)
	}
	// The second author domain failed with its own policy none, but the
	// message was rejected for the first: that difference is an override.
	if got[1].HeaderFrom != "sub.psl.test" || got[1].Disposition != "reject" || len(got[1].Overrides) != 1 || got[1].Overrides[0].Type != "other" {
		t.Errorf("second author domain: %+v", got[1])
	}
	if got[0].DMARCResult != "fail" || got[0].SPFAligned != "fail" || got[0].DKIMAligned != "fail" {
		t.Errorf("results: %+v", got[0])
	}
}

func TestParseExclusions(t *testing.T) {
	for _, bad := range []string{"", "nobody", "user@", "a b@x.test", "<a@x.test>"} {
		if _, err := ParseExclusions([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	e, err := ParseExclusions([]string{"rua@example.net", "@reports.example.net."})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"rua@example.net", true},
		{"<RUA@Example.NET>", true},
		{"rub@example.net", false},
		{"x@reports.example.net", true},
		{"x@sub.reports.example.net", false},
		{"postmaster", false},
	}
	for _, tt := range tests {
		if got := e.Excluded(tt.addr); got != tt.want {
			t.Errorf("Excluded(%q) = %v", tt.addr, got)
		}
	}
}
