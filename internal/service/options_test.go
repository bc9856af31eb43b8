package service

import (
	"reflect"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/engine"
)

// One set of defaults: what the default configuration gives the engine is
// engine.DefaultOptions, which the engine's own tests and benchmarks use.
func TestEngineOptionsDefaults(t *testing.T) {
	got, want := EngineOptions(config.Default()), engine.DefaultOptions()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EngineOptions(config.Default()) =\n%+v\nengine.DefaultOptions() =\n%+v", got, want)
	}
}

// The [dns] section reaches the resolver the same way everywhere; a cache
// size of 0 is no cache (issue 18: the profiler turned it into the
// resolver's default of 10,000 entries).
func TestResolverConfig(t *testing.T) {
	cfg := config.Default()
	cfg.DNS.Servers = []string{"192.0.2.53"}
	cfg.DNS.Timeout = config.Duration{Duration: 3 * time.Second}
	cfg.DNS.Attempts = 4
	for _, tt := range []struct{ size, want int }{{0, -1}, {-1, -1}, {500, 500}} {
		cfg.DNS.CacheSize = tt.size
		rc := ResolverConfig(cfg)
		if rc.CacheSize != tt.want || rc.Attempts != 4 || rc.Timeout != 3*time.Second ||
			len(rc.Servers) != 1 || rc.Servers[0] != "192.0.2.53" || rc.CacheBytes != cfg.DNS.CacheBytes {
			t.Errorf("cache_size %d: %+v", tt.size, rc)
		}
	}
}
