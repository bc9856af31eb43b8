package spfcheck

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
)

// BenchmarkHostileRecord: an SPF record of many ip4 terms none of which
// matches, so that every term is read and evaluated (issue 16). With
// b.SetBytes, MB/s stays flat as the record doubles when the cost is
// linear in its terms. The answers come from the resolver's cache after the
// first round, so what is measured is parsing and evaluation. Run:
//
//	go test -run '^$' -bench HostileRecord ./pkg/spfcheck/
func BenchmarkHostileRecord(b *testing.B) {
	for _, size := range []int{4 << 10, 8 << 10, 16 << 10, 32 << 10} {
		b.Run(fmt.Sprintf("ip4-terms/%dKiB", size>>10), func(b *testing.B) {
			var rec strings.Builder
			rec.WriteString("v=spf1")
			for i := 0; rec.Len() < size; i++ {
				fmt.Fprintf(&rec, " ip4:10.%d.%d.0/24", i/256%256, i%256)
			}
			rec.WriteString(" -all")
			// TXT character-strings hold 255 bytes: cut the record into
			// several (RFC 7208 §3.3: they are joined without spaces).
			var strs []string
			for s := rec.String(); len(s) > 0; {
				n := min(200, len(s))
				strs = append(strs, `"`+s[:n]+`"`)
				s = s[n:]
			}
			srv := dnstest.New(b, "big.example. 300 IN TXT "+strings.Join(strs, " ")+"\n")
			r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}})
			if err != nil {
				b.Fatal(err)
			}
			ip := net.ParseIP("192.0.2.1")
			b.SetBytes(int64(rec.Len()))
			b.ResetTimer()
			for range b.N {
				if o := CheckMailFrom(context.Background(), r, ip, "mx.big.example", "a@big.example", nil); o.Status != StatusFail {
					b.Fatalf("%+v, want fail", o)
				}
			}
		})
	}
}
