package milter_test

// The robustness tests drive the real milter server, with the real service,
// engine and resolver behind it and a test DNS server on 127.0.0.1, over
// loopback: through go-milter's client where the MTA behaves, and with raw
// packets (4-byte big-endian length, command byte, data) where it does not.

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/engine"
)

const robustZone = `
sender.test.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.sender.test.   300 IN TXT "v=DMARC1; p=reject"
other.test.           300 IN TXT "v=spf1 -all"
_dmarc.other.test.    300 IN TXT "v=DMARC1; p=reject"
`

const servID = "mx.rcpt.test"

type rig struct {
	t    testing.TB
	dns  *dnstest.Server
	srv  *testmilter.Server
	addr string
	logs *testmilter.Logs
}

// libLog catches go-milter's own log lines (it logs through the standard
// log package), once per test binary.
var (
	libLogOnce sync.Once
	libLog     = &testmilter.Logs{Max: 4 << 20}
)

type rigOptions struct {
	idle        time.Duration
	maxSessions int
	budget      time.Duration
	edit        func(*config.Config)
}

func newRig(t testing.TB, zone string, o rigOptions) *rig {
	t.Helper()
	libLogOnce.Do(func() { log.SetOutput(libLog) })
	r := &rig{t: t, dns: dnstest.New(t, zone), logs: &testmilter.Logs{Max: 4 << 20}} // keep the last few MB only
	cfg := testmilter.Config(servID, r.dns.Addr(), 500*time.Millisecond)
	cfg.Policy.IgnoreHosts = []string{}
	cfg.SPF.Timeout = config.Duration{Duration: 3 * time.Second}
	if o.edit != nil {
		o.edit(cfg)
	}
	lg := testmilter.Logger(r.logs, slog.LevelInfo)
	svc := testmilter.NewService(t, cfg, lg, func(eo *engine.Options) { eo.MessageBudget = o.budget })
	idle := o.idle
	if idle == 0 {
		idle = 5 * time.Second
	}
	r.srv = testmilter.Serve(t, svc, milter.Options{IdleTimeout: idle, Log: lg, MaxSessions: o.maxSessions}, r.logs)
	r.addr = r.srv.Addr
	return r
}

// client opens a go-milter client session (OPTNEG done), as Postfix would.
func (r *rig) client() (*gomilter.ClientSession, error) {
	return testmilter.Dial("tcp", r.addr, 20*time.Second)
}

type message struct {
	ip, helo, from string
	headers        [][2]string
	body           []string
}

func stdMessage(fromDomain string) message {
	return message{ip: "192.0.2.1", helo: "mx.sender.test", from: "alice@" + fromDomain,
		headers: [][2]string{{"From", " Alice <alice@" + fromDomain + ">"}, {"To", " rcpt@rcpt.test"}, {"Subject", " hi"}},
		body:    []string{"hello\r\n"}}
}

// send runs one whole message on s, ending with Abort as Postfix does.
func send(s *gomilter.ClientSession, m message) (testmilter.Result, error) {
	var body [][]byte
	for _, b := range m.body {
		body = append(body, []byte(b))
	}
	return testmilter.Send(s, testmilter.Message{ConnMacros: []string{"j", servID}, Host: "client.test", IP: m.ip, HELO: m.helo,
		From: m.from, Headers: m.headers, Body: body})
}

// sendOne opens a session, sends m, closes, and fails the test unless an
// A-R came back: the daemon is still serving.
func (r *rig) sendOne(t testing.TB, m message) testmilter.Result {
	t.Helper()
	s, err := r.client()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Close()
	o, err := send(s, m)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !strings.HasPrefix(o.AR(), " "+servID+";") {
		t.Fatalf("no A-R of ours: %+v", o.Mods)
	}
	return o
}

// Raw packets.

func pkt(code byte, data ...string) []byte {
	body := append([]byte{code}, strings.Join(data, "")...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func cstr(s string) string { return s + "\x00" }

// optneg is SMFIC_OPTNEG as Postfix 3.7 sends it: version 6, all actions,
// all protocol steps offered.
func optneg() []byte {
	d := make([]byte, 12)
	binary.BigEndian.PutUint32(d, 6)
	binary.BigEndian.PutUint32(d[4:], 0x1ff)
	binary.BigEndian.PutUint32(d[8:], 0x1fffff)
	return pkt('O', string(d))
}

func connectPkt(host, ip string) []byte {
	return pkt('C', cstr(host), "4", string([]byte{0, 25}), cstr(ip))
}

// signedFields and signedBody are testdata/signed.eml, a message signed
// with the key in testdata/signed.zone: its DKIM verification really waits
// for the body.
func signedMessage(t testing.TB) (fields [][2]string, body string) {
	t.Helper()
	raw, err := os.ReadFile("testdata/signed.eml")
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatal("signed.eml: no body")
	}
	for _, line := range strings.SplitAfter(head+"\r\n", "\r\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' { // a fold: as Postfix sends it, LF only
			fields[len(fields)-1][1] += "\n" + strings.TrimSuffix(line, "\r\n")
			continue
		}
		name, value, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ":")
		fields = append(fields, [2]string{name, value})
	}
	return fields, body
}

// signedZone is robustZone plus the key of signed.eml and an SPF record
// for its domain.
func signedZone(t testing.TB) string {
	t.Helper()
	key, err := os.ReadFile("testdata/signed.zone")
	if err != nil {
		t.Fatal(err)
	}
	return robustZone + string(key) + "\nexample.org. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
}

// rawStages is the signed message as raw packets, one stage per element.
func rawStages(t testing.TB) [][]byte {
	fields, body := signedMessage(t)
	st := [][]byte{
		optneg(),
		append(pkt('D', "C", cstr("j"), cstr(servID)), connectPkt("client.test", "192.0.2.1")...),
		pkt('H', cstr("mx.example.org")),
		pkt('M', cstr("<alice@example.org>")),
		pkt('R', cstr("<rcpt@rcpt.test>")),
	}
	var hdr []byte
	hdr = append(hdr, pkt('D', "L", cstr("i"), cstr("Q1"))...)
	for _, f := range fields {
		hdr = append(hdr, pkt('L', cstr(f[0]), cstr(f[1]))...)
	}
	half := len(body) / 2
	return append(st, hdr, pkt('N'), pkt('B', body[:half]), pkt('B', body[half:]), pkt('E'), pkt('A'), pkt('Q'))
}

// readReplies reads packets until EOF or the deadline; it returns the
// codes seen and whether the connection ended (EOF/reset) before deadline.
func readReplies(c net.Conn, deadline time.Duration) (codes []byte, ended bool, err error) {
	if err := c.SetReadDeadline(time.Now().Add(deadline)); err != nil {
		return nil, false, err
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return codes, false, nil
			}
			return codes, true, nil
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > 1<<20 {
			return codes, false, fmt.Errorf("bad reply length %d", n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c, data); err != nil {
			return codes, true, nil
		}
		codes = append(codes, data[0])
	}
}

// Leak accounting.

func openFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting fds: %v", err)
	}
	return len(es)
}

// settle polls until goroutines and fds are back within slack of the
// baseline, or fails after a generous deadline. It is a liveness check,
// not a timing assertion.
func settle(t testing.TB, baseG, baseFD, slack int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		runtime.GC()
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g <= baseG+slack && fd <= baseFD+slack {
			t.Logf("settled: goroutines %d (baseline %d), fds %d (baseline %d)", g, baseG, fd, baseFD)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("leak: goroutines %d (baseline %d), fds %d (baseline %d)\n%s", g, baseG, fd, baseFD, testmilter.Tail(string(buf), 20000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
