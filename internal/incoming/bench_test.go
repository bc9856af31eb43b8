package incoming

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/incoming/incomingtest"
	"github.com/authmilter/authmilter/internal/store"
)

// benchReports makes n reports of rows rows each, as XML files.
func benchReports(n, rows int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		rs := make([]incomingtest.Row, rows)
		for j := range rs {
			rs[j] = incomingtest.Row{IP: fmt.Sprintf("198.51.%d.%d", j/250, j%250+1), Count: 1 + j%7, DKIM: "pass", SPF: "fail"}
		}
		out[i] = incomingtest.XML(fmt.Sprintf("reporter%d.test", i%20), fmt.Sprint(i), "example.org", 1777593600+int64(i%30)*86400, rs...)
	}
	return out
}

// BenchmarkImport1000x100 imports 1,000 reports of 100 rows each (XML
// files, the reader and the store's transaction per report) into a fresh
// SQLite store. Run with -benchtime=1x; BENCHMARKS.md has the figures.
func BenchmarkImport1000x100(b *testing.B) {
	files := benchReports(1000, 100)
	var bytes int64
	for _, f := range files {
		bytes += int64(len(f))
	}
	b.SetBytes(bytes)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		in := &Ingester{Store: st, Domains: []string{"example.org"}}
		b.StartTimer()
		start := time.Now()
		for i, f := range files {
			if r, err := in.File(context.Background(), f, "bench"); err != nil || r.Stored != 1 {
				b.Fatalf("report %d: %+v %v", i, r, err)
			}
		}
		b.ReportMetric(float64(len(files))/time.Since(start).Seconds(), "reports/s")
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
}
