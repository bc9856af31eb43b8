package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The failure report rate limits: a window per name, the maximum taken at
// most once even by two MX hosts on one database racing, a new window
// after the old one ended; and they survive a restart (they are rows).
func TestTakeLimit(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			o := bc.opts(t)
			a, b := open(t, o), open(t, o) // two MX hosts on one database
			t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			cases := []struct {
				who  *Store
				name string
				max  int
				at   time.Duration
				want bool
			}{
				{a, "fr|example.com|192.0.2.1|dmarc", 1, 0, true},
				{b, "fr|example.com|192.0.2.1|dmarc", 1, time.Minute, false}, // other host, same window
				{a, "fr|example.com|192.0.2.1|spf", 1, time.Minute, true},    // other kind
				{a, "fr|example.com|192.0.2.2|dmarc", 1, time.Minute, true},  // other IP
				{b, "fr|example.com|192.0.2.1|dmarc", 1, 59 * time.Minute, false},
				{b, "fr|example.com|192.0.2.1|dmarc", 1, time.Hour, true}, // the window ended
				{a, "fr|example.com|192.0.2.1|dmarc", 1, 61 * time.Minute, false},
				{a, "global", 3, 0, true},
				{b, "global", 3, 0, true},
				{a, "global", 3, 0, true},
				{b, "global", 3, 0, false},
				{a, "global", 0, 2 * time.Hour, false}, // max 0 takes nothing
			}

			for i, c := range cases {
				got, err := c.who.TakeLimit(ctx, c.name, c.max, time.Hour, t0.Add(c.at))
				if err != nil || got != c.want {
					t.Errorf("%d: TakeLimit(%s, max %d, +%v) = %v, %v; want %v", i, c.name, c.max, c.at, got, err, c.want)
				}
			}
			// A slot given back (the relay failed) can be taken once more.
			if err := b.ReturnLimit(ctx, "global"); err != nil {
				t.Fatal(err)
			}
			for i, want := range []bool{true, false} {
				if got, err := a.TakeLimit(ctx, "global", 3, time.Hour, t0.Add(time.Minute)); got != want || err != nil {
					t.Errorf("after ReturnLimit, take %d = %v, %v; want %v", i, got, err, want)
				}
			}
			// After a restart the window still holds.
			a.Close()
			c := open(t, o)
			if ok, err := c.TakeLimit(ctx, "fr|example.com|192.0.2.2|dmarc", 1, time.Hour, t0.Add(2*time.Minute)); ok || err != nil {
				t.Errorf("after restart: %v %v, want still limited", ok, err)
			}
			// Racing takers: exactly max succeed.
			var taken atomic.Int64
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := b
					if i%2 == 0 {
						s = c
					}
					if ok, err := s.TakeLimit(ctx, "race", 5, time.Hour, t0); err != nil {
						t.Error(err)
					} else if ok {
						taken.Add(1)
					}
				}()
			}
			wg.Wait()
			if taken.Load() != 5 {
				t.Errorf("racing takers got %d, want 5", taken.Load())
			}
		})
	}
}

func TestFailureQueue(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, bc.opts(t))
			t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			id1, err := s.QueueFailure(ctx, t0, "example.com", "mailto:ruf@example.com", `{"a":1}`)
			if err != nil {
				t.Fatal(err)
			}
			id2, err := s.QueueFailure(ctx, t0.Add(time.Second), "example.org", "mailto:ruf@example.org", `{"b":2}`)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.QueueFailure(ctx, t0, "", "mailto:x@y", "{}"); err == nil {
				t.Error("queued a report without policy domain")
			}
			due, err := s.DueFailures(ctx, t0.Add(time.Minute), 10)
			if err != nil || len(due) != 2 || due[0].ID != id1 || due[0].Data != `{"a":1}` || due[1].ID != id2 {
				t.Fatalf("due = %+v, %v", due, err)
			}
			if err := s.RetryFailure(ctx, id1, 1, t0.Add(10*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := s.FinishFailure(ctx, id2, FailureSent, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if due, _ := s.DueFailures(ctx, t0.Add(5*time.Minute), 10); len(due) != 0 {
				t.Errorf("due before the retry time: %+v", due)
			}
			due, _ = s.DueFailures(ctx, t0.Add(10*time.Minute), 10)
			if len(due) != 1 || due[0].ID != id1 || due[0].Attempts != 1 {
				t.Errorf("due at the retry time: %+v", due)
			}
			if err := s.FinishFailure(ctx, id1, "pending", t0); err == nil {
				t.Error("FinishFailure accepted a non-final state")
			}
			if err := s.FinishFailure(ctx, id1, FailureDropped, t0.Add(11*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if due, _ := s.DueFailures(ctx, t0.Add(time.Hour), 10); len(due) != 0 {
				t.Errorf("finished reports still due: %+v", due)
			}
			if err := s.PruneFailures(ctx, t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			var n int64
			s.db.inTx(ctx, func(tx txer) error {
				n, err = tx.queryInt(ctx, `SELECT COUNT(*) FROM failure_reports`)
				return err
			})
			if n != 0 {
				t.Errorf("%d failure reports left after prune", n)
			}
		})
	}
}
