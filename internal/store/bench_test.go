package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPut measures group commit: records committed per second with 1,
// 16 and 64 concurrent sessions, and what Put adds to the end of a message
// (p50/p99 latency; in sync mode the reply waits for it). One record per
// Put, as for a message with one author domain. cpu-µs/record is the
// process's user + system CPU time per record (getrusage).
//
//	go test ./internal/store -run '^$' -bench Put -benchtime 5000x -benchmem
func BenchmarkPut(b *testing.B) {
	for _, bc := range backendCases {
		for _, mode := range []string{"sync", "async"} {
			for _, sessions := range []int{1, 16, 64} {
				if mode == "async" && sessions != 64 {
					continue
				}
				b.Run(fmt.Sprintf("%s/%s/sessions=%d", bc.name, mode, sessions), func(b *testing.B) {
					o := bc.opts(b)
					o.Async = mode == "async"
					o.WriteTimeout = time.Minute // measure the database, not the spool
					s := open(b, o)
					r := rec("bench.test", time.Now(), "QBENCH")
					lat := make([]time.Duration, b.N)
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					cpu0, cpuOK := processCPU()
					start := time.Now()
					for range sessions {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := next.Add(1) - 1
								if i >= int64(b.N) {
									return
								}
								t0 := time.Now()
								if err := s.Put(context.Background(), r); err != nil {
									b.Error(err)
								}
								lat[i] = time.Since(t0)
							}
						}()
					}
					wg.Wait()
					if o.Async {
						// Async: count the time until everything is committed.
						for s.Stats().Committed+s.Stats().Spooled < int64(b.N) {
							time.Sleep(100 * time.Microsecond)
						}
					}
					elapsed := time.Since(start)
					cpu1, _ := processCPU()
					b.StopTimer()
					slices.Sort(lat)
					st := s.Stats()
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
					if cpuOK {
						// The whole process: the sessions' Put calls, the
						// writer, the driver and the kernel's share (write,
						// fsync) as far as it is charged to us.
						b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
					}
					if st.Commits > 0 {
						b.ReportMetric(float64(st.Committed)/float64(st.Commits), "records/commit")
					}
					if st.Spooled > 0 {
						b.Errorf("%d records spooled", st.Spooled)
					}
				})
			}
		}
	}
}

// BenchmarkInsertFilled measures one commit of 1 or 8 records, as the
// writer makes them, into a SQLite database that already holds 200000
// rows of 50 policy domains: what a store some days old costs, where the
// indexes no longer fit the page cache. cpu-µs/record as in BenchmarkPut.
//
//	go test ./internal/store -run '^$' -bench InsertFilled -benchtime 2000x
func BenchmarkInsertFilled(b *testing.B) {
	o := backendCases[0].opts(b)
	o.WriteTimeout = time.Minute
	s := open(b, o)
	ctx := context.Background()
	fill := make([]entry, 1000)
	for range 200 {
		for i := range fill {
			var err error
			if fill[i], err = newEntry(rec(fmt.Sprintf("d%d.test", i%50), time.Now(), "QFILL")); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.db.insert(ctx, fill); err != nil {
			b.Fatal(err)
		}
	}
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			es := make([]entry, batch)
			r := rec("bench.test", time.Now(), "QBENCH")
			cpu0, cpuOK := processCPU()
			b.ResetTimer()
			for range b.N {
				for i := range es {
					es[i], _ = newEntry(r)
				}
				if err := s.db.insert(ctx, es); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if cpu1, _ := processCPU(); cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/record")
			}
		})
	}
}
