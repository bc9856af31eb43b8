package store

import (
	"net/netip"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// TestReportMixedAlignment: a corpus with identifiers aligned exactly,
// relaxed and not at all goes through the real DMARC evaluation (DNS from
// internal/dnstest), the record builder and the aggregate report writer;
// the XML read back carries in policy_evaluated what each identifier really
// did (RFC 9990 §3.1.1.9), also where the other identifier already aligned
// exactly (RFC 9989 §5.3.4: every Authenticated Identifier is checked).
func TestReportMixedAlignment(t *testing.T) {
	srv := dnstest.New(t, `sender.test.          300 IN A   192.0.2.1
_dmarc.sender.test.   300 IN TXT "v=DMARC1; p=reject; rua=mailto:agg@sender.test"
_dmarc.strict.test.   300 IN TXT "v=DMARC1; p=reject; aspf=s; rua=mailto:agg@strict.test"`)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	type msg struct {
		author, mailFrom string
		spf              spfcheck.Status
		dkim             []string // d= of passing signatures
		wantSPF          string   // policy_evaluated
		wantDKIM         string
		wantDisp         string
	}
	corpus := []msg{
		// The common setup: Return-Path on a subdomain, DKIM on the domain.
		{"sender.test", "bounce.sender.test", spfcheck.StatusPass, []string{"sender.test"}, "pass", "pass", "none"},
		{"sender.test", "sender.test", spfcheck.StatusPass, []string{"mail.sender.test"}, "pass", "pass", "none"},
		{"sender.test", "bounce.sender.test", spfcheck.StatusPass, nil, "pass", "fail", "none"},
		{"sender.test", "esp.example", spfcheck.StatusPass, []string{"sender.test", "esp.example"}, "fail", "pass", "none"},
		{"sender.test", "sender.test", spfcheck.StatusFail, []string{"other.example"}, "fail", "fail", "reject"},
		// aspf=s: the subdomain does not align beside an exact DKIM pass.
		{"strict.test", "bounce.strict.test", spfcheck.StatusPass, []string{"strict.test"}, "fail", "pass", "none"},
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var entries []report.Entry
	for i, c := range corpus {
		res := &engine.Result{SPF: spfcheck.Result{Status: c.spf, Domain: c.mailFrom, Scope: spfcheck.ScopeMailFrom}, DKIM: []dkimverify.Result{}}
		in := dmarc.Input{AuthorDomain: c.author, SPFResult: string(c.spf), SPFDomain: c.mailFrom}
		for _, d := range c.dkim {
			res.DKIM = append(res.DKIM, dkimverify.Result{Status: dkimverify.StatusPass, Domain: d, Selector: "s"})
			in.DKIM = append(in.DKIM, dmarc.DKIMInput{Domain: d, Selector: "s", Result: "pass"})
		}
		res.DMARC = evaluateDMARC(r, in, nil)
		res.DMARCAll = []dmarc.Result{res.DMARC}
		dec := policy.Decision{Disposition: "none"}
		if res.DMARC.Status == dmarc.StatusFail {
			dec = policy.Decision{Action: policy.Reject, Disposition: "reject"}
		}
		recs := Build(Message{Result: res, Decision: dec, Reporter: "mx.test", QueueID: "Q",
			ClientIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), MailFrom: "x@" + c.mailFrom,
			Recipients: []string{"a@rcpt.test"}, Time: now}, Exclusions{})
		if len(recs) != 1 {
			t.Fatalf("message %d: %d records", i, len(recs))
		}
		entries = append(entries, report.Entry{ID: recs[0].SourceIP, Record: recs[0]})
	}
	reports, skipped, err := report.Build(entries, report.Options{Receiver: "mx.test"})
	if err != nil || len(skipped) > 0 || len(reports) != 2 {
		t.Fatalf("Build: %d reports, skipped %v, %v", len(reports), skipped, err)
	}
	got := map[string]report.Row{}
	for _, rep := range reports {
		for _, f := range []report.Format{report.FormatRFC9990, report.FormatRFC7489} {
			x, err := rep.XML(f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := report.ReadXML(x, nil)
			if err != nil {
				t.Fatalf("%s: read back: %v\n%s", f, err, x)
			}
			for _, row := range back.Rows {
				got[string(f)+" "+row.SourceIP] = row
			}
		}
	}
	for i, c := range corpus {
		for _, f := range []report.Format{report.FormatRFC9990, report.FormatRFC7489} {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}).String()
			row, ok := got[string(f)+" "+ip]
			if !ok {
				t.Errorf("%s: no row for message %d (%s)", f, i, ip)
				continue
			}
			if row.SPFAligned != c.wantSPF || row.DKIMAligned != c.wantDKIM || row.Disposition != c.wantDisp {
				t.Errorf("%s message %d (From %s, MAIL FROM %s, DKIM %v): policy_evaluated spf=%s dkim=%s disposition=%s; want %s %s %s",
					f, i, c.author, c.mailFrom, c.dkim, row.SPFAligned, row.DKIMAligned, row.Disposition, c.wantSPF, c.wantDKIM, c.wantDisp)
			}
		}
	}
}
