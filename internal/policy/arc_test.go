package policy

import (
	"net/netip"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
)

// RFC 8617 §7.2 / RFC 9989 §5.4: a trusted sealer's recorded assessment
// may override a DMARC fail; nothing else about the chain does.
func TestARCTrustedSealers(t *testing.T) {
	res := func(method, value string, props ...string) authres.Result {
		r := authres.Result{Method: method, Value: value}
		for i := 0; i+1 < len(props); i += 2 {
			r.Props = append(r.Props, authres.Prop{Key: props[i], Value: props[i+1]})
		}
		return r
	}
	dmarcPass := []authres.Result{res("spf", "pass", "smtp.mailfrom", "a@example.org"), res("dmarc", "pass", "header.from", "example.org")}
	set := func(i int, sealer string, rs []authres.Result) arc.Set {
		return arc.Set{Instance: i, SealDomain: sealer, SealSelector: "s", AuthServID: sealer, Results: rs, SealPass: true, MessagePass: true}
	}
	chain := func(st arc.Status, sets ...arc.Set) arc.Result {
		return arc.Result{Status: st, Sets: sets, RemoteIP: "192.0.2.7"}
	}
	disc := func(adkim, aspf byte) *dmarc.Discovery {
		return &dmarc.Discovery{AuthorDomain: "mail.example.org", OrgDomain: "example.org", Record: &dmarc.Record{ADKIM: adkim, ASPF: aspf}}
	}
	failing := func(d *dmarc.Discovery) dmarc.Result {
		return dmarc.Result{Status: dmarc.StatusFail, AuthorDomain: "mail.example.org", Discovery: d,
			Published: dmarc.PolicyReject, Applied: dmarc.PolicyReject}
	}
	relaxed := failing(disc('r', 'r'))
	tests := []struct {
		name    string
		sealers []string
		arc     arc.Result
		dm      dmarc.Result
		sealer  string // "" when the policy applies (reject)
		why     string
	}{
		{"no trusted sealers", nil, chain(arc.StatusPass, set(1, "list.example", dmarcPass)), relaxed, "", ""},
		{"trusted, dmarc=pass for the author", []string{"LIST.example."},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("dmarc", "pass", "header.from", "mail.example.org")})),
			relaxed, "list.example", "arc=pass as[1].d=list.example as[1].s=s remote-ip[1]=192.0.2.7"},
		{"dmarc=pass for another domain", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("dmarc", "pass", "header.from", "other.example")})), relaxed, "", ""},
		{"dmarc=pass for the parent only, but an aligned spf pass (relaxed)", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", dmarcPass)), relaxed, "list.example", ""},
		{"chain fails", []string{"list.example"},
			arc.Result{Status: arc.StatusFail, Sets: []arc.Set{set(1, "list.example", dmarcPass)}}, relaxed, "", ""},
		{"aligned dkim pass (relaxed)", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("dkim", "pass", "header.d", "example.org")})), relaxed, "list.example", ""},
		{"dkim pass under adkim=s, parent domain", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("dkim", "pass", "header.d", "example.org")})),
			failing(disc('s', 'r')), "", ""},
		{"dkim fail recorded", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("dkim", "fail", "header.d", "mail.example.org")})), relaxed, "", ""},
		{"spf pass, unaligned", []string{"list.example"},
			chain(arc.StatusPass, set(1, "list.example", []authres.Result{res("spf", "pass", "smtp.mailfrom", "x@elsewhere.example")})), relaxed, "", ""},
		{"newest trusted set decides (it recorded a fail)", []string{"fwd.example", "list.example"},
			chain(arc.StatusPass, set(1, "fwd.example", dmarcPass), set(2, "list.example", []authres.Result{res("dmarc", "fail", "header.from", "mail.example.org")})),
			relaxed, "", ""},
		{"older trusted set under an untrusted newer one", []string{"fwd.example"},
			chain(arc.StatusPass, set(1, "fwd.example", dmarcPass), set(2, "list.example", nil)),
			relaxed, "fwd.example", "arc=pass as[2].d=list.example as[2].s=s as[1].d=fwd.example as[1].s=s remote-ip[1]=192.0.2.7"},
		{"trusted set whose message signature no longer verifies", []string{"fwd.example"},
			chain(arc.StatusPass, arc.Set{Instance: 1, SealDomain: "fwd.example", SealSelector: "s", Results: dmarcPass, SealPass: true},
				set(2, "list.example", nil)),
			relaxed, "", ""},
		{"untrusted sealer claims a pass", []string{"fwd.example"},
			chain(arc.StatusPass, set(1, "list.example", dmarcPass)), relaxed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.ARC.TrustedSealers = tt.sealers
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := engine.Result{ARC: tt.arc, DMARC: tt.dm}
			d := p.Decide(&r, netip.MustParseAddr("192.0.2.7"), "mx.list.example")
			if d.Sealer != tt.sealer {
				t.Fatalf("sealer %q, want %q (%+v)", d.Sealer, tt.sealer, d)
			}
			if tt.sealer == "" {
				if d.Action != Reject || d.Override != "" {
					t.Errorf("decision %+v, want reject", d)
				}
				return
			}
			if d.Action != Accept || d.Disposition != "none" || d.Override != ReasonLocalPolicy {
				t.Errorf("decision %+v", d)
			}
			if tt.why != "" && d.Why != tt.why {
				t.Errorf("why %q, want %q", d.Why, tt.why)
			}
			ar := resultheader.ARCOverride([]authres.Result{{Method: "dmarc", Value: "fail", Reason: "p=REJECT"}}, d.Sealer, d.Why)
			if want := "p=REJECT; delivered by local policy, trusted ARC sealer " + tt.sealer + ": " + d.Why; ar[0].Reason != want {
				t.Errorf("A-R comment %q, want %q", ar[0].Reason, want)
			}
		})
	}
}
