package dkimsign

import (
	"crypto"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkSign measures one message signed with RSA 2048, Ed25519 and
// both (dual signing), the body fed in 64 KiB chunks as Postfix sends it.
func BenchmarkSign(b *testing.B) {
	testKeys(b)
	ks := newKeySet(b, map[string]crypto.Signer{"rsa": testRSA, "ed": testEd}, []SigningRule{
		{Pattern: "rsa.example.com", Keys: []string{"rsa"}},
		{Pattern: "ed.example.com", Keys: []string{"ed"}},
		{Pattern: "dual.example.com", Keys: []string{"rsa", "ed"}},
	})
	header := headerOf(testFields)
	for _, size := range []int{4 << 10, 1 << 20} {
		body := []byte(strings.Repeat(strings.Repeat("x", 76)+"\r\n", size/78+1)[:size])
		for _, which := range []string{"rsa", "ed", "dual"} {
			keys := ks.table.Select(which + ".example.com")
			b.Run(which+"/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					s := Start(header, keys, nil)
					for p := body; len(p) > 0; {
						n := min(65535, len(p))
						_, _ = s.Write(p[:n])
						p = p[n:]
					}
					if _, err := s.Finish(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
