package incoming

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
// store: SQLite, and PostgreSQL when AUTHMILTER_TEST_PG_DSN names a server
// (a database of its own is made and dropped). Run with -benchtime=1x;
// BENCHMARKS.md has the figures.
func BenchmarkImport1000x100(b *testing.B) {
	files := benchReports(1000, 100)
	var size int64
	for _, f := range files {
		size += int64(len(f))
	}
	backends := map[string]func(b *testing.B) store.Options{
		"sqlite": func(b *testing.B) store.Options {
			dir := b.TempDir()
			return store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir}
		},
	}
	if admin := os.Getenv("AUTHMILTER_TEST_PG_DSN"); admin != "" {
		backends["postgres"] = func(b *testing.B) store.Options {
			return store.Options{Backend: store.Postgres, PostgresDSN: pgDatabase(b, admin), SpoolDir: b.TempDir()}
		}
	}
	for name, opts := range backends {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				b.StopTimer()
				st, err := store.Open(context.Background(), opts(b))
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
		})
	}
}

// pgDatabase makes a database on the server admin names, dropped when b
// ends, and returns its DSN.
func pgDatabase(b *testing.B, admin string) string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("ambench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if c, err := pgx.Connect(ctx, admin); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") //nolint:errcheck // best effort
			c.Close(ctx)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		b.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
