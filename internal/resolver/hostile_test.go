package resolver

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
)

// hostileZone is a zone an attacker controls (issue 16): over-sized
// answers, and many names whose answers are large but within the caps,
// all with a day's TTL.
func hostileZone(names int) string {
	var b strings.Builder
	// 1,000 A records: over MaxAnswerRecords.
	for i := range 1000 {
		fmt.Fprintf(&b, "many.test. 86400 IN A 10.0.%d.%d\n", i/256, i%256)
	}
	// One TXT record of 60 KB (240 strings of 250 bytes): over MaxAnswerBytes.
	b.WriteString("fat.test. 86400 IN TXT")
	for range 240 {
		b.WriteString(` "` + strings.Repeat("x", 250) + `"`)
	}
	b.WriteString("\n")
	// 200 A records, about 24 KB as the cache counts them: within the caps.
	for i := range 200 {
		fmt.Fprintf(&b, "big.test. 86400 IN A 10.1.%d.%d\n", i/256, i%256)
	}
	for i := range names {
		fmt.Fprintf(&b, "h%d.test. 86400 IN CNAME big.test.\n", i)
	}
	return b.String()
}

// An answer over the caps is a temporary failure, never a shortened list,
// and its failure is cached (small) rather than asked again per message.
func TestAnswerCaps(t *testing.T) {
	s := dnstest.New(t, hostileZone(0))
	r := newResolver(t, Config{}, s)
	ctx := context.Background()
	for _, lookup := range []struct {
		name string
		f    func() error
	}{
		{"1000 A records", func() error { _, err := r.LookupIPAddr(ctx, "many.test"); return err }},
		{"60 KB TXT", func() error { _, err := r.LookupTXT(ctx, "fat.test"); return err }},
	} {
		for round := range 2 {
			before := s.Queries()
			err := lookup.f()
			if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound || !strings.Contains(de.Err, "too large") {
				t.Errorf("%s (round %d): %+v, want a temporary 'too large' error", lookup.name, round, de)
			}
			if q := s.Queries() - before; round == 1 && q != 0 {
				t.Errorf("%s: %d queries the second time, want the cached failure", lookup.name, q)
			}
		}
	}
	if n := r.CacheBytes(); n > 4<<10 {
		t.Errorf("cache holds %d bytes after two failures", n)
	}
	// Within the caps: the 200 addresses.
	if ips, err := r.LookupIPAddr(ctx, "big.test"); err != nil || len(ips) != 200 {
		t.Errorf("big.test: %d addresses, %v", len(ips), err)
	}
}

// heapAfter returns the live heap after a full collection.
func heapAfter() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// The cache is bounded in bytes, and its estimate is honest: 600 names
// whose answers hold 200 addresses each (about 14 MB in the cache's
// count) grow the live heap by about the bound, not by the whole; with a
// bound above their total the heap does grow by about that total.
func TestCacheBytesBoundHeap(t *testing.T) {
	const names = 600
	s := dnstest.New(t, hostileZone(names))
	fill := func(limit int64) (heapGrowth, cached int64) {
		r := newResolver(t, Config{CacheBytes: limit}, s)
		base := heapAfter()
		for i := range names {
			if _, err := r.LookupIPAddr(context.Background(), fmt.Sprintf("h%d.test", i)); err != nil {
				t.Fatal(err)
			}
		}
		growth := heapAfter() - base
		runtime.KeepAlive(r)
		return growth, r.CacheBytes()
	}
	const limit = 2 << 20
	growth, cached := fill(limit)
	t.Logf("bound %d KiB: cache counts %d KiB, live heap grew %d KiB", limit>>10, cached>>10, growth>>10)
	if cached > limit {
		t.Errorf("cache counts %d bytes, over its bound %d", cached, limit)
	}
	if growth > 2*limit {
		t.Errorf("live heap grew by %d KiB with a %d KiB bound", growth>>10, limit>>10)
	}
	// Without a binding bound the same answers take far more: the
	// estimate is not too small, and this test could fail.
	growthAll, cachedAll := fill(1 << 30)
	t.Logf("no bound: cache counts %d KiB, live heap grew %d KiB", cachedAll>>10, growthAll>>10)
	if cachedAll < 5*limit || growthAll < cachedAll/2 || growthAll > 2*cachedAll {
		t.Errorf("unbounded: cache counts %d KiB, heap grew %d KiB: the estimate is off", cachedAll>>10, growthAll>>10)
	}
}
