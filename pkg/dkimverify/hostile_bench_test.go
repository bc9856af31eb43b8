package dkimverify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/resolver"
)

// BenchmarkHostileHeader verifies header blocks shaped by an attacker
// (issue 16), at several sizes: with b.SetBytes, MB/s stays flat when the
// cost is linear in the size and halves with each doubling when it is
// quadratic. The key is published (testdata/keys.zone), so the signatures
// get as far as the header hash. Run:
//
//	go test -run '^$' -bench HostileHeader ./pkg/dkimverify/
func BenchmarkHostileHeader(b *testing.B) {
	const body = "body\r\n"
	sum := sha256.Sum256([]byte(body))
	bh := base64.StdEncoding.EncodeToString(sum[:])
	sig := func(rest string) string {
		return "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; bh=" + bh + "; " + rest + "\r\n"
	}
	cases := []struct {
		name  string
		build func(size int) string
	}{
		// 17 signatures whose b= differ in their last character only.
		{"large-signatures", func(size int) string {
			var sb strings.Builder
			for i := range 17 {
				sb.WriteString(sig("h=from; b=" + strings.Repeat("A", size/17-1) + string(rune('B'+i))))
			}
			return sb.String() + "From: a@example.org\r\n"
		}},
		// h= naming From again and again, over a block of 1,000 fields.
		{"long-h-list", func(size int) string {
			h := sig("h=" + strings.Repeat("from:", size/2/5) + "from; b=AAAA")
			return h + strings.Repeat("X-Filler: x\r\n", 998) + "From: a@example.org\r\n"
		}},
		// One signature of many distinct tags.
		{"many-tags", func(size int) string {
			var sb strings.Builder
			for i := 0; sb.Len() < size; i++ {
				fmt.Fprintf(&sb, "t%d=1; ", i)
			}
			return sig(sb.String()+"h=from; b=AAAA") + "From: a@example.org\r\n"
		}},
	}
	_, r := newDNS(b, fixtureZone(b), resolver.Config{})
	for _, c := range cases {
		for _, size := range []int{128 << 10, 256 << 10, 512 << 10, 960 << 10} {
			header := []byte(c.build(size) + "\r\n")
			b.Run(fmt.Sprintf("%s/%dKiB", c.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(header)))
				for range b.N {
					v := Start(context.Background(), r, header, nil)
					_, _ = v.Write([]byte(body))
					if res := v.Results(); len(res) == 0 {
						b.Fatal("no result")
					}
				}
			})
		}
	}
}
