package engine_test

// DNS faults through a DNS server that misbehaves on purpose: raw UDP and
// TCP sockets on 127.0.0.1, answers built by hand, so that it can do what
// internal/dnstest never does (answer late, with a wrong id, a wrong
// question, garbage, truncated, or more than 64 KB). Each fault is put on
// the SPF record, the DKIM key or the DMARC record of a message that
// passes all three when DNS behaves, and goes through the real resolver
// and the engine: the check concerned must say temperror, and the others
// must keep their pass — never a wrong pass or a wrong fail.

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

const faultTimeout = 300 * time.Millisecond // the resolver's per-attempt timeout

// Fault modes.
const (
	fTimeout      = "timeout"        // never answer
	fServfail     = "servfail"       // rcode SERVFAIL
	fRefused      = "refused"        // rcode REFUSED
	fFormerr      = "formerr"        // rcode FORMERR
	fLate         = "late"           // the right answer, after the timeout
	fWrongID      = "wrong-id"       // an answer with another id, nothing else
	fForgedFirst  = "forged-first"   // a forged answer with another id, then the real one
	fWrongName    = "wrong-question" // right id, answer for another name
	fGarbage      = "garbage"        // random bytes
	fShort        = "short"          // a reply cut in the middle of a record
	fTCPFallback  = "tc-tcp"         // UDP truncated (TC, no records); TCP answers in full
	fTCPBroken    = "tc-tcp-closed"  // UDP truncated; TCP closes without an answer
	fTCPTruncated = "tc-tcp-tc"      // UDP and TCP both truncated, TCP with part of the records
	fHuge         = "over-64k"       // the record set is over 64 KB: UDP TC, TCP a full 64 KB message with TC
)

type faultServer struct {
	udp  net.PacketConn
	tcp  net.Listener
	txt  map[string][]string // owner (lowercase, absolute) → TXT records
	a    map[string]net.IP
	mu   sync.Mutex
	mode map[string]string // owner → fault mode
	wg   sync.WaitGroup
	stop chan struct{}
}

func newFaultServer(t *testing.T, txt map[string][]string) *faultServer {
	t.Helper()
	s := &faultServer{txt: txt, a: map[string]net.IP{}, mode: map[string]string{}, stop: make(chan struct{})}
	// One port for UDP and TCP: the TCP side of a random UDP port may be
	// taken, so try a few.
	for i := 0; ; i++ {
		var err error
		if s.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if s.tcp, err = net.Listen("tcp", s.udp.LocalAddr().String()); err == nil {
			break
		}
		s.udp.Close()
		if i == 50 {
			t.Fatal(err)
		}
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(func() {
		close(s.stop)
		s.udp.Close()
		s.tcp.Close()
		s.wg.Wait()
	})
	return s
}

func (s *faultServer) addr() string { return s.udp.LocalAddr().String() }

func (s *faultServer) set(owner, mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode[dns.Fqdn(strings.ToLower(owner))] = mode
}

func (s *faultServer) modeOf(q *dns.Msg) string {
	if len(q.Question) != 1 {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode[strings.ToLower(q.Question[0].Name)]
}

// reply is the honest answer: the records, NXDOMAIN or NODATA.
func (s *faultServer) reply(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	qn := q.Question[0]
	name := strings.ToLower(qn.Name)
	hdr := dns.RR_Header{Name: qn.Name, Class: dns.ClassINET, Ttl: 300}
	txts, hasTXT := s.txt[name]
	ip, hasA := s.a[name]
	switch {
	case qn.Qtype == dns.TypeTXT && hasTXT:
		hdr.Rrtype = dns.TypeTXT
		for _, t := range txts {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: splitTXT(t)})
		}
	case qn.Qtype == dns.TypeA && hasA:
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
	case !hasTXT && !hasA:
		m.Rcode = dns.RcodeNameError
	}
	return m
}

func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

func pack(t *dns.Msg) []byte {
	b, err := t.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// answers returns the packets to send for q over the given transport,
// and how long to wait before sending them.
func (s *faultServer) answers(q *dns.Msg, tcp bool) (pkts [][]byte, delay time.Duration) {
	m := s.reply(q)
	switch mode := s.modeOf(q); mode {
	case fTimeout:
		return nil, 0
	case fServfail, fRefused, fFormerr:
		m.Answer = nil
		m.Rcode = map[string]int{fServfail: dns.RcodeServerFailure, fRefused: dns.RcodeRefused, fFormerr: dns.RcodeFormatError}[mode]
	case fLate:
		return [][]byte{pack(m)}, 2 * faultTimeout
	case fWrongID:
		m.Id++
	case fForgedFirst:
		f := m.Copy()
		f.Id++
		for _, rr := range f.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				txt.Txt = []string{forgedTXT(strings.Join(txt.Txt, ""))}
			}
		}
		return [][]byte{pack(f), pack(m)}, 0
	case fWrongName:
		m.Question[0].Name = "evil." + m.Question[0].Name
		for _, rr := range m.Answer {
			rr.Header().Name = m.Question[0].Name
		}
	case fGarbage:
		g := []byte("\x13\x37 this is not a DNS message at all")
		binary.BigEndian.PutUint16(g, q.Id) // even with the right id
		return [][]byte{g}, 0
	case fShort:
		b := pack(m)
		return [][]byte{b[:len(b)-7]}, 0
	case fTCPFallback, fTCPBroken, fTCPTruncated:
		if !tcp {
			m.Answer, m.Truncated = nil, true
			break
		}
		switch mode {
		case fTCPBroken:
			return nil, 0
		case fTCPTruncated:
			if len(m.Answer) > 1 {
				m.Answer = m.Answer[:1]
			}
			m.Truncated = true
		}
	case fHuge:
		if !tcp {
			m.Answer, m.Truncated = nil, true
			break
		}
		// More TXT records than fit in 65535 bytes: send what fits, with
		// TC, as a server must. The real record comes last and is cut.
		real := m.Answer
		hdr := dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}
		var filler []dns.RR
		for i := 0; i < 300; i++ {
			filler = append(filler, &dns.TXT{Hdr: hdr, Txt: []string{strings.Repeat(string(rune('a'+i%26)), 250)}})
		}
		m.Answer = append(filler, real...)
		for m.Len() > 65535 {
			m.Answer = m.Answer[:len(m.Answer)-1]
			m.Truncated = true
		}
	}
	return [][]byte{pack(m)}, 0
}

// forgedTXT turns a record into its opposite, for the forged answer.
func forgedTXT(real string) string {
	switch {
	case strings.HasPrefix(real, "v=spf1"):
		return "v=spf1 -all"
	case strings.HasPrefix(real, "v=DMARC1"):
		return "v=DMARC1; p=reject; adkim=s; aspf=s; sp=reject"
	default:
		return "v=DKIM1; k=rsa; p=" // revoked
	}
}

func (s *faultServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil {
			continue
		}
		pkts, delay := s.answers(q, false)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if !s.sleep(delay) {
				return
			}
			for _, p := range pkts {
				s.udp.WriteTo(p, from) //nolint:errcheck
			}
		}()
	}
}

func (s *faultServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(b) != nil {
				return
			}
			pkts, delay := s.answers(q, true)
			if !s.sleep(delay) {
				return
			}
			for _, p := range pkts {
				c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(p)))) //nolint:errcheck
				c.Write(p)                                                  //nolint:errcheck
			}
		}()
	}
}

func (s *faultServer) sleep(d time.Duration) bool {
	if d == 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-s.stop:
		return false
	}
}

// signedFixture is a message signed by dkimpy for example.org and the key
// record, from pkg/dkimverify/testdata.
func signedFixture(t *testing.T) (fields [][2]string, body []byte, key string) {
	t.Helper()
	raw, err := os.ReadFile("../dkimverify/testdata/rsa2048-relaxed-simple.eml")
	if err != nil {
		t.Fatal(err)
	}
	zone, err := os.ReadFile("../dkimverify/testdata/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(zone), "\n") {
		if strings.HasPrefix(line, "rsa2048._domainkey.example.org.") {
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatal(err)
			}
			key = strings.Join(rr.(*dns.TXT).Txt, "")
		}
	}
	head, b, _ := strings.Cut(string(raw), "\r\n\r\n")
	for _, l := range strings.SplitAfter(head+"\r\n", "\r\n") {
		switch {
		case l == "":
		case l[0] == ' ' || l[0] == '\t':
			fields[len(fields)-1][1] += "\r\n" + strings.TrimSuffix(l, "\r\n") // folds as the milter hands them
		default:
			n, v, _ := strings.Cut(strings.TrimSuffix(l, "\r\n"), ":")
			fields = append(fields, [2]string{n, v})
		}
	}
	return fields, []byte(b), key
}

type faultResult struct {
	spf   spfcheck.Status
	dkim  dkimverify.Status
	dmarc dmarc.Status
}

func runFaultCase(t *testing.T, owner, mode string) faultResult {
	fields, body, key := signedFixture(t)
	s := newFaultServer(t, map[string][]string{
		"example.org.":                    {"some-site-verification=abc", "v=spf1 ip4:192.0.2.0/24 -all"},
		"_dmarc.example.org.":             {"v=DMARC1; p=none; adkim=r; aspf=r"},
		"rsa2048._domainkey.example.org.": {key},
	})
	if owner != "" {
		s.set(owner, mode)
	}
	r, err := resolver.New(resolver.Config{Servers: []string{s.addr()}, Timeout: faultTimeout, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	o := engine.DefaultOptions()
	o.CheckHELO = false
	o.MessageBudget = 10 * time.Second
	e := engine.New(r, o)
	m := e.Begin(context.Background(), engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mx.example.org", MailFrom: "alice@example.org"})
	for _, f := range fields {
		m.Header(f[0], f[1])
	}
	m.EndOfHeaders()
	m.Body(body)
	res := m.Finish(context.Background())
	fr := faultResult{spf: res.SPF.Status, dmarc: res.DMARC.Status}
	if len(res.DKIM) == 1 {
		fr.dkim = res.DKIM[0].Status
	}
	t.Logf("spf=%s (%s) dkim=%s dmarc=%s (%s)", fr.spf, res.SPF.Reason, fr.dkim, fr.dmarc, res.DMARC.Reason)
	return fr
}

var allPass = faultResult{spf: spfcheck.StatusPass, dkim: dkimverify.StatusPass, dmarc: dmarc.StatusPass}

func TestDNSFaultsBaseline(t *testing.T) {
	if got := runFaultCase(t, "", ""); got != allPass {
		t.Fatalf("healthy DNS: %+v, want all pass", got)
	}
}

// Faults that lose the answer give temperror for the check concerned; the
// others keep their pass. Faults that still deliver the true answer (TCP
// fallback, a forged reply with the wrong id before the real one) give the
// true result.
func TestDNSFaults(t *testing.T) {
	owners := []struct {
		name  string
		owner string
		lost  func(faultResult) faultResult
	}{
		{"spf", "example.org.", func(r faultResult) faultResult { r.spf = spfcheck.StatusTempError; return r }},
		{"dkim", "rsa2048._domainkey.example.org.", func(r faultResult) faultResult { r.dkim = dkimverify.StatusTempError; return r }},
		{"dmarc", "_dmarc.example.org.", func(r faultResult) faultResult { r.dmarc = dmarc.StatusTempError; return r }},
	}
	lossy := []string{fTimeout, fServfail, fRefused, fFormerr, fLate, fWrongID, fWrongName, fGarbage, fShort, fTCPBroken}
	for _, o := range owners {
		for _, mode := range append(lossy, fTCPFallback, fForgedFirst) {
			t.Run(o.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				want := allPass
				if mode != fTCPFallback && mode != fForgedFirst {
					want = o.lost(allPass)
				}
				if got := runFaultCase(t, o.owner, mode); got != want {
					t.Errorf("%s on %s: got %+v, want %+v", mode, o.owner, got, want)
				}
			})
		}
	}
}

// A reply truncated over TCP too (TC set, part of the record set), and a
// record set over 64 KB (a server can send at most 64 KB, with TC): the
// records are incomplete, so the answer can't be used (RFC 2181 §9). This
// test found the resolver using the partial set: the SPF record missing
// from it gave spf=none where the truth is pass, a wrong result.
func TestDNSFaultsTruncatedOverTCP(t *testing.T) {
	for _, mode := range []string{fTCPTruncated, fHuge} {
		t.Run(mode, func(t *testing.T) {
			got := runFaultCase(t, "example.org.", mode)
			if got.spf != spfcheck.StatusTempError {
				t.Errorf("%s: spf=%s, want temperror (the record set is incomplete)", mode, got.spf)
			}
		})
	}
}
