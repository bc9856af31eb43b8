package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authmilter/authmilter/pkg/report"
)

func TestStoreQueries(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, bc.opts(t))
			t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
			at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
			put := []struct {
				dom string
				h   int
			}{{"a.test", 0}, {"a.test", 1}, {"b.test", 2}, {"a.test", 5}, {"c.test", 9}}
			for i, p := range put {
				if err := s.Put(ctx, rec(p.dom, at(p.h), qid(i))); err != nil {
					t.Fatal(err)
				}
			}
			all, err := s.Rows(ctx, Query{})
			if err != nil || len(all) != 5 {
				t.Fatalf("rows: %d %v", len(all), err)
			}
			if want := rec("a.test", at(0), qid(0)); !reflect.DeepEqual(all[0].Record, want) || len(all[0].ID) != 32 || all[0].ReportID != "" {
				t.Errorf("round trip:\n got %+v\nwant %+v", all[0], want)
			}

			doms, err := s.PendingDomains(ctx, at(3))
			if err != nil || !reflect.DeepEqual(doms, []string{"a.test", "b.test"}) {
				t.Errorf("PendingDomains = %v, %v", doms, err)
			}
			pend, err := s.Pending(ctx, at(3))
			if err != nil || len(pend) != 3 || pend[0].Record.QueueID != qid(0) || pend[2].Record.QueueID != qid(2) {
				t.Fatalf("Pending = %+v, %v", pend, err)
			}
			win, err := s.Rows(ctx, Query{Begin: at(1), End: at(9), PolicyDomain: "a.test"})
			if err != nil || len(win) != 2 || win[0].Record.QueueID != qid(1) || win[1].Record.QueueID != qid(3) {
				t.Errorf("window [1h, 9h) of a.test = %+v, %v", win, err)
			}

			// Report a.test's first two rows.
			if err := s.MarkReported(ctx, []string{pend[0].ID, pend[1].ID}, "r1"); err != nil {
				t.Fatal(err)
			}
			if err := s.MarkReported(ctx, []string{pend[0].ID}, ""); err == nil {
				t.Error("empty report id accepted")
			}
			doms, _ = s.PendingDomains(ctx, at(3))
			if !reflect.DeepEqual(doms, []string{"b.test"}) {
				t.Errorf("after MarkReported, PendingDomains = %v", doms)
			}
			rows, _ := s.Rows(ctx, Query{End: at(2)})
			for _, r := range rows {
				if r.ReportID != "r1" {
					t.Errorf("row %s report id %q", r.Record.QueueID, r.ReportID)
				}
			}
			if un, _ := s.Rows(ctx, Query{Unreported: true}); len(un) != 3 {
				t.Errorf("unreported rows: %d", len(un))
			}

			// Prune: only reported rows older than the cut; b.test (older,
			// unreported) stays.
			n, err := s.Prune(ctx, at(1).Add(time.Minute))
			if err != nil || n != 2 {
				t.Errorf("Prune = %d, %v; want 2", n, err)
			}
			left := queueIDs(t, s)
			if len(left) != 3 || left[qid(0)] != 0 || left[qid(2)] != 1 {
				t.Errorf("after prune: %v", left)
			}
			if n, _ := s.Prune(ctx, at(100)); n != 0 {
				t.Errorf("second prune deleted %d unreported rows", n)
			}
		})
	}
}

// Many records in one call, more than one INSERT carries.
func TestPutLargeBatch(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			s := open(t, bc.opts(t))
			now := time.Now()
			var recs = make([]report.Record, 0, 1234)
			for i := range cap(recs) {
				recs = append(recs, rec("big.test", now, qid(i)))
			}
			if err := s.Put(context.Background(), recs...); err != nil {
				t.Fatal(err)
			}
			ids := make([]string, 0, len(recs))
			s.Each(context.Background(), Query{}, func(r Row) error { ids = append(ids, r.ID); return nil })
			if len(ids) != len(recs) {
				t.Fatalf("%d rows", len(ids))
			}
			if err := s.MarkReported(context.Background(), ids, "big"); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Prune(context.Background(), now.Add(time.Hour)); n != int64(len(recs)) || err != nil {
				t.Errorf("prune %d, %v", n, err)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			o := bc.opts(t)
			o.Log = testLog(t)
			for range 2 { // the second Open finds the schema current
				s, err := Open(ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				var n, v int64
				s.db.inTx(ctx, func(tx txer) error {
					n, _ = tx.queryInt(ctx, `SELECT COUNT(*) FROM schema_migrations`)
					v, _ = tx.queryInt(ctx, `SELECT MAX(version) FROM schema_migrations`)
					return nil
				})
				if n != int64(SchemaVersion()) || v != int64(SchemaVersion()) {
					t.Errorf("schema_migrations: %d rows, version %d", n, v)
				}
				if s.Down() {
					t.Error("down after Open")
				}
				s.Close()
			}
			// A database a newer build migrated is refused, not damaged.
			s, _ := Open(ctx, o)
			if _, err := s.db.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, 99); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if s, err := Open(ctx, o); !errors.Is(err, ErrSchemaTooNew) {
				t.Errorf("Open on a newer schema: %v", err)
				if s != nil {
					s.Close()
				}
			}
		})
	}
}

func TestTryLock(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			o := bc.opts(t)
			a, b := open(t, o), open(t, o) // two MX hosts on one database
			rel, ok, err := a.TryLock(ctx, "report-sender")
			if err != nil || !ok {
				t.Fatalf("first TryLock: %v %v", ok, err)
			}
			if _, ok, err := b.TryLock(ctx, "report-sender"); ok || err != nil {
				t.Errorf("second holder got the lock: %v %v", ok, err)
			}
			relOther, ok, err := b.TryLock(ctx, "other job")
			if !ok || err != nil {
				t.Errorf("an unrelated lock is taken: %v %v", ok, err)
			} else {
				relOther()
			}
			rel()
			rel2, ok, err := b.TryLock(ctx, "report-sender")
			if !ok || err != nil {
				t.Fatalf("after release: %v %v", ok, err)
			}
			rel2()
		})
	}
}

// blockWrites holds a lock that makes every insert into records wait, the
// way a busy or hung database does, until release is called.
func blockWrites(t *testing.T, s *Store) (release func()) {
	t.Helper()
	ctx := context.Background()
	switch db := s.db.(type) {
	case *sqliteDB:
		other, err := sql.Open("sqlite", "file:"+db.path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		c, err := other.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return func() {
			c.ExecContext(ctx, "ROLLBACK")
			c.Close()
			other.Close()
		}
	case *pgDB:
		c, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE records IN SHARE MODE"); err != nil {
			t.Fatal(err)
		}
		return func() {
			tx.Rollback(ctx)
			c.Close(ctx)
		}
	}
	t.Fatalf("unknown backend %T", s.db)
	return nil
}

// Group commit: requests that queue while a commit runs go into the next
// transaction together.
func TestGroupCommit(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			o := bc.opts(t)
			o.WriteTimeout = time.Minute // this test is not about the spool
			s := open(t, o)
			release := blockWrites(t, s)
			const n = 64
			var wg sync.WaitGroup
			errs := make(chan error, n)
			putOne := func(i int) {
				defer wg.Done()
				errs <- s.Put(context.Background(), rec("g.test", time.Now(), qid(i)))
			}
			wg.Add(1)
			go putOne(0)
			// The writer takes the first request and waits on the lock;
			// the others queue behind it.
			waitFor(t, "writer busy", func() bool { return s.attempts.Load() == 1 })
			for i := 1; i < n; i++ {
				wg.Add(1)
				go putOne(i)
			}
			waitFor(t, "63 queued", func() bool { return len(s.in) == n-1 })
			release()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			st := s.Stats()
			if st.Committed != n || st.Commits != 2 || st.Spooled != 0 {
				t.Errorf("stats %+v; want %d records in 2 transactions", st, n)
			}
			if got := queueIDs(t, s); len(got) != n {
				t.Errorf("%d distinct rows", len(got))
			}
		})
	}
}

// A database that does not take writes in time: Put returns after the
// bounded wait with the records in the spool, and once the database is
// back they all arrive, each once.
func TestSpoolWhileLocked(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			o := bc.opts(t)
			o.WriteTimeout = 200 * time.Millisecond
			o.RetryInterval = 50 * time.Millisecond
			s := open(t, o)
			if s.Down() { // the schema set-up has its own, longer budget (migrateTimeout)
				t.Fatal("the database is down right after Open: schema set-up failed")
			}
			if err := s.Put(context.Background(), rec("l.test", time.Now(), qid(0))); err != nil {
				t.Fatal(err)
			}
			release := blockWrites(t, s)
			const n = 40
			var wg sync.WaitGroup
			for i := 1; i <= n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Put(context.Background(), rec("l.test", time.Now(), qid(i))); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait() // every Put returned while the lock was held
			if s.Stats().Spooled == 0 {
				t.Errorf("nothing spooled: %+v", s.Stats())
			}
			release()
			waitDrained(t, s)
			got := queueIDs(t, s)
			for i := 0; i <= n; i++ {
				if got[qid(i)] != 1 {
					t.Errorf("%s: %d rows", qid(i), got[qid(i)])
				}
			}
			if len(got) != n+1 {
				t.Errorf("%d queue ids", len(got))
			}
			t.Logf("stats %+v", s.Stats())
		})
	}
}

// waitDrained waits until the store is up and every spool file is replayed.
func waitDrained(t *testing.T, s *Store) {
	t.Helper()
	waitFor(t, "spool replayed", func() bool {
		if s.Down() || s.sp.pending() {
			return false
		}
		files, _ := filepath.Glob(filepath.Join(s.o.SpoolDir, "spool-*.jsonl"))
		return len(files) == 0
	})
}

// waitFor polls cond until it holds; a minute without is a failure (a
// hang, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Spool files left by a crash are replayed at the next start: records
// already in the database are not inserted twice, a torn last line is
// dropped, a garbled line skipped.
func TestReplayAfterCrash(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			o := bc.opts(t)
			s := open(t, o)
			var es []entry
			for i := range 5 {
				e, err := newEntry(rec("c.test", time.Now(), qid(i)))
				if err != nil {
					t.Fatal(err)
				}
				es = append(es, e)
			}
			// 0 and 1 reached the database before the crash; all five
			// were spooled (a waiter gave up while the writer committed).
			if err := s.db.insert(ctx, es[:2]); err != nil {
				t.Fatal(err)
			}
			s.Close()
			sp := &spool{dir: o.SpoolDir}
			if err := sp.append(es); err != nil {
				t.Fatal(err)
			}
			f := sp.cur.f
			f.WriteString("{\"id\":\"zz\",\"record\":{}}\n")               // garbled
			f.WriteString(`{"id":"0123456789abcdef0123456789abcdef","rec`) // torn by the crash
			f.Close()                                                      // the crashed process's lock goes with it

			s2 := open(t, o)
			waitDrained(t, s2)
			got := queueIDs(t, s2)
			if len(got) != 5 {
				t.Errorf("rows: %v", got)
			}
			for q, n := range got {
				if n != 1 {
					t.Errorf("%s: %d rows", q, n)
				}
			}
			if st := s2.Stats(); st.Replayed != 5 {
				t.Errorf("replayed %d, want 5 (2 of them ignored as present)", st.Replayed)
			}
		})
	}
}

// A spool file another live process holds is not touched.
func TestSpoolLockedFileSkipped(t *testing.T) {
	dir := t.TempDir()
	live := &spool{dir: dir}
	e, _ := newEntry(rec("x.test", time.Now(), "Q"))
	if err := live.append([]entry{e}); err != nil {
		t.Fatal(err)
	}
	other := &spool{dir: dir}
	if got := other.take(); len(got) != 0 {
		t.Errorf("took a live process's file: %v", got[0].path)
	}
	live.closeAll()
	got := other.take()
	if len(got) != 1 {
		t.Fatalf("orphan not found: %d", len(got))
	}
	es, bad, torn, err := readSpool(got[0].f)
	if err != nil || bad != 0 || torn || len(es) != 1 || es[0].id != e.id || !reflect.DeepEqual(es[0].rec, e.rec) {
		t.Errorf("read back: %+v %d %v %v", es, bad, torn, err)
	}
	if err := got[0].remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(got[0].path); !os.IsNotExist(err) {
		t.Errorf("replayed file still there: %v", err)
	}
}

func TestReadSpool(t *testing.T) {
	e, _ := newEntry(rec("r.test", time.Now(), "Q"))
	line := `{"id":"` + e.id + `","record":` + string(e.data) + "}\n"
	tests := []struct {
		name      string
		in        string
		n, bad    int
		torn      bool
		wantError bool
	}{
		{"empty", "", 0, 0, false, false},
		{"one", line, 1, 0, false, false},
		{"two", line + line, 2, 0, false, false},
		{"torn tail", line + line[:20], 1, 0, true, false},
		{"garbage line", line + "not json\n" + line, 2, 1, false, false},
		{"bad id", `{"id":"../../x","record":{}}` + "\n", 0, 1, false, false},
		{"record not an object", `{"id":"` + e.id + `","record":7}` + "\n", 0, 1, false, false},
	}
	for _, tt := range tests {
		es, bad, torn, err := readSpool(strings.NewReader(tt.in))
		if len(es) != tt.n || bad != tt.bad || torn != tt.torn || (err != nil) != tt.wantError {
			t.Errorf("%s: %d entries, %d bad, torn %v, err %v", tt.name, len(es), bad, torn, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no spool dir", Options{SQLitePath: filepath.Join(dir, "a.db")}, "spool"},
		{"no path", Options{SpoolDir: dir}, "SQLite path"},
		{"query in path", Options{SpoolDir: dir, SQLitePath: dir + "/a.db?mode=ro"}, "must not contain"},
		{"unknown backend", Options{Backend: "mysql", SpoolDir: dir}, "unknown backend"},
		{"bad dsn", Options{Backend: Postgres, PostgresDSN: "postgres://u:secret@[::1", SpoolDir: dir}, "postgres_dsn"},
		{"unwritable dir", Options{SQLitePath: "/proc/nonexistent/a.db", SpoolDir: dir}, "store"},
	}
	for _, tt := range tests {
		s, err := Open(context.Background(), tt.o)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s := open(t, backendCases[0].opts(t))
	s.Close()
	if err := s.Put(context.Background(), rec("x.test", time.Now(), "Q")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// TestSchemaSetupOwnBudget (issue 19): the schema set-up at Open is not
// bound by the short WriteTimeout of a commit. Another instance holds the
// migration lock for longer than WriteTimeout; Open still migrates and the
// store comes up (before, under load, it came up "down" without tables and
// the next statement failed with relation "records" does not exist).
func TestSchemaSetupOwnBudget(t *testing.T) {
	dsn := pgDSN(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		t.Fatal(err)
	}
	const hold = 700 * time.Millisecond
	go func() {
		time.Sleep(hold)
		c.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(migrationLock))
	}()
	s := open(t, Options{Backend: Postgres, PostgresDSN: dsn, SpoolDir: t.TempDir(),
		WriteTimeout: 100 * time.Millisecond, RetryInterval: time.Hour})
	if s.Down() {
		t.Fatal("store down after Open: the migration was cut off by WriteTimeout")
	}
	if err := s.Put(ctx, rec("m.test", time.Now(), "QM")); err != nil {
		t.Fatal(err)
	}
	if got := queueIDs(t, s); got["QM"] != 1 {
		t.Errorf("record not in the database: %v", got)
	}
}

// SchemaVersion is the schema version this build migrates to.
func SchemaVersion() int { return len(migrations) }
