package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

// BenchmarkPages1M renders every page and its JSON over a SQLite store of
// 1,000,000 incoming report rows (10,000 reports of 100 rows about three
// domains over 30 days, 20,000 distinct source addresses), and /local over
// 100,000 of this MX's records (500 author domains). Seeding takes
// a while and is not timed. Run with -benchtime=10x; BENCHMARKS.md has the
// figures.
func BenchmarkPages1M(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	doms := []string{"example.org", "example.com", "example.net"}
	for i := range 10_000 {
		r := &report.Report{ID: fmt.Sprint(i), OrgName: fmt.Sprintf("reporter%d.test", i%50), Email: "r@r.test",
			Begin: now.Truncate(24*time.Hour).AddDate(0, 0, -1-i%30), Policy: report.PolicyPublished{Domain: doms[i%3], P: "none", Pct: -1},
			Format: report.FormatRFC7489}
		r.End = r.Begin.Add(24 * time.Hour)
		for j := range 100 {
			ip := fmt.Sprintf("10.%d.%d.%d", (i*100+j)%20_000/65536, (i*100+j)%20_000/256%256, (i*100+j)%256)
			pass := "pass"
			if j%10 == 0 {
				pass = "fail"
			}
			r.Rows = append(r.Rows, report.Row{SourceIP: ip, Count: 1 + j%5, Disposition: "none", DKIMAligned: pass, SPFAligned: "fail",
				HeaderFrom: doms[i%3], DKIM: []report.DKIMResult{{Domain: doms[i%3], Selector: "s", Result: pass}},
				SPF: []report.SPFResult{{Domain: "bounce.esp.test", Scope: "mfrom", Result: "pass"}}})
		}
		if ok, err := st.PutIncoming(ctx, r, "r.test", now, 0); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	// And 100,000 of this MX's own records, for /local.
	recs := make([]report.Record, 0, 1000)
	for i := range 100_000 {
		recs = append(recs, report.Record{Time: now.Add(-time.Duration(i) * 20 * time.Second), HeaderFrom: fmt.Sprintf("d%d.test", i%500),
			SourceIP: "192.0.2.1", Disposition: "none", DMARCResult: "fail", Policy: report.PolicyPublished{Domain: fmt.Sprintf("d%d.test", i%500)}})
		if len(recs) == cap(recs) {
			if err := st.Put(ctx, recs...); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	_, rows, _ := st.IncomingReports(ctx)
	b.Logf("seeded %d rows in %v", rows, time.Since(start).Round(time.Second))
	h := Handler(Options{Store: st, Auth: Auth{Token: token}, Now: func() time.Time { return now }})
	for _, path := range []string{"/", "/domain?d=example.org", "/sources?d=example.org", "/policy?d=example.org",
		"/api/domain?d=example.org", "/api/sources?d=example.org", "/local"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
				}
			}
		})
	}
}
