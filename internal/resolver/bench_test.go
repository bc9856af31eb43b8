package resolver

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
)

func TestDebugLog(t *testing.T) {
	s := dnstest.New(t, zone)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newResolver(t, Config{Logger: log}, s)
	if _, err := r.LookupTXT(context.Background(), "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupTXT(context.Background(), "example.com"); err != nil { // cached: no line
		t.Fatal(err)
	}
	got := buf.String()
	if strings.Count(got, "dns query") != 1 || !strings.Contains(got, "name=example.com.") ||
		!strings.Contains(got, "type=TXT") || !strings.Contains(got, "outcome=ok") {
		t.Errorf("debug log:\n%s", got)
	}
}

func BenchmarkLookupTXTCached(b *testing.B) {
	s := dnstest.New(b, zone)
	r := newResolverB(b, Config{Servers: []string{s.Addr()}})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupTXT(ctx, "example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupTXTUncached(b *testing.B) {
	s := dnstest.New(b, zone)
	r := newResolverB(b, Config{Servers: []string{s.Addr()}, CacheSize: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupTXT(ctx, "example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func newResolverB(b *testing.B, cfg Config) *Resolver {
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return r
}
