package arc

import "testing"

// BenchmarkValidate is the whole validation of a chain (parse, the body
// hash, every message signature and seal; keys from the resolver's cache
// and the parsed-key cache after the first round): what a chain costs a
// message on top of DKIM.
func BenchmarkValidate(b *testing.B) {
	_, r := newDNS(b)
	for _, name := range []string{"one-hop", "three-hops", "ed25519-sealer", "none"} {
		msg := readFile(b, "chains/"+name+".eml")
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if got := validate(b, r, msg, nil, 0); got.Status == StatusFail {
					b.Fatal(got.Err)
				}
			}
		})
	}
}
