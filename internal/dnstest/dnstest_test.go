package dnstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testZone = `
$TTL 300
example.com.        IN SOA ns.example.com. host.example.com. 1 3600 600 86400 120
example.com.        IN TXT "v=spf1 -all"
a.example.com.      IN A 192.0.2.1
a.example.com.      IN AAAA 2001:db8::1
www.example.com.    IN CNAME a.example.com.
loop.example.com.   IN CNAME loop.example.com.
x.y.deep.example.com. IN TXT "deep"
EXAMPLE.org.        600 IN MX 10 mx.example.org.
`

func exchange(t *testing.T, s *Server, net, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: net, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("exchange %s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s := New(t, testZone)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
	}{
		{"example.com.", dns.TypeTXT, dns.RcodeSuccess, 1, false},
		{"A.Example.COM.", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"a.example.com.", dns.TypeAAAA, dns.RcodeSuccess, 1, false},
		{"a.example.com.", dns.TypeTXT, dns.RcodeSuccess, 0, true},      // NODATA
		{"nope.example.com.", dns.TypeA, dns.RcodeNameError, 0, true},   // NXDOMAIN
		{"y.deep.example.com.", dns.TypeTXT, dns.RcodeSuccess, 0, true}, // empty non-terminal
		{"www.example.com.", dns.TypeA, dns.RcodeSuccess, 2, false},     // CNAME + A
		{"www.example.com.", dns.TypeCNAME, dns.RcodeSuccess, 1, false}, // the CNAME itself
		{"loop.example.com.", dns.TypeA, dns.RcodeSuccess, maxCNAMEChain, false},
		{"example.org.", dns.TypeMX, dns.RcodeSuccess, 1, false},
		{"nothing.test.", dns.TypeA, dns.RcodeNameError, 0, false}, // no SOA above
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.name, dns.TypeToString[tt.qtype]), func(t *testing.T) {
			r := exchange(t, s, "udp", tt.name, tt.qtype, 0)
			if r.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if !r.Authoritative {
				t.Error("AA bit not set")
			}
			if len(r.Answer) != tt.answers {
				t.Errorf("answers = %d (%v), want %d", len(r.Answer), r.Answer, tt.answers)
			}
			if gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; gotSOA != tt.soa {
				t.Errorf("SOA in authority = %v, want %v (%v)", gotSOA, tt.soa, r.Ns)
			}
		})
	}
}

func TestTXTValuesAndTTL(t *testing.T) {
	s := New(t, testZone)
	r := exchange(t, s, "udp", "example.com.", dns.TypeTXT, 0)
	txt, ok := r.Answer[0].(*dns.TXT)
	if !ok || strings.Join(txt.Txt, "") != "v=spf1 -all" || txt.Hdr.Ttl != 300 {
		t.Fatalf("answer = %v", r.Answer)
	}
	r = exchange(t, s, "udp", "example.org.", dns.TypeMX, 0)
	if r.Answer[0].Header().Ttl != 600 {
		t.Errorf("MX TTL = %d, want 600", r.Answer[0].Header().Ttl)
	}
}

func TestTruncation(t *testing.T) {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "big.example.com. 300 IN TXT \"record number %02d padding padding padding padding\"\n", i)
	}
	s := New(t, b.String())
	tests := []struct {
		net       string
		edns      uint16
		truncated bool
	}{
		{"udp", 0, true},
		{"udp", 1232, true},
		{"udp", 4096, false},
		{"tcp", 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.net, tt.edns), func(t *testing.T) {
			r := exchange(t, s, tt.net, "big.example.com.", dns.TypeTXT, tt.edns)
			if r.Truncated != tt.truncated {
				t.Fatalf("TC = %v, want %v", r.Truncated, tt.truncated)
			}
			if want := 40; !tt.truncated && len(r.Answer) != want {
				t.Errorf("answers = %d, want %d", len(r.Answer), want)
			}
			if tt.edns > 0 && r.IsEdns0() == nil {
				t.Error("no OPT record in the reply to an EDNS0 query")
			}
		})
	}
}

func TestFailDropStop(t *testing.T) {
	s := New(t, testZone)
	s.Fail("a.example.com", dns.RcodeServerFailure)
	s.Fail("example.com.", dns.RcodeRefused)
	if r := exchange(t, s, "udp", "a.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode = %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, s, "tcp", "EXAMPLE.com.", dns.TypeTXT, 0); r.Rcode != dns.RcodeRefused {
		t.Errorf("rcode = %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}

	s.Drop("www.example.com.")
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg).SetQuestion("www.example.com.", dns.TypeA)
	if _, _, err := c.Exchange(m, s.Addr()); err == nil {
		t.Error("dropped name got an answer")
	}
	before := s.Queries()
	if before != 3 {
		t.Errorf("Queries() = %d, want 3", before)
	}

	s.Stop()
	s.Stop() // idempotent
	m = new(dns.Msg).SetQuestion("example.org.", dns.TypeMX)
	if _, _, err := c.Exchange(m, s.Addr()); err == nil {
		t.Error("stopped server answered")
	}
}

func TestSetZone(t *testing.T) {
	s := New(t, testZone)
	err := s.SetZone("ok.test. 60 IN A 192.0.2.9\nbad.test. 60 IN A not-an-ip\n")
	if err == nil || !strings.Contains(err.Error(), "line: 2:") {
		t.Fatalf("SetZone error = %v, want a parse error naming line 2", err)
	}
	// The old zone is still served.
	if r := exchange(t, s, "udp", "a.example.com.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Fatalf("old zone lost after a failed SetZone: %v", r)
	}
	if err := s.SetZone("new.test. 60 IN A 192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, s, "udp", "a.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("old name after SetZone: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, s, "udp", "new.test.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("new name after SetZone: %v", r)
	}
}

func TestLongTXTSplit(t *testing.T) {
	long := strings.Repeat("a", 300)
	s := New(t, fmt.Sprintf("long.test. 60 IN TXT %q %q\n", long[:255], long[255:]))
	r := exchange(t, s, "tcp", "long.test.", dns.TypeTXT, 0)
	txt := r.Answer[0].(*dns.TXT)
	if len(txt.Txt) != 2 || strings.Join(txt.Txt, "") != long {
		t.Errorf("TXT strings = %d, joined length %d", len(txt.Txt), len(strings.Join(txt.Txt, "")))
	}
}
