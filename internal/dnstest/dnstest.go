// Package dnstest runs a small authoritative DNS server on 127.0.0.1 for tests.
//
// The zone is given as RFC 1035 master-file text with absolute names. The
// server answers over UDP and TCP on one random port, sets the AA bit, follows
// CNAMEs inside the zone, truncates (TC=1) UDP answers larger than the client's
// EDNS0 buffer (512 bytes without EDNS0) so that clients retry over TCP, and
// can be told to fail, drop or stop answering to exercise error paths.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds CNAME following inside the zone (loops end here).
const maxCNAMEChain = 8

// Server is an authoritative DNS server for one test. Its methods are safe
// for concurrent use.
type Server struct {
	addr    string
	udp     *dns.Server
	tcp     *dns.Server
	queries atomic.Int64
	stopped atomic.Bool
	stopMu  sync.Once

	mu   sync.RWMutex
	zone *zone
	fail map[string]int
	drop map[string]bool
}

// zone is the parsed zone: records by owner name (lowercase, absolute) and
// the set of all names that exist, including empty non-terminals (RFC 8020:
// a name with names below it exists even without records of its own).
type zone struct {
	records map[string][]dns.RR
	exists  map[string]bool
}

// New parses zone and starts a server on 127.0.0.1. A zone syntax error
// fails the test. The server is stopped by t.Cleanup.
func New(t testing.TB, zone string) *Server {
	t.Helper()
	z, err := parseZone(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s := &Server{zone: z, fail: map[string]int{}, drop: map[string]bool{}}
	if err := s.start(); err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// start listens on UDP and TCP with the same random port. A port free for
// UDP may be taken for TCP, so a few ports are tried.
func (s *Server) start() error {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen udp: %w", err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = addr
		h := dns.HandlerFunc(s.serveDNS)
		s.udp = &dns.Server{PacketConn: pc, Handler: h}
		s.tcp = &dns.Server{Listener: l, Handler: h}
		var wg sync.WaitGroup
		wg.Add(2)
		s.udp.NotifyStartedFunc = wg.Done
		s.tcp.NotifyStartedFunc = wg.Done
		go func() { _ = s.udp.ActivateAndServe() }()
		go func() { _ = s.tcp.ActivateAndServe() }()
		wg.Wait()
		return nil
	}
	return fmt.Errorf("listen tcp on the udp port: %w", lastErr)
}

// Addr returns the server address as "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// SetZone replaces the zone. On a syntax error the old zone stays.
func (s *Server) SetZone(zone string) error {
	z, err := parseZone(zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.zone = z
	s.mu.Unlock()
	return nil
}

// Fail makes every query for name answer with rcode (e.g. dns.RcodeServerFailure).
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	s.fail[canonical(name)] = rcode
	s.mu.Unlock()
}

// Drop makes the server never answer queries for name, so clients time out.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	s.drop[canonical(name)] = true
	s.mu.Unlock()
}

// Stop closes both listeners: the server stops answering at all. Clients
// see a refused connection or a timeout. Stop may be called more than once.
func (s *Server) Stop() {
	s.stopMu.Do(func() {
		s.stopped.Store(true)
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
}

// Queries returns the number of queries received so far, over both transports.
func (s *Server) Queries() int64 { return s.queries.Load() }

// canonical returns the lowercase absolute form of name with escapes written
// the one way miekg/dns writes them (a round trip through the wire form), so
// that "a\032b" in the zone matches the "a\ b" of a parsed query.
func canonical(name string) string {
	name = dns.Fqdn(name)
	buf := make([]byte, 256)
	if n, err := dns.PackDomainName(name, buf, 0, nil, false); err == nil {
		if s, _, err := dns.UnpackDomainName(buf[:n], 0); err == nil {
			name = s
		}
	}
	return strings.ToLower(name)
}

func parseZone(text string) (*zone, error) {
	z := &zone{records: map[string][]dns.RR{}, exists: map[string]bool{".": true}}
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := canonical(rr.Header().Name)
		z.records[name] = append(z.records[name], rr)
		// The owner and every name above it exist.
		for n := name; ; {
			z.exists[n] = true
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
	}
	if err := zp.Err(); err != nil {
		// miekg's *dns.ParseError text carries the file name, line and column.
		return nil, fmt.Errorf("parse zone: %w", err)
	}
	return z, nil
}

// soaFor returns the closest SOA at or above name, if the zone has one, for
// the authority section of negative answers (RFC 2308 §3).
func (z *zone) soaFor(name string) dns.RR {
	for n := name; ; {
		for _, rr := range z.records[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr
			}
		}
		i, end := dns.NextLabel(n, 0)
		if end {
			return nil
		}
		n = n[i:]
	}
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	if s.stopped.Load() {
		return
	}
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	s.mu.RLock()
	z, dropped := s.zone, s.drop[name]
	rcode, failing := s.fail[name]
	s.mu.RUnlock()
	if dropped {
		return
	}
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if failing {
		m.Rcode = rcode
		_ = s.write(w, req, m)
		return
	}
	s.answer(z, m, name, q.Qtype)
	_ = s.write(w, req, m)
}

// answer fills m for a question about name/qtype from the zone.
func (s *Server) answer(z *zone, m *dns.Msg, name string, qtype uint16) {
	for range maxCNAMEChain {
		rrs := z.records[name]
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if t == qtype || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			if !found && !z.exists[name] {
				m.Rcode = dns.RcodeNameError
			}
			if !found {
				if soa := z.soaFor(name); soa != nil {
					m.Ns = append(m.Ns, dns.Copy(soa))
				}
			}
			return
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = canonical(cname.Target)
	}
}

// write sends m, truncated to the client's UDP buffer size when needed.
func (s *Server) write(w dns.ResponseWriter, req, m *dns.Msg) error {
	opt := req.IsEdns0()
	size := dns.MinMsgSize // RFC 1035 §4.2.1: 512 bytes without EDNS0
	if opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP && m.Len() > size {
		// RFC 2181 §9: an answer that does not fit sets TC; the client
		// retries over TCP. Drop whole sections, keep the question.
		m.Truncated = true
		m.Answer, m.Ns = nil, nil
		m.Extra = nil
		if opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
	}
	if err := w.WriteMsg(m); err != nil {
		return fmt.Errorf("dnstest: write: %w", err)
	}
	return nil
}
