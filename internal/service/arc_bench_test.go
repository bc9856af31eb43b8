package service_test

import (
	"os"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/config"
)

// BenchmarkMilterMessageARC is BenchmarkMilterMessage (SPF, one passing
// RSA-2048 DKIM signature, DMARC, through the real milter protocol) with
// ARC validation off and on, for mail without ARC sets (most mail: ARC on
// must cost nothing measurable), and the cost of a two-hop chain sealed by
// dkimpy (two seals and two message signatures verified, RSA-2048).
func BenchmarkMilterMessageARC(b *testing.B) {
	keys, err := os.ReadFile("../../pkg/arc/testdata/keys.zone")
	if err != nil {
		b.Fatal(err)
	}
	zone := dkimZone(b, `
example.org.        300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`+string(keys)+`
author.example.        300 IN TXT "v=spf1 -all"
_dmarc.author.example. 300 IN TXT "v=DMARC1; p=reject"
lists.example.         300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
`)
	plain := emlMsg(b, fixtures+"rsa2048-relaxed.eml", "alice@example.org")
	chain := emlMsg(b, arcChains+"two-hops.eml", "list-bounces@lists.example")
	for _, bc := range []struct {
		name string
		arc  bool
		m    msg
	}{
		{"no-ARC-sets/arc=off", false, plain},
		{"no-ARC-sets/arc=on", true, plain},
		{"two-hop-chain/arc=off", false, chain},
		{"two-hop-chain/arc=on", true, chain},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, zone, func(c *config.Config) { c.ARC.Enabled = bc.arc })
			c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.example.org")
			c.send(bc.m) // DNS answers into the cache
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.send(bc.m)
			}
		})
	}
}

// BenchmarkMilterMessageARCInterleaved sends the same message without ARC
// sets alternately to a milter with ARC off and one with ARC on, and
// reports each side's mean time per message and their ratio. Alternating
// message by message cancels the drift of a machine shared with other
// load, which makes consecutive benchmarks differ by more than the effect
// measured here.
func BenchmarkMilterMessageARCInterleaved(b *testing.B) {
	zone := dkimZone(b, `
example.org.        300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`)
	m := emlMsg(b, fixtures+"rsa2048-relaxed.eml", "alice@example.org")
	off := newHarness(b, zone, func(c *config.Config) { c.ARC.Enabled = false }).connect("192.0.2.1", "[192.0.2.1]", "mx.example.org")
	on := newHarness(b, zone, func(c *config.Config) { c.ARC.Enabled = true }).connect("192.0.2.1", "[192.0.2.1]", "mx.example.org")
	off.send(m)
	on.send(m)
	var tOff, tOn time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first, second, t1, t2 := off, on, &tOff, &tOn
		if i%2 == 1 {
			first, second, t1, t2 = on, off, &tOn, &tOff
		}
		s := time.Now()
		first.send(m)
		mid := time.Now()
		second.send(m)
		*t1 += mid.Sub(s)
		*t2 += time.Since(mid)
	}
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "ns/msg-arc-off")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "ns/msg-arc-on")
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
}
