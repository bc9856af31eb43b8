package resolver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/pkg/dnserr"
	"github.com/miekg/dns"
)

const zone = `
$TTL 300
example.com.         IN SOA ns.example.com. host.example.com. 1 3600 600 86400 120
example.com.         IN TXT "v=spf1 " "ip4:192.0.2.0/24 -all"
example.com.         IN MX 20 mx2.example.com.
example.com.         IN MX 10 mx1.example.com.
quoted.example.com.  IN TXT "a\"b\\c" "caf\195\169"
two.example.com.     IN TXT "one"
two.example.com.     IN TXT "two"
a.example.com.       IN A 192.0.2.1
a.example.com.       IN AAAA 2001:db8::1
v4.example.com.      IN A 192.0.2.4
v6.example.com.      IN AAAA 2001:db8::6
alias.example.com.   IN CNAME a.example.com.
dangling.example.com. IN CNAME nowhere.example.com.
1.2.0.192.in-addr.arpa. IN PTR a.example.com.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR a.example.com.
sub.deep.example.com. IN TXT "deep"
nosoa.test.          IN TXT "x"
sp\032ace.example.com. IN TXT "space"
user+tag.example.com. IN TXT "plus"
caf\195\169.example.com. IN TXT "utf8"
`

func newResolver(t *testing.T, cfg Config, servers ...*dnstest.Server) *Resolver {
	t.Helper()
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, s.Addr())
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecordTypes(t *testing.T) {
	s := dnstest.New(t, zone)
	r := newResolver(t, Config{}, s)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() (any, error)
		want string
	}{
		{"TXT joins strings", func() (any, error) { return r.LookupTXT(ctx, "example.com") }, `[v=spf1 ip4:192.0.2.0/24 -all]`},
		{"TXT absolute name", func() (any, error) { return r.LookupTXT(ctx, "EXAMPLE.com.") }, `[v=spf1 ip4:192.0.2.0/24 -all]`},
		{"TXT unescapes", func() (any, error) { return r.LookupTXT(ctx, "quoted.example.com") }, `[a"b\ccafé]`},
		{"TXT two records", func() (any, error) {
			v, err := r.LookupTXT(ctx, "two.example.com")
			slices.Sort(v)
			return v, err
		}, `[one two]`},
		{"MX sorted", func() (any, error) {
			mx, err := r.LookupMX(ctx, "example.com")
			var out []string
			for _, m := range mx {
				out = append(out, fmt.Sprintf("%d %s", m.Pref, m.Host))
			}
			return out, err
		}, `[10 mx1.example.com. 20 mx2.example.com.]`},
		{"IP both", func() (any, error) { return r.LookupIPAddr(ctx, "a.example.com") }, `[{192.0.2.1 } {2001:db8::1 }]`},
		{"IP v4 only", func() (any, error) { return r.LookupIPAddr(ctx, "v4.example.com") }, `[{192.0.2.4 }]`},
		{"IP v6 only", func() (any, error) { return r.LookupIPAddr(ctx, "v6.example.com") }, `[{2001:db8::6 }]`},
		{"IP via CNAME", func() (any, error) { return r.LookupIPAddr(ctx, "alias.example.com") }, `[{192.0.2.1 } {2001:db8::1 }]`},
		{"PTR v4", func() (any, error) { return r.LookupAddr(ctx, "192.0.2.1") }, `[a.example.com.]`},
		{"PTR v4-mapped", func() (any, error) { return r.LookupAddr(ctx, "::ffff:192.0.2.1") }, `[a.example.com.]`},
		{"PTR v6", func() (any, error) { return r.LookupAddr(ctx, "2001:db8::1") }, `[a.example.com.]`},
		{"TXT name with a space", func() (any, error) { return r.LookupTXT(ctx, "sp ace.example.com") }, `[space]`},
		{"TXT name with a plus", func() (any, error) { return r.LookupTXT(ctx, "User+Tag.example.com") }, `[plus]`},
		{"TXT name in UTF-8", func() (any, error) { return r.LookupTXT(ctx, "café.example.com.") }, `[utf8]`},
		{"exists", func() (any, error) { return r.DomainExists(ctx, "a.example.com") }, `true`},
		{"exists NODATA", func() (any, error) { return r.DomainExists(ctx, "v6.example.com") }, `true`},
		{"exists empty non-terminal", func() (any, error) { return r.DomainExists(ctx, "deep.example.com") }, `true`},
		{"exists NXDOMAIN", func() (any, error) { return r.DomainExists(ctx, "nope.example.com") }, `false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if s := fmt.Sprint(got); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

// dnsErr asserts that err is a bare *net.DNSError, as the check libraries
// require (they use a type assertion, not errors.As).
func dnsErr(t *testing.T, err error) *net.DNSError {
	t.Helper()
	de, ok := err.(*net.DNSError)
	if !ok {
		t.Fatalf("error %T (%v) is not a bare *net.DNSError", err, err)
	}
	return de
}

func TestErrorFlags(t *testing.T) {
	s := dnstest.New(t, zone)
	s.Fail("servfail.example.com", dns.RcodeServerFailure)
	s.Fail("refused.example.com", dns.RcodeRefused)
	s.Fail("formerr.example.com", dns.RcodeFormatError)
	s.Fail("notimp.example.com", dns.RcodeNotImplemented)
	s.Drop("drop.example.com")
	r := newResolver(t, Config{Timeout: 200 * time.Millisecond, Attempts: 1}, s)

	tests := []struct {
		name                          string
		notFound, temporary, timedOut bool
		exists                        bool // DomainExists answer when no error
	}{
		{"nope.example.com", true, false, false, false},     // NXDOMAIN
		{"v6.example.com", true, false, false, true},        // NODATA for TXT and A
		{"deep.example.com", true, false, false, true},      // empty non-terminal
		{"dangling.example.com", true, false, false, false}, // CNAME to NXDOMAIN
		{"servfail.example.com", false, true, false, false},
		{"refused.example.com", false, true, false, false},
		{"formerr.example.com", false, true, false, false},
		{"notimp.example.com", false, true, false, false},
		{"drop.example.com", false, true, true, false},
		{"bad..name", true, false, false, false},
		{"nul\x00byte.example.com", true, false, false, false},
		{"cr\rptr.example.com", true, false, false, false},
		{`back\slash.example.com`, true, false, false, false},
		{strings.Repeat("x", 64) + ".example.com", true, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.LookupTXT(context.Background(), tt.name)
			de := dnsErr(t, err)
			if de.IsNotFound != tt.notFound || de.IsTemporary != tt.temporary || de.IsTimeout != tt.timedOut {
				t.Errorf("LookupTXT: %v: NotFound=%v Temporary=%v Timeout=%v, want %v %v %v",
					de, de.IsNotFound, de.IsTemporary, de.IsTimeout, tt.notFound, tt.temporary, tt.timedOut)
			}
			if de.Name != tt.name {
				t.Errorf("Name = %q, want the name asked, %q", de.Name, tt.name)
			}
			exists, err := r.DomainExists(context.Background(), tt.name)
			if tt.temporary {
				if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound {
					t.Errorf("DomainExists error %v is not temporary", de)
				}
				return
			}
			if err != nil || exists != tt.exists {
				t.Errorf("DomainExists = %v, %v; want %v", exists, err, tt.exists)
			}
		})
	}
}

func TestLookupIPAddrErrors(t *testing.T) {
	s := dnstest.New(t, zone)
	s.Fail("servfail.example.com", dns.RcodeServerFailure)
	r := newResolver(t, Config{Attempts: 1}, s)
	_, err := r.LookupIPAddr(context.Background(), "nope.example.com")
	if de := dnsErr(t, err); !de.IsNotFound {
		t.Errorf("NXDOMAIN: %v not IsNotFound", de)
	}
	_, err = r.LookupIPAddr(context.Background(), "example.com") // MX, TXT, SOA, no address
	if de := dnsErr(t, err); !de.IsNotFound {
		t.Errorf("NODATA: %v not IsNotFound", de)
	}
	_, err = r.LookupIPAddr(context.Background(), "servfail.example.com")
	if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: %v not temporary", de)
	}
	_, err = r.LookupAddr(context.Background(), "not-an-ip")
	dnsErr(t, err)
}

func TestServerDown(t *testing.T) {
	s := dnstest.New(t, zone)
	r := newResolver(t, Config{Timeout: 200 * time.Millisecond, Attempts: 2}, s)
	s.Stop()
	for _, name := range []string{"example.com", "nope.example.com"} {
		_, err := r.LookupTXT(context.Background(), name)
		if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound {
			t.Errorf("%s with the server down: %v (NotFound=%v), want temporary", name, de, de.IsNotFound)
		} else if strings.Contains(de.Err, "->") || strings.Contains(de.Err, "127.0.0.1") || !strings.HasPrefix(de.Err, "DNS server") && de.Err != "i/o timeout" {
			// issue 19: no "read udp 127.0.0.1:41495->…" in what reaches headers
			t.Errorf("%s: error text %q names sockets", name, de.Err)
		}
	}
}

func TestTCPFallback(t *testing.T) {
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "big.example.com. 300 IN TXT \"record %02d with enough padding to overflow one UDP answer\"\n", i)
	}
	s := dnstest.New(t, b.String())
	r := newResolver(t, Config{}, s)
	txt, err := r.LookupTXT(context.Background(), "big.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(txt) != 60 {
		t.Errorf("got %d records, want 60", len(txt))
	}
	if q := s.Queries(); q != 2 {
		t.Errorf("server saw %d queries, want 2 (UDP truncated, then TCP)", q)
	}
}

// clock is a settable clock for cache expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCacheTTL(t *testing.T) {
	s := dnstest.New(t, zone+"short.test. 30 IN TXT \"old\"\n")
	r := newResolver(t, Config{Attempts: 1}, s)
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	r.now = c.now

	tests := []struct {
		step    string
		advance time.Duration
		name    string
		queries int64 // total server queries after the step
		want    string
	}{
		{"first", 0, "short.test", 1, "[old]"},
		{"cached", 29 * time.Second, "short.test", 1, "[old]"},
		{"expired", 2 * time.Second, "short.test", 2, "[new]"},
		// NXDOMAIN with SOA TTL 300, MINIMUM 120: cached 120 s (RFC 2308 §5).
		{"negative", 0, "nope.example.com", 3, "[]"},
		{"negative cached", 119 * time.Second, "nope.example.com", 3, "[]"},
		{"negative expired", 2 * time.Second, "nope.example.com", 4, "[]"},
		// NODATA: cached the same way.
		{"nodata", 0, "a.example.com", 5, "[]"},
		{"nodata cached", 100 * time.Second, "a.example.com", 5, "[]"},
		// No SOA: the default 60 s.
		{"no soa", 0, "nope.nosoa.test", 6, "[]"},
		{"no soa cached", 59 * time.Second, "nope.nosoa.test", 6, "[]"},
		{"no soa expired", 2 * time.Second, "nope.nosoa.test", 7, "[]"},
	}
	for i, tt := range tests {
		c.advance(tt.advance)
		if i == 1 {
			if err := s.SetZone(zone + "short.test. 30 IN TXT \"new\"\n"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := r.LookupTXT(context.Background(), tt.name)
		if err != nil && !dnserr.IsNotFound(err) {
			t.Fatalf("%s: %v", tt.step, err)
		}
		if fmt.Sprint(got) != tt.want || s.Queries() != tt.queries {
			t.Errorf("%s: got %v after %d queries, want %s after %d", tt.step, got, s.Queries(), tt.want, tt.queries)
		}
	}
}

func TestTemporaryErrorsNotCached(t *testing.T) {
	s := dnstest.New(t, zone)
	s.Fail("servfail.example.com", dns.RcodeServerFailure)
	r := newResolver(t, Config{Attempts: 2}, s)
	for i := range 2 {
		if _, err := r.LookupTXT(context.Background(), "servfail.example.com"); err == nil {
			t.Fatal("no error")
		}
		if want := int64(2 * (i + 1)); s.Queries() != want {
			t.Errorf("after lookup %d: %d queries, want %d (2 attempts each, no caching)", i+1, s.Queries(), want)
		}
	}
}

func TestCacheDisabled(t *testing.T) {
	s := dnstest.New(t, zone)
	r := newResolver(t, Config{CacheSize: -1}, s)
	for range 3 {
		if _, err := r.LookupTXT(context.Background(), "example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if s.Queries() != 3 {
		t.Errorf("%d queries, want 3", s.Queries())
	}
}

// TestSingleflight: the first server never answers (the query waits its
// timeout, then goes to the second server), so every caller that arrives
// meanwhile joins the one query in flight. The leader's context is then
// cancelled: it must get a temporary error at once, and the others the answer.
func TestSingleflight(t *testing.T) {
	good := dnstest.New(t, zone)
	slow := dnstest.New(t, zone)
	slow.Drop("example.com")
	// A new Resolver starts its rotation at index 1: the slow server first.
	r := newResolver(t, Config{CacheSize: -1, Attempts: 1, Timeout: 3 * time.Second}, good, slow)

	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := r.LookupTXT(leaderCtx, "example.com")
		leaderErr <- err
	}()
	for slow.Queries() == 0 {
		time.Sleep(time.Millisecond)
	}

	const n = 50
	var wg sync.WaitGroup
	var ok atomic.Int32
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			txt, err := r.LookupTXT(context.Background(), "example.com")
			if err == nil && len(txt) == 1 {
				ok.Add(1)
			} else {
				t.Errorf("waiter: %v %v", txt, err)
			}
		}()
	}
	close(start)
	cancel()
	if de := dnsErr(t, <-leaderErr); !de.IsTemporary || de.IsNotFound {
		t.Errorf("cancelled leader: %v, want temporary", de)
	}
	wg.Wait()
	if ok.Load() != n {
		t.Errorf("%d of %d waiters got the answer", ok.Load(), n)
	}
	if slow.Queries() != 1 || good.Queries() != 1 {
		t.Errorf("queries: slow %d, good %d; want 1 and 1", slow.Queries(), good.Queries())
	}
}

func TestContext(t *testing.T) {
	s := dnstest.New(t, zone)
	s.Drop("drop.example.com")
	r := newResolver(t, Config{Timeout: 5 * time.Second, Attempts: 1}, s)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.LookupTXT(ctx, "example.com")
	if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound {
		t.Errorf("cancelled: %v, want temporary", de)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = r.LookupTXT(ctx, "drop.example.com")
	if de := dnsErr(t, err); !de.IsTemporary || !de.IsTimeout || de.IsNotFound {
		t.Errorf("deadline: %v, want temporary timeout", de)
	}
}

func TestObserve(t *testing.T) {
	s := dnstest.New(t, zone)
	var mu sync.Mutex
	var events []string
	r := newResolver(t, Config{Observe: func(e Event) {
		mu.Lock()
		events = append(events, fmt.Sprintf("%s %s hit=%v %s", e.Name, e.Type, e.CacheHit, e.Outcome))
		mu.Unlock()
	}}, s)
	for _, name := range []string{"example.com", "example.com", "nope.example.com", "nope.example.com"} {
		_, _ = r.LookupTXT(context.Background(), name)
	}
	want := []string{
		"example.com. TXT hit=false ok",
		"example.com. TXT hit=true ok",
		"nope.example.com. TXT hit=false nxdomain",
		"nope.example.com. TXT hit=true nxdomain",
	}
	if !slices.Equal(events, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, `plain`},
		{`a\"b`, `a"b`},
		{`a\\b`, `a\b`},
		{`caf\195\169`, "caf\u00e9"},
		{`\000x`, "\x00x"},
		{`trailing\`, `trailing\`},
		{`\999`, `999`},
		{`\12`, `12`},
	}
	for _, tt := range tests {
		if got := unescape(tt.in); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{Servers: []string{"127.0.0.1"}}); err == nil {
		t.Error("server without port accepted")
	}
	r, err := New(Config{Servers: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.timeout != DefaultTimeout || r.attempts != DefaultAttempts || r.cache == nil {
		t.Errorf("defaults not applied: %v %v %v", r.timeout, r.attempts, r.cache)
	}
}

func TestPresentation(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"Example.COM", "example.com.", true},
		{"example.com.", "example.com.", true},
		{"a b.example", `a\032b.example.`, true},
		{"a\x00b.example", `a\000b.example.`, true},
		{`a"b;c(d)e@f$g\h.example`, `a\034b\059c\040d\041e\064f\036g\092h.example.`, true},
		{"", "", false},
		{".", "", false},
		{"a..b", "", false},
		{".a", "", false},
		{strings.Repeat("a", 63) + ".b", strings.Repeat("a", 63) + ".b.", true},
		{strings.Repeat("a", 64) + ".b", "", false},
		{strings.Repeat("a.", 126) + "bc", "", false}, // 254 octets
		// Already in presentation form (the fast path) and its edges.
		{"sel._domainkey.example-1.com.", "sel._domainkey.example-1.com.", true},
		{strings.Repeat("a", 63) + ".b.", strings.Repeat("a", 63) + ".b.", true},
		{strings.Repeat("a", 64) + ".b.", "", false},
		{strings.Repeat("a.", 126) + "b.", strings.Repeat("a.", 126) + "b.", true}, // 253 octets + root
		{strings.Repeat("a.", 126) + "bc.", "", false},
		{"a..b.", "", false},
		{"..", "", false},
		{"Example.com.", "example.com.", true},
		{"a b.example.", `a\032b.example.`, true},
	}
	for _, tt := range tests {
		got, ok := presentation(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("presentation(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if canonical(tt.in) && (!ok || got != tt.in) {
			t.Errorf("canonical(%q) = %v, but presentation gives %q, %v", tt.in, canonical(tt.in), got, ok)
		}
		if ok && !sameName(got, strings.ToUpper(got)) {
			t.Errorf("sameName(%q, upper case) = false", got)
		}
	}
	if sameName("a.example.", "b.example.") {
		t.Error("sameName of different names")
	}
}
