package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authmilter/authmilter/pkg/report"
)

// pgEnv names the DSN of a PostgreSQL server the tests may create
// databases on (scripts/test-all starts one and sets it).
const pgEnv = "AUTHMILTER_TEST_PG_DSN"

// pgDSN returns the DSN of a fresh, empty database of its own, dropped when
// the test ends. Without a server the test is skipped, and fails under
// CI=true, where scripts/test-all must have started one.
func pgDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(pgEnv)
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run PostgreSQL (scripts/test-all starts one)", pgEnv)
		}
		t.Skipf("%s is not set: no PostgreSQL to test against (scripts/test-all starts one)", pgEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgEnv, err)
	}
	defer conn.Close(ctx)
	name := "amtest_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL", pgEnv)
	}
	u.Path = "/" + name
	return u.String()
}

// backendCase is one backend to run a test on.
type backendCase struct {
	name string
	opts func(t testing.TB) Options
}

var backendCases = []backendCase{
	{"sqlite", func(t testing.TB) Options {
		dir := t.TempDir()
		return Options{Backend: SQLite, SQLitePath: filepath.Join(dir, "records.db"), SpoolDir: dir}
	}},
	{"postgres", func(t testing.TB) Options {
		return Options{Backend: Postgres, PostgresDSN: pgDSN(t), SpoolDir: t.TempDir()}
	}},
}

func open(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Log == nil {
		o.Log = testLog(t)
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// rec is a record for policy domain dom at time at.
func rec(dom string, at time.Time, qid string) report.Record {
	return report.Record{
		Time: at.UTC(), Reporter: "mx.rcpt.test", QueueID: qid, SourceIP: "192.0.2.1",
		HeaderFrom: dom, EnvelopeFrom: dom, EnvelopeTo: []string{"rcpt.test"},
		SPF:         []report.SPFResult{{Domain: dom, Scope: "mfrom", Result: "pass"}},
		DKIM:        []report.DKIMResult{{Domain: dom, Selector: "s1", Result: "pass"}},
		Policy:      report.PolicyPublished{Domain: dom, DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r", P: "reject", Testing: "n", Pct: -1, RUA: []report.URI{{Address: "mailto:rua@" + dom}}},
		Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass", DMARCResult: "pass",
	}
}

// queueIDs counts rows by queue id.
func queueIDs(t testing.TB, s *Store) map[string]int {
	t.Helper()
	rows, err := s.Rows(context.Background(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, r := range rows {
		m[r.Record.QueueID]++
	}
	return m
}

func qid(i int) string { return fmt.Sprintf("Q%06d", i) }
