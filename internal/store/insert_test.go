package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// A batch of n rows goes out as INSERTs of 1, 2, 4 ... 256 rows: the
// sizes add up to n, each is a power of two, and there are few of them.
func TestInsertSize(t *testing.T) {
	for _, tc := range []struct {
		n     int
		sizes []int
	}{
		{1, []int{1}},
		{2, []int{2}},
		{3, []int{2, 1}},
		{7, []int{4, 2, 1}},
		{8, []int{8}},
		{255, []int{128, 64, 32, 16, 8, 4, 2, 1}},
		{256, []int{256}},
		{257, []int{256, 1}},
		{1000, []int{256, 256, 256, 128, 64, 32, 8}},
	} {
		var got []int
		for rest := tc.n; rest > 0; {
			n := 1 << insertSize(rest)
			got = append(got, n)
			rest -= n
		}
		if !slices.Equal(got, tc.sizes) {
			t.Errorf("n=%d: sizes %v, want %v", tc.n, got, tc.sizes)
		}
	}
}

// Every batch size reaches the database whole, on both backends, through
// the statements the writer keeps prepared; a batch inserted again (a
// replay) adds nothing.
func TestInsertBatchSizes(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, bc.opts(t))
			total := 0
			for _, n := range []int{1, 2, 3, 7, 255, 256, 257, 600} {
				es := make([]entry, n)
				for i := range es {
					var err error
					if es[i], err = newEntry(rec("sizes.test", time.Now(), fmt.Sprintf("N%d-%d", n, i))); err != nil {
						t.Fatal(err)
					}
				}
				for range 2 {
					if err := s.db.insert(ctx, es); err != nil {
						t.Fatalf("n=%d: %v", n, err)
					}
				}
				total += n
				if got := queueIDs(t, s); len(got) != total {
					t.Fatalf("after a batch of %d: %d distinct rows, want %d", n, len(got), total)
				}
			}
			rows, err := s.Rows(ctx, Query{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != total {
				t.Errorf("%d rows, want %d (a replayed batch was inserted twice)", len(rows), total)
			}
		})
	}
}

// Ids are 32 hex digits, distinct, and sort in the order they were made
// once the clock has moved on (the primary key index grows at its end).
func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	var prev string
	for i := range 2000 {
		id := newID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 32 lowercase hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		if i%500 == 0 {
			time.Sleep(2 * time.Millisecond)
			if prev != "" && id <= prev {
				t.Errorf("id %q made after %q sorts before it", id, prev)
			}
			prev = id
		}
	}
	// The time prefix is the clock's milliseconds.
	before := time.Now().UnixMilli()
	id := newID()
	var ms int64
	if _, err := fmt.Sscanf(id[:12], "%x", &ms); err != nil || ms < before || ms > time.Now().UnixMilli() {
		t.Errorf("id %q: time prefix %d, want about %d (%v)", id, ms, before, err)
	}
}

// The pooled encoder writes what json.Marshal does (HTML escaping
// included), without the Encoder's newline; and reused, it leaves nothing
// of the previous record.
func TestNewEntryJSON(t *testing.T) {
	long := rec("long.test", time.Now(), "QLONG")
	long.Overrides = []report.Override{{Type: "other", Comment: strings.Repeat("x", 5000)}}
	odd := rec("odd.test", time.Now(), "Q<&>\u2028é")
	odd.Overrides = []report.Override{{Type: "local_policy", Comment: "a \"quoted\" <comment> & more\n"}}
	for _, r := range []report.Record{long, odd, rec("short.test", time.Now(), "Q1"), {}} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		e, err := newEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		if e.data != string(want) {
			t.Errorf("data\n%s\nwant\n%s", e.data, want)
		}
		if e.ts != r.Time.UnixMicro() {
			t.Errorf("ts %d, want %d", e.ts, r.Time.UnixMicro())
		}
	}
}

// The SQLite writer's connection waits for another process's write lock
// as long as the write timeout, not the pool's 10 s.
func TestSQLiteWriterBusyTimeout(t *testing.T) {
	for _, wt := range []time.Duration{300 * time.Millisecond, 7 * time.Second} {
		o := backendCases[0].opts(t)
		o.WriteTimeout = wt
		s := open(t, o)
		if err := s.Put(context.Background(), rec("b.test", time.Now(), "QB")); err != nil {
			t.Fatal(err)
		}
		db := s.db.(*sqliteDB)
		db.wmu.Lock()
		var ms int64
		err := db.w.conn.QueryRowContext(context.Background(), "PRAGMA busy_timeout").Scan(&ms)
		db.wmu.Unlock()
		if err != nil || ms != wt.Milliseconds() {
			t.Errorf("write timeout %v: busy_timeout %d ms (%v)", wt, ms, err)
		}
	}
}

// A writer connection in an unknown state is dropped and the next insert
// opens a new one.
func TestSQLiteWriterReopens(t *testing.T) {
	s := open(t, backendCases[0].opts(t))
	ctx := context.Background()
	if err := s.Put(ctx, rec("r.test", time.Now(), "Q1")); err != nil {
		t.Fatal(err)
	}
	db := s.db.(*sqliteDB)
	// Break the connection under the writer: its statements fail.
	db.wmu.Lock()
	db.w.discard()
	db.wmu.Unlock()
	if err := db.insert(ctx, mustEntries(t, "Q2")); err == nil {
		t.Fatal("insert on a closed connection succeeded")
	}
	db.wmu.Lock()
	w := db.w
	db.wmu.Unlock()
	if w != nil {
		t.Fatal("a broken writer connection was kept")
	}
	if err := s.Put(ctx, rec("r.test", time.Now(), "Q3")); err != nil {
		t.Fatal(err)
	}
	if s.Down() {
		t.Error("store down after the writer connection was replaced")
	}
	got := queueIDs(t, s)
	if got["Q1"] != 1 || got["Q3"] != 1 || len(got) != 2 {
		t.Errorf("rows %v", got)
	}
}

func mustEntries(t *testing.T, qids ...string) []entry {
	t.Helper()
	var es []entry
	for _, q := range qids {
		e, err := newEntry(rec("r.test", time.Now(), q))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}
