package service_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
)

const arcChains = "../../pkg/arc/testdata/chains/"

// arcZone: the sealers' and the author's keys (dkimpy-made chains,
// pkg/arc/testdata), author.example at p=reject, the list's envelope
// domain with SPF for the list's address.
func arcZone(t testing.TB) string {
	t.Helper()
	keys, err := os.ReadFile("../../pkg/arc/testdata/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	return baseZone + string(keys) + `
author.example.        300 IN TXT "v=spf1 -all"
_dmarc.author.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@author.example"
lists.example.         300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
`
}

const listOverride = "trusted ARC sealer lists.example: arc=pass as[1].d=lists.example as[1].s=s2 remote-ip[1]=198.51.100.20"

// Forwarded mail from a p=reject domain, changed by a list (footer,
// subject tag: the author's DKIM signature breaks) and sealed by it.
// Trusted, its recorded DMARC pass is taken; untrusted, DMARC rejects.
func TestARCTrustedSealerThroughMilter(t *testing.T) {
	tests := []struct {
		name, file string
		sealers    []string
		want       []string
		reply      string
	}{
		{"trusted list", "list-only.eml", []string{"lists.example"},
			[]string{"arc=pass (as[1].d=lists.example as[1].s=s2) smtp.remote-ip=198.51.100.20",
				"dkim=fail", "dmarc=fail", listOverride}, ""},
		{"untrusted list", "list-only.eml", nil,
			[]string{"arc=pass", "dmarc=fail"}, "550 5.7.1 Email rejected per DMARC policy for author.example"},
		{"other sealer trusted", "list-only.eml", []string{"forwarder.example"},
			[]string{"arc=pass", "dmarc=fail"}, "550 5.7.1 Email rejected per DMARC policy for author.example"},
		{"trusted list recorded dmarc=fail", "dmarc-fail-aar.eml", []string{"lists.example"},
			[]string{"arc=pass", "dmarc=fail"}, "550 5.7.1 Email rejected per DMARC policy for author.example"},
		{"trusted list, chain broken after it", "body-after-seal.eml", []string{"lists.example", "forwarder.example"},
			[]string{"arc=fail (ARC-Message-Signature i=2: body hash mismatch)"}, "550 5.7.1 Email rejected per DMARC policy for author.example"},
		// The first hop (trusted) saw the author's signature intact; the
		// list after it (untrusted) changed the message. What the trusted
		// hop recorded is about another text: no override.
		{"older trusted set, changed after it", "list-footer.eml", []string{"forwarder.example"},
			[]string{"arc=pass (as[2].d=lists.example as[2].s=s2) header.oldest-pass=2", "dmarc=fail"},
			"550 5.7.1 Email rejected per DMARC policy for author.example"},
		// The trusted list's set copied onto a forged message and sealed
		// over by another hop: the chain passes, the copied set's message
		// signature does not verify: no override.
		{"trusted set replayed on a forged message", "replayed-set.eml", []string{"lists.example"},
			[]string{"arc=pass (as[2].d=forwarder.example as[2].s=s1) header.oldest-pass=2", "dmarc=fail"},
			"550 5.7.1 Email rejected per DMARC policy for author.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, arcZone(t), func(c *config.Config) { c.ARC.TrustedSealers = tt.sealers })
			c := h.connect("198.51.100.20", "mail.lists.example", "mail.lists.example")
			r := c.send(emlMsg(t, arcChains+tt.file, "list-bounces@lists.example"))
			ar := unfold(r.ar(t))
			for _, w := range tt.want {
				if !strings.Contains(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
			if tt.reply == "" && strings.Contains(ar, "trusted ARC sealer") != (len(tt.sealers) > 0) {
				t.Errorf("override note:\n%s", ar)
			}
			if got := r.reply(); !strings.HasSuffix(got, tt.reply) || (tt.reply == "") != (got == "") {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
		})
	}
}

// unfold joins a folded header value into one line, so that tests can
// look for phrases the folding may have cut.
func unfold(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

// The override is recorded with reason local_policy and the chain as the
// comment, and the aggregate report built from that record shows it and
// validates against the RFC 9990 schema.
func TestARCOverrideInAggregateReport(t *testing.T) {
	srv := dnstest.New(t, arcZone(t))
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ARC.TrustedSealers = []string{"lists.example"}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(r, service.EngineOptions(cfg))
	ctx := context.Background()
	m := e.Begin(ctx, engine.Envelope{ClientIP: netip.MustParseAddr("198.51.100.20"), HELO: "mail.lists.example", MailFrom: "list-bounces@lists.example"})
	msg := emlMsg(t, arcChains+"list-only.eml", "")
	for _, f := range msg.headers {
		m.Header(f[0], milter.FieldValue(f[1])) // emlMsg gives the wire form; the engine takes the milter's
	}
	m.EndOfHeaders()
	for _, b := range msg.bodyBufs {
		m.Body(b)
	}
	res := m.Finish(ctx)
	ip := netip.MustParseAddr("198.51.100.20")
	d := pol.Decide(res, ip, "mail.lists.example")
	if d.Action != policy.Accept || d.Override != policy.ReasonLocalPolicy || d.Sealer != "lists.example" {
		t.Fatalf("decision %+v", d)
	}
	when := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	recs := store.Build(store.Message{Result: res, Decision: d, Reporter: authservID, ClientIP: ip,
		MailFrom: "list-bounces@lists.example", Recipients: []string{"bob@rcpt.test"}, Time: when}, store.Exclusions{})
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	want := report.Override{Type: "local_policy", Comment: "arc=pass as[1].d=lists.example as[1].s=s2 remote-ip[1]=198.51.100.20"}
	if len(recs[0].Overrides) != 1 || recs[0].Overrides[0] != want {
		t.Fatalf("overrides %+v, want %+v", recs[0].Overrides, want)
	}
	reps, _, err := report.Build([]report.Entry{{ID: "1", Record: recs[0]}}, report.Options{Receiver: "rcpt.test", Email: "dmarc@rcpt.test"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("report.Build: %d, %v", len(reps), err)
	}
	xml, err := reps[0].XML(report.FormatRFC9990)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"<disposition>none</disposition>", "<type>local_policy</type>",
		"<comment>arc=pass as[1].d=lists.example as[1].s=s2 remote-ip[1]=198.51.100.20</comment>"} {
		if !strings.Contains(string(xml), w) {
			t.Errorf("report lacks %s:\n%s", w, xml)
		}
	}
	reporttest.Validate(t, report.FormatRFC9990, xml)
}
