package store

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// TestPctZeroSaidEverywhere: "p=reject; pct=0" without t is read as t=y in
// rfc9989 mode (RFC 9989 Appendix A.6), and the three places that tell
// somebody say so: the Authentication-Results comment, the policy decision
// (quarantine, not reject) and the per-message record's policy_test_mode
// override for the aggregate report. verify's explanation is checked in
// cmd/authmilter.
func TestPctZeroSaidEverywhere(t *testing.T) {
	srv := dnstest.New(t, `_dmarc.pct0.test. 300 IN TXT "v=DMARC1; p=reject; pct=0; rua=mailto:d@pct0.test"`)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	res := &engine.Result{SPF: spfcheck.Result{Status: spfcheck.StatusFail, Domain: "pct0.test", Scope: spfcheck.ScopeMailFrom},
		DKIM: []dkimverify.Result{}}
	res.DMARC = evaluateDMARC(r, dmarc.Input{AuthorDomain: "pct0.test", SPFResult: "fail", SPFDomain: "pct0.test"}, nil)
	res.DMARCAll = []dmarc.Result{res.DMARC}

	var ar string
	for _, a := range resultheader.AuthResults(res) {
		if a.Method == "dmarc" {
			ar = authres.Format("mx.test", []authres.Result{a})
		}
	}
	if !strings.Contains(ar, "p=REJECT applied=QUARANTINE, pct=0 as t=y") { // ";" inside comments is written as "," (issue 15)
		t.Errorf("A-R does not say it: %s", ar)
	}

	p, err := policy.New(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	dec := p.Decide(res, netip.MustParseAddr("192.0.2.1"), "")
	if dec.Action != policy.Quarantine || dec.Override != policy.ReasonTestMode || !strings.Contains(dec.Why, "pct=0 without t read as t=y") {
		t.Errorf("decision %+v, want quarantine with policy_test_mode saying pct=0", dec)
	}

	recs := Build(Message{Result: res, Decision: dec, Reporter: "mx.test", ClientIP: netip.MustParseAddr("192.0.2.1"),
		MailFrom: "a@pct0.test", Recipients: []string{"b@rcpt.test"}, Time: time.Now()}, Exclusions{})
	if len(recs) != 1 || len(recs[0].Overrides) != 1 || recs[0].Overrides[0].Type != "policy_test_mode" ||
		!strings.Contains(recs[0].Overrides[0].Comment, "pct=0 without t read as t=y") || recs[0].Disposition != "quarantine" {
		t.Errorf("records %+v, want one with disposition quarantine and a policy_test_mode override naming pct=0", recs)
	}
}

// evaluateDMARC runs discovery and alignment for in.AuthorDomain with the
// given options, in the two steps the engine takes.
func evaluateDMARC(r dmarc.Resolver, in dmarc.Input, o *dmarc.Options) dmarc.Result {
	ctx := context.Background()
	mode := dmarc.ModeRFC9989
	if o != nil && o.Mode != "" {
		mode = o.Mode
	}
	d, err := dmarc.Discover(ctx, r, in.AuthorDomain, mode)
	return dmarc.EvaluateDiscovered(ctx, r, in, d, err, o)
}
