package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

func incomingReport(org, id, dom string, begin time.Time, rows ...report.Row) *report.Report {
	return &report.Report{ID: id, OrgName: org, Email: "noreply@" + org, Begin: begin, End: begin.Add(24 * time.Hour),
		Policy: report.PolicyPublished{Domain: dom, P: "none", Pct: -1}, Rows: rows, Format: report.FormatRFC7489}
}

func inRow(ip string, n int, dkim, spf, disp string) report.Row {
	return report.Row{SourceIP: ip, Count: n, Disposition: disp, DKIMAligned: dkim, SPFAligned: spf, HeaderFrom: "example.org",
		DKIM: []report.DKIMResult{{Domain: "example.org", Selector: "s", Result: dkim}},
		SPF:  []report.SPFResult{{Domain: "example.org", Scope: "mfrom", Result: spf}}}
}

// TestIncomingStoreAndTotals, on both backends: a report is stored once
// per (org, report id) whatever the org's case; the totals by domain,
// reporter, source and day are the sums of the rows; the per-sender daily
// cap refuses the next report and stores nothing of it.
func TestIncomingStoreAndTotals(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			s := open(t, bc.opts(t))
			ctx := context.Background()
			day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			now := day.Add(50 * time.Hour)
			g := incomingReport("google.com", "g1", "example.org", day,
				inRow("192.0.2.1", 10, "pass", "pass", "none"), inRow("198.51.100.7", 3, "fail", "fail", "reject"))
			m := incomingReport("Microsoft.com", "m1", "example.org", day.Add(24*time.Hour),
				inRow("192.0.2.1", 5, "pass", "fail", "none"), inRow("2001:db8::1", 2, "fail", "fail", "quarantine"))
			o := incomingReport("google.com", "g2", "other.example", day, inRow("192.0.2.9", 1, "pass", "pass", "none"))
			for _, r := range []*report.Report{g, m, o} {
				ok, err := s.PutIncoming(ctx, r, "sender.test", now, 0)
				if err != nil || !ok {
					t.Fatalf("put %s: %v %v", r.ID, ok, err)
				}
			}
			dup := incomingReport("MICROSOFT.COM", "m1", "example.org", day, inRow("192.0.2.1", 99, "pass", "pass", "none"))
			if ok, err := s.PutIncoming(ctx, dup, "sender.test", now, 0); ok || err != nil {
				t.Fatalf("duplicate: stored %v, %v", ok, err)
			}
			if n, rows, err := s.IncomingReports(ctx); n != 3 || rows != 5 || err != nil {
				t.Fatalf("reports %d rows %d %v", n, rows, err)
			}
			f := IncomingFilter{Domain: "example.org"}
			check := func(g IncomingGroup, want []Totals) {
				t.Helper()
				got, err := s.IncomingTotals(ctx, f, g, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: got %+v", g, got)
				}
				for i := range want {
					w, x := want[i], got[i]
					if x.Key != w.Key || x.Messages != w.Messages || x.DMARCPass != w.DMARCPass || x.DKIMAligned != w.DKIMAligned ||
						x.SPFAligned != w.SPFAligned || x.Quarantined != w.Quarantined || x.Rejected != w.Rejected || x.Reports != w.Reports {
						t.Errorf("%s[%d]: got %+v, want %+v", g, i, x, w)
					}
				}
			}
			check(ByDomain, []Totals{{Key: "example.org", Messages: 20, DMARCPass: 15, DKIMAligned: 15, SPFAligned: 10, Quarantined: 2, Rejected: 3, Reports: 2}})
			check(ByReporter, []Totals{{Key: "google.com", Messages: 13, DMARCPass: 10, DKIMAligned: 10, SPFAligned: 10, Rejected: 3, Reports: 1},
				{Key: "Microsoft.com", Messages: 7, DMARCPass: 5, DKIMAligned: 5, Quarantined: 2, Reports: 1}})
			check(BySource, []Totals{{Key: "192.0.2.1", Messages: 15, DMARCPass: 15, DKIMAligned: 15, SPFAligned: 10},
				{Key: "198.51.100.7", Messages: 3, Rejected: 3}, {Key: "2001:db8::1", Messages: 2, Quarantined: 2}})
			check(BySourceFailing, []Totals{{Key: "198.51.100.7", Messages: 3, Rejected: 3}, {Key: "2001:db8::1", Messages: 2, Quarantined: 2}})
			check(ByDay, []Totals{{Key: "2026-03-01", Messages: 13, DMARCPass: 10, DKIMAligned: 10, SPFAligned: 10, Rejected: 3, Reports: 1},
				{Key: "2026-03-02", Messages: 7, DMARCPass: 5, DKIMAligned: 5, Quarantined: 2, Reports: 1}})
			if p, ok, err := s.IncomingPolicy(ctx, "example.org", day, day.Add(72*time.Hour)); !ok || err != nil || p.P != "none" || p.Domain != "example.org" {
				t.Errorf("policy %+v %v %v", p, ok, err)
			}
			if _, ok, err := s.IncomingPolicy(ctx, "nothing.example", day, day.Add(72*time.Hour)); ok || err != nil {
				t.Errorf("policy of a domain without reports: %v %v", ok, err)
			}
			f = IncomingFilter{Since: day.Add(24 * time.Hour)}
			check(ByDomain, []Totals{{Key: "example.org", Messages: 7, DMARCPass: 5, DKIMAligned: 5, Quarantined: 2, Reports: 1}})

			// The cap: sender.test has 3 today (the duplicate stored nothing).
			x := incomingReport("yahoo.com", "y1", "example.org", day, inRow("192.0.2.5", 1, "pass", "pass", "none"))
			if ok, err := s.PutIncoming(ctx, x, "sender.test", now, 3); ok || !errors.Is(err, ErrSenderCap) {
				t.Fatalf("over the cap: %v %v", ok, err)
			}
			if ok, err := s.PutIncoming(ctx, x, "sender.test", now.Add(24*time.Hour), 3); !ok || err != nil {
				t.Fatalf("next day: %v %v", ok, err)
			}
			if n, rows, _ := s.IncomingReports(ctx); n != 4 || rows != 6 {
				t.Fatalf("after cap: reports %d rows %d", n, rows)
			}

			// Migration 4's backfill: the counts of rows and reports stored
			// before it (zero) are computed from the rows.
			before, _ := s.IncomingTotals(ctx, IncomingFilter{}, ByReporter, 0)
			zero := strings.ReplaceAll(nCols, ",", " = 0,") + " = 0"
			for _, q := range []string{"UPDATE agg_rows SET " + zero, "UPDATE agg_reports SET " + zero} {
				if _, err := s.db.exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			m4 := migrations[3]
			for _, q := range m4[len(m4)-3 : len(m4)-1] {
				if _, err := s.db.exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			after, _ := s.IncomingTotals(ctx, IncomingFilter{}, ByReporter, 0)
			if !reflect.DeepEqual(before, after) || after[0].DMARCPass == 0 {
				t.Errorf("backfill: before %+v, after %+v", before, after)
			}
		})
	}
}

// TestIncomingAllOrNothing: a report whose rows fail to insert leaves no
// report behind (the rows go in the report's transaction).
func TestIncomingAllOrNothing(t *testing.T) {
	s := open(t, backendCases[0].opts(t))
	ctx := context.Background()
	bad := incomingReport("r.test", "1", "example.org", time.Unix(0, 0), inRow("192.0.2.1", 1, "pass", "pass", "none"))
	if _, err := s.db.exec(ctx, `CREATE TRIGGER no_rows BEFORE INSERT ON agg_rows BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.PutIncoming(ctx, bad, "r.test", time.Now(), 0); ok || err == nil {
		t.Fatalf("got %v %v, want an error", ok, err)
	}
	if n, _, _ := s.IncomingReports(ctx); n != 0 {
		t.Fatalf("%d reports stored half", n)
	}
}

// TestLocalTotals, on both backends: this MX's records by author domain,
// disposition and DMARC result, in the period only.
func TestLocalTotals(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			s := open(t, bc.opts(t))
			ctx := context.Background()
			at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			var recs []report.Record
			for i, c := range []struct {
				from, disp, dmarc string
				n                 int
				age               time.Duration
			}{{"a.test", "pass", "pass", 5, 0}, {"a.test", "reject", "fail", 2, 0}, {"b.test", "quarantine", "fail", 3, 0},
				{"b.test", "", "", 1, 0}, {"a.test", "pass", "pass", 9, 48 * time.Hour}} {
				for j := range c.n {
					r := rec(c.from, at.Add(-c.age), fmt.Sprintf("q%d-%d", i, j))
					r.Disposition, r.DMARCResult = c.disp, c.dmarc
					recs = append(recs, r)
				}
			}
			if err := s.Put(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			got, err := s.LocalTotalsBy(ctx, at.Add(-time.Hour), at.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			want := []LocalTotals{
				{HeaderFrom: "a.test", Messages: 7, Dispositions: map[string]int64{"pass": 5, "reject": 2}, DMARC: map[string]int64{"pass": 5, "fail": 2}},
				{HeaderFrom: "b.test", Messages: 4, Dispositions: map[string]int64{"quarantine": 3, "none": 1}, DMARC: map[string]int64{"fail": 3, "none": 1}},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}
