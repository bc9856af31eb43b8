// Package resolver is the one DNS client of authmilter: SPF, DKIM and DMARC
// all ask their questions through it.
//
// It speaks DNS itself (miekg/dns over UDP with EDNS0, TCP on truncation)
// rather than using net.Resolver, because net.Resolver hides TTLs and folds
// SERVFAIL into "no such host", which would turn a temperror into a wrong
// none or fail. Answers, including negative ones (RFC 2308), are kept in a
// TTL-respecting LRU cache, and identical concurrent questions share one
// query (singleflight).
//
// Error contract: every lookup error is a bare *net.DNSError, never wrapped
// and never a context error, because the check libraries classify errors by
// type assertion. NXDOMAIN and NODATA set IsNotFound; SERVFAIL, REFUSED,
// FORMERR, NOTIMP, network errors, timeouts and context ends set IsTemporary
// (timeouts and deadlines also IsTimeout). A temporary failure is never
// reported as not found.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/pkg/dnserr"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultAttempts  = 2
	DefaultCacheSize = 10000
	// DefaultCacheBytes bounds the memory the cache holds (as estimated
	// by answer.size): an attacker's zones can answer with thousands of
	// records or 60 KB TXT strings and a day's TTL, so a count of entries
	// alone bounds nothing (issue 16).
	DefaultCacheBytes = 64 << 20

	// MaxAnswerRecords and MaxAnswerBytes cap one answer (the records of
	// the asked type after CNAMEs; bytes as answer.size counts them). A
	// larger answer is a temporary failure, never a shortened list: a
	// shortened TXT set could hide a second SPF record (a permerror) and
	// a shortened address list could turn a pass into a fail. RFC 7208
	// §4.6.4 already bounds what SPF uses of MX and PTR answers (10
	// names); real answers are far below these caps.
	MaxAnswerRecords = 256
	MaxAnswerBytes   = 32 << 10
	// tooLargeTTL is how long the failure of an answer over the caps is
	// cached, so that a hostile zone is not asked again for every message.
	tooLargeTTL = 60 * time.Second

	// ednsSize is the EDNS0 UDP payload size we advertise: the DNS Flag
	// Day 2020 value, which avoids IP fragmentation on common paths.
	ednsSize = 1232

	// Negative answers without an SOA in the authority section are cached
	// this long; negative TTLs are clamped to [minNegTTL, maxNegTTL].
	defaultNegTTL = 60 * time.Second
	minNegTTL     = 1 * time.Second
	maxNegTTL     = 3 * time.Hour // RFC 2308 §5: 1–3 hours is a reasonable ceiling
	// maxTTL caps positive answers (RFC 2181 §8 allows up to 2^31-1 s;
	// a day keeps key rotations visible).
	maxTTL = 24 * time.Hour
	// maxCNAMEChain bounds CNAME following inside one answer.
	maxCNAMEChain = 8
)

// Outcome names the result of one lookup, for metrics and debug logs.
type Outcome string

// Outcomes reported to Config.Observe.
const (
	OutcomeOK       Outcome = "ok"
	OutcomeNXDomain Outcome = "nxdomain"
	OutcomeNoData   Outcome = "nodata"
	OutcomeServFail Outcome = "servfail"
	OutcomeRefused  Outcome = "refused"
	OutcomeRcode    Outcome = "rcode" // another error rcode (FORMERR, NOTIMP…)
	OutcomeTimeout  Outcome = "timeout"
	OutcomeNetError Outcome = "neterror"
	OutcomeTooLarge Outcome = "toolarge" // over MaxAnswerRecords or MaxAnswerBytes
)

// Event describes one lookup answered from the cache or one query sent to a
// server, for a metrics layer. Server is empty for cache hits.
type Event struct {
	Name     string
	Type     string // "A", "TXT"…
	CacheHit bool
	Outcome  Outcome
	Server   string
	Duration time.Duration
}

// Config configures a Resolver. The zero value works: servers from
// /etc/resolv.conf, 2 s per attempt, 2 attempts, 10000 cache entries.
type Config struct {
	// Servers are "host:port" addresses; empty means /etc/resolv.conf.
	Servers []string
	// Timeout is the limit for one query attempt; default 2 s.
	Timeout time.Duration
	// Attempts is how many rounds through Servers a query gets; default 2.
	Attempts int
	// CacheSize is the number of cached answers; default 10000, negative
	// disables the cache.
	CacheSize int
	// CacheBytes bounds the cache's memory, as answer.size estimates it;
	// default DefaultCacheBytes. The least recently used answers go first.
	CacheBytes int64
	// Logger, if set, gets a debug line per query sent.
	Logger *slog.Logger
	// Observe, if set, is called for every cache hit and every query sent.
	// It must be fast and safe for concurrent use.
	Observe func(Event)
}

// Resolver is a caching DNS stub resolver. It is safe for concurrent use.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	cache    *lru.Cache[cacheKey, *answer] // nil when disabled
	// cacheBytes is the sum of the sizes of the cached answers: added
	// when an answer goes in, taken off by the cache's eviction callback
	// whenever one leaves (Remove, RemoveOldest, the count bound).
	cacheBytes atomic.Int64
	maxBytes   int64
	group      singleflight.Group
	log        *slog.Logger
	observe    func(Event)
	next       atomic.Uint32 // server rotation
	// now is the clock used for cache expiry; tests replace it.
	now func() time.Time
}

type cacheKey struct {
	name  string // lowercase, absolute
	qtype uint16
}

// answer is the outcome of one question: the final-type records of the
// answer (after CNAMEs), or a negative result, with its expiry.
type answer struct {
	rrs      []dns.RR
	nxdomain bool // NXDOMAIN; empty rrs without it is NODATA
	tooLarge bool // over MaxAnswerRecords or MaxAnswerBytes: a temporary failure
	expires  time.Time
	server   string
	size     int64 // estimated memory, for CacheBytes
}

// Per-record and per-answer overhead in answer.size: the Go structures
// around the wire data (the RR header with its name string, slices).
const (
	rrOverhead     = 96
	answerOverhead = 160
)

// estimateSize is the memory an answer is taken to hold: its records' wire
// lengths (uncompressed) plus the structures around them.
func (a *answer) estimateSize(qname string) int64 {
	n := int64(answerOverhead + len(qname) + len(a.server))
	for _, rr := range a.rrs {
		n += int64(dns.Len(rr) + rrOverhead)
	}
	return n
}

// New returns a Resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		servers:  slices.Clone(cfg.Servers),
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		log:      cfg.Logger,
		observe:  cfg.Observe,
		now:      time.Now,
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.observe == nil {
		r.observe = func(Event) {}
	}
	if len(r.servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("resolver: read /etc/resolv.conf: %w", err)
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
		if len(r.servers) == 0 {
			return nil, errors.New("resolver: no nameserver in /etc/resolv.conf")
		}
	}
	for _, s := range r.servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("resolver: server %q: want host:port: %w", s, err)
		}
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	r.maxBytes = cfg.CacheBytes
	if r.maxBytes <= 0 {
		r.maxBytes = DefaultCacheBytes
	}
	if size > 0 {
		c, err := lru.NewWithEvict(size, func(_ cacheKey, a *answer) { r.cacheBytes.Add(-a.size) })
		if err != nil {
			return nil, fmt.Errorf("resolver: cache: %w", err)
		}
		r.cache = c
	}
	return r, nil
}

// cacheAdd caches a, replacing an older answer to the same question, and
// then evicts the least recently used answers until the cache holds at
// most maxBytes. An answer is counted once when it goes in and once when
// it leaves (the eviction callback), never replaced in place, so the count
// stays exact under concurrent use.
func (r *Resolver) cacheAdd(key cacheKey, a *answer) {
	for {
		if _, found, _ := r.cache.PeekOrAdd(key, a); !found {
			break
		}
		r.cache.Remove(key)
	}
	r.cacheBytes.Add(a.size)
	for r.cacheBytes.Load() > r.maxBytes {
		if _, _, ok := r.cache.RemoveOldest(); !ok {
			break
		}
	}
}

// CacheBytes returns the estimated memory the cache holds now.
func (r *Resolver) CacheBytes() int64 { return r.cacheBytes.Load() }

// LookupTXT returns the TXT records of name, each record's character-strings
// joined into one string (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a.rrs))
	for _, rr := range a.rrs {
		if t, ok := rr.(*dns.TXT); ok {
			var b strings.Builder
			for _, s := range t.Txt {
				b.WriteString(unescape(s))
			}
			out = append(out, b.String())
		}
	}
	return out, nil
}

// LookupMX returns the MX records of name, sorted by preference. Hosts keep
// their trailing dot, as with net.Resolver.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	a, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(a.rrs))
	for _, rr := range a.rrs {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host, asked in parallel.
// It is not-found only when both are. If either question fails temporarily
// the lookup fails temporarily, even if the other one had addresses: a
// partial address list could turn an SPF pass into a fail.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var (
		wg         sync.WaitGroup
		a4, a6     *answer
		err4, err6 error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a6, err6 = r.lookup(ctx, host, dns.TypeAAAA)
	}()
	a4, err4 = r.lookup(ctx, host, dns.TypeA)
	wg.Wait()
	for _, err := range []error{err4, err6} {
		if err != nil && !dnserr.IsNotFound(err) {
			return nil, err
		}
	}
	if err4 != nil && err6 != nil {
		return nil, err4
	}
	var out []net.IPAddr
	for _, a := range []*answer{a4, a6} {
		if a == nil {
			continue
		}
		for _, rr := range a.rrs {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: v.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: v.AAAA})
			}
		}
	}
	return out, nil
}

// LookupAddr returns the PTR names of the IP address addr (in-addr.arpa or
// ip6.arpa). Names keep their trailing dot, as with net.Resolver.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rev, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	a, lerr := r.lookup(ctx, rev, dns.TypePTR)
	if lerr != nil {
		return nil, lerr
	}
	out := make([]string, 0, len(a.rrs))
	for _, rr := range a.rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}

// DomainExists reports whether name exists in the DNS: it is false only on
// NXDOMAIN. A name without A records (NODATA) exists. It asks for A records
// and shares their cache entry.
func (r *Resolver) DomainExists(ctx context.Context, name string) (bool, error) {
	a, err := r.lookup(ctx, name, dns.TypeA)
	if a != nil { // a definite answer: data, NODATA or NXDOMAIN
		return !a.nxdomain, nil
	}
	return false, err
}

// Error texts of the *net.DNSError values we return.
const (
	errNXDomain = "no such host" // same text as net.Resolver
	errNoData   = "no such record"
	errServFail = "server misbehaving" // same text as net.Resolver
	errTimeout  = "i/o timeout"
)

// lookup answers one question from the cache or the network. A non-nil
// error is always a bare *net.DNSError. For a negative answer (NXDOMAIN,
// NODATA) both the answer and a not-found error are returned.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	qname, ok := presentation(name)
	if !ok {
		// Like net.Resolver: a name that cannot be asked does not exist.
		a := &answer{nxdomain: true}
		return a, a.err(name)
	}
	key := cacheKey{qname, qtype}
	if r.cache != nil {
		if a, ok := r.cache.Get(key); ok {
			if r.now().Before(a.expires) {
				r.observe(Event{Name: qname, Type: dns.TypeToString[qtype], CacheHit: true, Outcome: a.outcome()})
				if a.tooLarge {
					return nil, a.tooLargeErr(name)
				}
				return a, a.err(name)
			}
			r.cache.Remove(key)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(name, err)
	}
	// The shared query runs detached from any one caller's context, with
	// its own budget, so a caller that gives up does not fail the others.
	ch := r.group.DoChan(fmt.Sprintf("%d/%s", qtype, qname), func() (any, error) {
		return r.resolve(context.WithoutCancel(ctx), qname, qtype)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			shared, ok := res.Err.(*net.DNSError)
			if !ok {
				shared = &net.DNSError{Err: res.Err.Error(), IsTemporary: true}
			}
			de := *shared // copy: waiters share the value
			de.Name = name
			return nil, &de
		}
		a := res.Val.(*answer)
		return a, a.err(name)
	case <-ctx.Done():
		return nil, ctxError(name, ctx.Err())
	}
}

// netErrorText says what went wrong talking to a server, without the
// socket addresses of the error's text.
func netErrorText(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "DNS server refused the connection"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "DNS server unreachable"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "DNS server closed the connection"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return "network error talking to the DNS server"
	}
	return err.Error()
}

func ctxError(name string, err error) *net.DNSError {
	de := &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
	if errors.Is(err, context.DeadlineExceeded) {
		de.Err, de.IsTimeout = errTimeout, true
	}
	return de
}

func (a *answer) outcome() Outcome {
	switch {
	case a.tooLarge:
		return OutcomeTooLarge
	case a.nxdomain:
		return OutcomeNXDomain
	case len(a.rrs) == 0:
		return OutcomeNoData
	}
	return OutcomeOK
}

// tooLargeErr is the temporary failure of an answer over the caps.
func (a *answer) tooLargeErr(name string) error {
	return &net.DNSError{Err: fmt.Sprintf("answer too large (over %d records or %d bytes)", MaxAnswerRecords, MaxAnswerBytes),
		Name: name, Server: a.server, IsTemporary: true}
}

// err returns the not-found error of a negative answer, or nil.
func (a *answer) err(name string) error {
	switch {
	case a.nxdomain:
		return &net.DNSError{Err: errNXDomain, Name: name, Server: a.server, IsNotFound: true}
	case len(a.rrs) == 0:
		return &net.DNSError{Err: errNoData, Name: name, Server: a.server, IsNotFound: true}
	}
	return nil
}

// resolve asks the servers, Attempts rounds, starting at a rotating server.
// A definite answer (data, NXDOMAIN, NODATA) ends the search and is cached;
// errors move on to the next server and are not cached.
func (r *Resolver) resolve(ctx context.Context, qname string, qtype uint16) (*answer, error) {
	start := int(r.next.Add(1))
	var lastErr *net.DNSError
	for i := range r.attempts * len(r.servers) {
		server := r.servers[(start+i)%len(r.servers)]
		a, err := r.exchange(ctx, server, qname, qtype)
		if err == nil {
			if r.cache != nil {
				r.cacheAdd(cacheKey{qname, qtype}, a)
			}
			if a.tooLarge {
				return nil, a.tooLargeErr(qname)
			}
			return a, nil
		}
		lastErr = err
	}
	if lastErr == nil { // no servers or no attempts; New prevents this
		return nil, &net.DNSError{Err: "no server to ask", Name: qname, IsTemporary: true}
	}
	return nil, lastErr
}

// exchange sends one question to one server, over UDP and then over TCP if
// the UDP answer was truncated.
func (r *Resolver) exchange(ctx context.Context, server, qname string, qtype uint16) (a *answer, derr *net.DNSError) {
	begin := time.Now()
	outcome := OutcomeOK
	defer func() {
		d := time.Since(begin)
		r.observe(Event{Name: qname, Type: dns.TypeToString[qtype], Outcome: outcome, Server: server, Duration: d})
		if r.log != nil {
			r.log.LogAttrs(ctx, slog.LevelDebug, "dns query", slog.String("name", qname),
				slog.String("type", dns.TypeToString[qtype]), slog.String("server", server),
				slog.String("outcome", string(outcome)), slog.Duration("duration", d))
		}
	}()

	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.Id = uint16(rand.Uint32()) // RFC 5452 §9.2: unpredictable ids
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)

	reply, err := r.send(ctx, "udp", server, m)
	if err == nil && reply.Truncated {
		reply, err = r.send(ctx, "tcp", server, m)
		// Truncated over TCP too (e.g. a record set larger than a DNS
		// message can hold): the records are incomplete, and a partial
		// set can turn into a wrong answer (a missing SPF record read as
		// "none"). Treat it as a server failure.
		if err == nil && reply.Truncated {
			err = errors.New("answer truncated over TCP")
		}
	}
	if err != nil {
		de := &net.DNSError{Err: err.Error(), Name: qname, Server: server, IsTemporary: true}
		outcome = OutcomeNetError
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			de.Err, de.IsTimeout = errTimeout, true
			outcome = OutcomeTimeout
		} else {
			// The socket error names our own local address and port
			// ("read udp 127.0.0.1:41495->…"): meaningless in a header
			// or a log line a postmaster reads (issue 19).
			de.Err = netErrorText(err)
		}
		return nil, de
	}

	switch reply.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeServerFailure:
		outcome = OutcomeServFail
		return nil, &net.DNSError{Err: errServFail, Name: qname, Server: server, IsTemporary: true}
	case dns.RcodeRefused:
		outcome = OutcomeRefused
		return nil, &net.DNSError{Err: "query refused", Name: qname, Server: server, IsTemporary: true}
	default: // FORMERR, NOTIMP and others: this server can't answer; temporary
		outcome = OutcomeRcode
		return nil, &net.DNSError{Err: "server answered " + dns.RcodeToString[reply.Rcode], Name: qname, Server: server, IsTemporary: true}
	}

	now := r.now()
	a = &answer{server: server}
	rrs, ttl, ok := finalRecords(reply, qname, qtype)
	if !ok {
		// What a recursive resolver answers for such a chain (BIND and
		// Unbound: SERVFAIL): a temporary error, so SPF, DKIM and DMARC
		// report temperror, never none.
		outcome = OutcomeServFail
		return nil, &net.DNSError{Err: fmt.Sprintf("CNAME chain longer than %d or a loop", maxCNAMEChain),
			Name: qname, Server: server, IsTemporary: true}
	}
	switch {
	case reply.Rcode == dns.RcodeNameError:
		a.nxdomain = true
		outcome = OutcomeNXDomain
		a.expires = now.Add(negativeTTL(reply))
	case len(rrs) == 0:
		outcome = OutcomeNoData
		a.expires = now.Add(negativeTTL(reply))
	default:
		a.rrs = rrs
		a.expires = now.Add(min(ttl, maxTTL))
	}
	a.size = a.estimateSize(qname)
	if len(a.rrs) > MaxAnswerRecords || a.size > MaxAnswerBytes {
		// Nothing of it is kept: the failure is cached, small.
		outcome = OutcomeTooLarge
		a.rrs, a.tooLarge = nil, true
		a.expires = now.Add(min(tooLargeTTL, max(ttl, minNegTTL)))
		a.size = a.estimateSize(qname)
	}
	return a, nil
}

// send does one exchange and checks that the reply answers our question
// (the id is checked by miekg/dns).
func (r *Resolver) send(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsSize}
	reply, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, err
	}
	if len(reply.Question) != 1 || reply.Question[0].Qtype != m.Question[0].Qtype ||
		reply.Question[0].Qclass != m.Question[0].Qclass ||
		!sameName(reply.Question[0].Name, m.Question[0].Name) {
		return nil, fmt.Errorf("reply does not match the question %s", m.Question[0].String())
	}
	return reply, nil
}

// finalRecords follows the CNAME chain from qname through the answer section
// and returns the records of type qtype at its end, with the smallest TTL
// seen along the chain. ok is false for a chain longer than maxCNAMEChain
// (or a loop): its end is unknown, so the caller must not read it as "no
// such record" (issue #15 item 10).
func finalRecords(m *dns.Msg, qname string, qtype uint16) (_ []dns.RR, _ time.Duration, ok bool) {
	name := qname
	ttl := uint32(1<<31 - 1)
	for hops := range maxCNAMEChain + 1 {
		var out []dns.RR
		var next string
		for _, rr := range m.Answer {
			h := rr.Header()
			if !sameName(h.Name, name) {
				continue
			}
			if h.Rrtype == qtype {
				out = append(out, rr)
				ttl = min(ttl, h.Ttl)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				next = c.Target
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(out) == 0 && hops == maxCNAMEChain {
			// maxCNAMEChain CNAMEs followed and nothing at the end: a
			// server that stops following there (as ours and many
			// authoritative ones do) leaves the end unknown.
			return nil, 0, false
		}
		if len(out) > 0 || next == "" {
			return out, time.Duration(ttl) * time.Second, true
		}
		name = next
	}
	return nil, 0, false
}

// negativeTTL is how long a negative answer may be cached: RFC 2308 §5,
// the smaller of the SOA's TTL and its MINIMUM field, clamped.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(max(d, minNegTTL), maxNegTTL)
		}
	}
	return defaultNegTTL
}

// presentation turns a name as callers give it (raw octets, labels
// separated by dots, trailing dot optional) into the lowercase, absolute
// master-file form miekg/dns expects, escaping every octet that is not a
// printable ASCII character or that is special in that form as \DDD.
// Callers never pass escapes: a backslash is an octet of the name. It
// reports false for names that cannot be asked: empty labels, a label over
// 63 octets or a name over 253 octets (RFC 1035 §2.3.4).
func presentation(name string) (string, bool) {
	if canonical(name) {
		return name, true // the common case: no allocation
	}
	if abs := name + "."; canonical(abs) {
		return abs, true // as common: a relative name, made absolute
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(name) + 1)
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if label == 0 {
				return "", false
			}
			label = 0
			b.WriteByte('.')
			continue
		}
		if label++; label > 63 {
			return "", false
		}
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c <= ' ' || c > '~' || strings.IndexByte(`\"();@$`, c) >= 0:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('.')
	return b.String(), true
}

// plainByte marks the bytes a name may hold in presentation form without
// change: lowercase letters, digits, '-' and '_'.
var plainByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['_'] = true, true
	return t
}()

// canonical reports whether name is already what presentation would return
// for it: absolute, lowercase, no byte needing an escape, labels of 1 to 63
// bytes, at most 253 bytes before the root dot.
func canonical(name string) bool {
	if len(name) < 2 || len(name) > 254 || name[len(name)-1] != '.' {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		if !plainByte[c] {
			return false
		}
		if label++; label > 63 {
			return false
		}
	}
	return true
}

// sameName compares two names in master-file form by their wire form,
// ignoring ASCII case (RFC 4343), so escapes written differently match.
func sameName(a, b string) bool {
	wa, wb := make([]byte, 256), make([]byte, 256)
	na, errA := dns.PackDomainName(a, wa, 0, nil, false)
	nb, errB := dns.PackDomainName(b, wb, 0, nil, false)
	if errA != nil || errB != nil || na != nb {
		return false
	}
	for i := range na {
		x, y := wa[i], wb[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// unescape turns one TXT character-string as miekg/dns presents it (with
// \" \\ and \DDD escapes) back into its raw bytes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
