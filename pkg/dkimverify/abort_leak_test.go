package dkimverify

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/resolver"
)

// Aborting messages with two signatures in the middle of the body (a
// connection dropped by the MTA) leaves no goroutine behind: the key
// lookups end.
func TestAbortMidBodyLeavesNoGoroutines(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	header, body := splitMessage(t, readFile(t, "two-signatures-one-broken.eml"))
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	// One message first, so that pools and the resolver's goroutines exist.
	v := Start(context.Background(), r, header, atT0plus(0))
	v.Write(body)
	v.Results()
	base := settle()
	for i := 0; i < 50; i++ {
		v := Start(context.Background(), r, header, atT0plus(0))
		v.Write(body[:len(body)/2])
		v.Abort()
	}
	deadline := time.Now().Add(10 * time.Second)
	n := settle()
	for n > base+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = settle()
	}
	if n > base+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after 50 aborted messages, %d before\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
