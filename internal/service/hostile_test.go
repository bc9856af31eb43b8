package service_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// hostileBodyHash is the bh= of hostileBody.
var hostileBodyHash = func() string {
	sum := sha256.Sum256([]byte(hostileBody))
	return base64.StdEncoding.EncodeToString(sum[:])
}()

// hostileCases build the header fields of hostile messages of about size
// bytes. A milter packet holds at most 1 MiB: one field stays below.
type hostileCase struct {
	name  string
	build func(size int) [][2]string
	one   bool // a single large field
}

var hostileCases = []hostileCase{
	// Issue 16: 17 signatures whose b= share everything but the last
	// character made header.b quadratic in the size of the b= values.
	{"large-signatures", func(size int) [][2]string {
		const n = 17
		l := size / n
		var hs [][2]string
		for i := range n {
			bval := strings.Repeat("A", l-1) + string("BCDEFGHIJKLMNOPQRSTUVWXYZ"[i])
			hs = append(hs, [2]string{"DKIM-Signature", " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=rsa2048; h=from;" +
				" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=" + bval})
		}
		return append(hs, [2]string{"From", " a@sender.test"})
	}, false},
	// One signature listing From again and again in h= against a
	// header block of many fields.
	// The body hash is right, so the header hash is computed.
	{"long-h-list", func(size int) [][2]string {
		hs := [][2]string{{"DKIM-Signature", " v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=" +
			strings.Repeat("from:", size/2/5) + "from; bh=" + hostileBodyHash + "; b=AAAA"}}
		for len(hs) < 990 {
			hs = append(hs, [2]string{"X-Filler", " x"})
		}
		return append(hs, [2]string{"From", " a@sender.test"})
	}, true},
	// One signature of many distinct tags.
	{"many-tags", func(size int) [][2]string {
		var sb strings.Builder
		sb.WriteString(" v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA")
		for i := 0; sb.Len() < size; i++ {
			fmt.Fprintf(&sb, "; t%d=1", i)
		}
		return [][2]string{{"DKIM-Signature", sb.String()}, {"From", " a@sender.test"}}
	}, true},
	// Issue 16: 80,000 forged Authentication-Results fields took 4 s
	// to order for deletion.
	{"forged-ar", func(size int) [][2]string {
		f := [2]string{"Authentication-Results", " " + authservID + "; spf=pass smtp.mailfrom=sender.test"}
		var hs [][2]string
		for n := 0; n < size; n += len(f[0]) + len(f[1]) + 3 {
			hs = append(hs, f)
		}
		return append(hs, [2]string{"From", " a@sender.test"})
	}, false},
	// One forged A-R field of many results (what our id removal parses).
	{"large-ar", func(size int) [][2]string {
		var sb strings.Builder
		sb.WriteString(" " + authservID)
		for i := 0; sb.Len() < size; i++ {
			fmt.Fprintf(&sb, ";\r\n\tdkim=pass header.d=d%d.example header.b=abcdefgh (c%d)", i, i)
		}
		return [][2]string{{"Authentication-Results", sb.String()}, {"From", " a@sender.test"}}
	}, true},
	// One From field of many addresses in distinct domains.
	{"from-addresses", func(size int) [][2]string {
		var sb strings.Builder
		sb.WriteString(" a@sender.test")
		for i := 0; sb.Len() < size; i++ {
			fmt.Fprintf(&sb, ", u%d@d%d.example", i, i)
		}
		return [][2]string{{"From", sb.String()}}
	}, true},
	// Many From fields.
	{"from-fields", func(size int) [][2]string {
		var hs [][2]string
		for n, i := 0, 0; n < size; i++ {
			v := fmt.Sprintf(" u%d@d%d.example", i, i)
			hs = append(hs, [2]string{"From", v})
			n += len(v) + 7
		}
		return hs
	}, false},
}

// hostileBody is the body of every hostile message (c=simple: hashed as is).
const hostileBody = "body\r\n"

// BenchmarkHostile sends messages shaped by an attacker who controls every
// byte through the real milter server, service, engine and verifiers
// (issue 16): their cost must grow linearly with their size. Each case runs
// at several sizes; with b.SetBytes, MB/s stays flat when the cost is
// linear and halves with each doubling when it is quadratic. Run:
//
//	go test -run '^$' -bench Hostile -benchtime 3x ./internal/service/
func BenchmarkHostile(b *testing.B) {
	for _, c := range hostileCases {
		for _, size := range []int{128 << 10, 256 << 10, 512 << 10, 960 << 10} {
			if c.one && size > 512<<10 {
				continue
			}
			b.Run(fmt.Sprintf("%s/%dKiB", c.name, size>>10), func(b *testing.B) {
				h := newHarness(b, dkimZone(b, ""), nil)
				m := msg{from: "a@sender.test", headers: c.build(size), body: hostileBody}
				bytes := 0
				for _, f := range m.headers {
					bytes += len(f[0]) + len(f[1]) + 3
				}
				conn := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
				b.SetBytes(int64(bytes))
				b.ResetTimer()
				for range b.N {
					conn.send(m)
				}
			})
		}
	}
}

// milter.shutdown_timeout holds while hostile messages are in flight: each
// case at 512 KiB on its own connection, all waiting at end of message on a
// DMARC lookup that never answers; Shutdown cuts them off at its deadline
// and leaves no session behind.
func TestShutdownWithHostileMessages(t *testing.T) {
	h := newHarness(t, dkimZone(t, ""), func(c *config.Config) {
		c.DNS.Timeout = config.Duration{Duration: time.Minute}
	})
	h.dns.Drop("_dmarc.sender.test.")
	var wg sync.WaitGroup
	for _, c := range hostileCases {
		conn := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = testmilter.Send(conn.s, testmilter.Message{From: "a@sender.test", Headers: c.build(512 << 10),
				Body: [][]byte{[]byte(hostileBody)}, NoAbort: true})
		}()
	}
	// Wait until every message is in flight: each has asked for its
	// DMARC record.
	for deadline := time.Now().Add(30 * time.Second); h.dns.Queries() < int64(len(hostileCases)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d DNS queries", h.dns.Queries())
		}
	}
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := h.srv.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the messages cut off at the deadline", err)
	}
	// A liveness bound far above the timeout, not a performance target.
	if took > timeout+5*time.Second {
		t.Errorf("Shutdown took %v with a %v timeout", took, timeout)
	}
	if n := h.srv.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	wg.Wait()
}

// A message's log line does not grow with the message: a From field of
// 10,000 author domains lists ten of them and the count of the rest.
func TestHostileLogLine(t *testing.T) {
	h := newHarness(t, dkimZone(t, ""), nil)
	c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	i := slices.IndexFunc(hostileCases, func(c hostileCase) bool { return c.name == "from-addresses" })
	c.send(msg{from: "a@sender.test", headers: hostileCases[i].build(256 << 10), body: hostileBody})
	found := false
	for line := range strings.SplitSeq(h.logs.String(), "\n") {
		if !strings.Contains(line, "msg=message ") {
			continue
		}
		found = true
		if len(line) > 4096 || !strings.Contains(line, "more)") {
			t.Errorf("the message's log line has %d bytes: %.300s…", len(line), line)
		}
	}
	if !found {
		t.Error("no message log line")
	}
}
