package milter

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkWriteVerdictDeletes: the reply to a message carrying n forged
// Authentication-Results fields, each deleted highest index first. The
// deletion list was insertion-sorted (4 s at 80,000 fields, issue 16); now
// ns/field stays flat as n doubles. Run:
//
//	go test -run '^$' -bench WriteVerdictDeletes ./internal/milter/
func BenchmarkWriteVerdictDeletes(b *testing.B) {
	for _, n := range []int{10_000, 20_000, 40_000, 80_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			// As the service builds it: in header order, index ascending.
			dels := make([]HeaderRef, n)
			for i := range dels {
				dels[i] = HeaderRef{Name: "Authentication-Results", Index: i + 1}
			}
			s := &session{actions: wantActions, log: slog.New(slog.DiscardHandler), bw: bufio.NewWriter(io.Discard)}
			b.ResetTimer()
			for range b.N {
				s.writeVerdict(Verdict{Delete: dels})
				s.bw.Reset(io.Discard)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/field")
		})
	}
}

// The deletions go out highest index first, whatever order they come in.
func TestWriteVerdictDeleteOrder(t *testing.T) {
	s := &session{actions: wantActions, log: slog.New(slog.DiscardHandler), bw: bufio.NewWriter(io.Discard)}
	s.writeVerdict(Verdict{Delete: []HeaderRef{{"A", 2}, {"A", 5}, {"B", 1}, {"A", 3}, {"B", 4}}})
	var got []string
	for p := s.out; len(p) >= 5 && p[4] == repChgHeader; {
		n := int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		idx := int(p[5])<<24 | int(p[6])<<16 | int(p[7])<<8 | int(p[8])
		got = append(got, fmt.Sprintf("%s%d", p[9:10], idx))
		p = p[4+n:]
	}
	if fmt.Sprint(got) != "[A5 B4 A3 A2 B1]" {
		t.Errorf("deletions in order %v", got)
	}
}
