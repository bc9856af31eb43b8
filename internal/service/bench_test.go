package service_test

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// vmHWM returns the peak resident set size of this process in bytes.
func vmHWM(tb testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	tb.Fatal("no VmHWM")
	return 0
}

// BenchmarkMilter64x20MB: 64 concurrent milter sessions each stream a
// signed message with a 20 MB body through the real milter server and the
// DKIM verifier. The body is never buffered whole, so the process's peak RSS
// (client and server in one process) stays far below 200 MB. Run alone:
//
//	go test -run '^$' -bench Milter64x20MB -benchtime 1x ./internal/service/
func BenchmarkMilter64x20MB(b *testing.B) {
	zone := dkimZone(b, `
big.test.           300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.big.test.    300 IN TXT "v=DMARC1; p=reject"
`)
	h := newHarness(b, zone, func(c *config.Config) { c.DNS.Timeout = config.Duration{Duration: time.Second} })
	chunk := bytes.Repeat([]byte(strings.Repeat("0123456789abcdef", 4)+"\r\n"), 65535/66) // ~64 KiB of CRLF lines
	const bodySize = 20 << 20
	// A real key, so the verifier hashes the whole body (and then fails
	// on the body hash).
	sig := " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAA"
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		for s := 0; s < 64; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sess, err := testmilter.Dial("tcp", h.addr, 0)
				if err != nil {
					b.Error(err)
					return
				}
				defer sess.Close()
				sess.Conn("mx.big.test", gomilter.FamilyInet, 25, "192.0.2.1")
				sess.Helo("mx.big.test")
				sess.Mail("<a@big.test>", nil)
				sess.Rcpt("<b@rcpt.test>", nil)
				sess.HeaderField("DKIM-Signature", sig)
				sess.HeaderField("From", " a@big.test")
				sess.HeaderEnd()
				for sent := 0; sent < bodySize; sent += len(chunk) {
					if _, err := sess.BodyChunk(chunk); err != nil {
						b.Error(err)
						return
					}
				}
				if _, _, err := sess.End(); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	hwm := vmHWM(b)
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	b.SetBytes(64 * bodySize)
	if hwm >= 200<<20 {
		b.Errorf("peak RSS %d MiB, want < 200 MiB", hwm>>20)
	}
}

// BenchmarkMilterMessage is one message through the real milter protocol
// over loopback TCP with SPF, DKIM (a passing RSA-2048 signature) and DMARC,
// DNS answers from the resolver's cache after the first round.
func BenchmarkMilterMessage(b *testing.B) {
	h := newHarness(b, dkimZone(b, `
example.org.        300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`), nil)
	m := emlMsg(b, fixtures+"rsa2048-relaxed.eml", "alice@example.org")
	c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.example.org")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.send(m)
	}
}
