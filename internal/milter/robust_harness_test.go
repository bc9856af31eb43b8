package milter_test

// The robustness tests drive the real milter server, with the real service,
// engine and resolver behind it and a test DNS server on 127.0.0.1, over
// loopback: through go-milter's client where the MTA behaves, and with raw
// packets (4-byte big-endian length, command byte, data) where it does not.

import (
	"bytes"
	"context"
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
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
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
	srv  *milter.Server
	addr string
	logs *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep the last few MB only
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// libLog catches go-milter's own log lines (it logs through the standard
// log package), once per test binary.
var (
	libLogOnce sync.Once
	libLog     = &lockedBuf{}
)

type rigOptions struct {
	idle        time.Duration
	maxSessions int
	budget      time.Duration
	edit        func(*config.Config)
	eopts       func(*engine.Options)
}

func newRig(t testing.TB, zone string, o rigOptions) *rig {
	t.Helper()
	libLogOnce.Do(func() { log.SetOutput(libLog) })
	r := &rig{t: t, dns: dnstest.New(t, zone), logs: &lockedBuf{}}
	cfg := config.Default()
	cfg.AuthservID = servID
	cfg.Policy.IgnoreHosts = []string{}
	cfg.DNS.Servers = []string{r.dns.Addr()}
	cfg.DNS.Timeout = config.Duration{Duration: 500 * time.Millisecond}
	cfg.DNS.Attempts = 1
	cfg.SPF.Timeout = config.Duration{Duration: 3 * time.Second}
	if o.edit != nil {
		o.edit(cfg)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.Duration, Attempts: cfg.DNS.Attempts})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	eo := engine.Options{
		SPF: cfg.SPF.Enabled, CheckHELO: cfg.SPF.CheckHELO, SPFTimeout: cfg.SPF.Timeout.Duration,
		DKIM: cfg.DKIM.Enabled, DKIMOptions: dkimverify.Options{MinRSABits: cfg.DKIM.MinRSABits,
			MaxSignatures: cfg.DKIM.MaxSignatures, ClockDrift: cfg.DKIM.ClockDrift.Duration},
		DMARC: cfg.DMARC.Enabled, DMARCMode: dmarc.Mode(cfg.DMARC.Mode), MultiFrom: engine.MultiFrom(cfg.DMARC.MultiFrom),
		MaxAuthorDomains: cfg.DMARC.MaxAuthorDomains, MaxHeaderBytes: cfg.Milter.MaxHeaderBytes, MaxHeaders: cfg.Milter.MaxHeaders,
		MessageBudget: o.budget,
	}
	if o.eopts != nil {
		o.eopts(&eo)
	}
	svc := &service.Service{AuthservID: cfg.AuthservID, Engine: engine.New(res, eo), Policy: pol, Log: lg}
	idle := o.idle
	if idle == 0 {
		idle = 5 * time.Second
	}
	r.srv = milter.NewServer(svc, milter.Options{IdleTimeout: idle, Log: lg, MaxSessions: o.maxSessions})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("milter log (tail):\n%s", tail(r.logs.String(), 4000))
		}
	})
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// client opens a go-milter client session (OPTNEG done), as Postfix would.
func (r *rig) client() (*gomilter.ClientSession, error) {
	c := gomilter.NewClientWithOptions("tcp", r.addr, gomilter.ClientOptions{
		ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	return c.Session()
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

type outcome struct {
	mods []gomilter.ModifyAction
	act  *gomilter.Action
}

// ar returns the A-R value we inserted, or "".
func (o outcome) ar() string {
	for _, m := range o.mods {
		if m.Code == gomilter.ActInsertHeader && m.HeaderName == authres.HeaderName {
			return m.HeaderValue
		}
	}
	return ""
}

// send runs one whole message on s, ending with Abort as Postfix does.
func send(s *gomilter.ClientSession, m message) (outcome, error) {
	if err := s.Macros(gomilter.CodeConn, "j", servID); err != nil {
		return outcome{}, err
	}
	fam := gomilter.FamilyInet
	if strings.Contains(m.ip, ":") {
		fam = gomilter.FamilyInet6
	}
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("client.test", fam, 25, m.ip) },
		func() (*gomilter.Action, error) { return s.Helo(m.helo) },
		func() (*gomilter.Action, error) { return s.Mail("<"+m.from+">", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<rcpt@rcpt.test>", nil) },
	}
	for _, h := range m.headers {
		steps = append(steps, func() (*gomilter.Action, error) { return s.HeaderField(h[0], h[1]) })
	}
	steps = append(steps, s.HeaderEnd)
	for _, b := range m.body {
		steps = append(steps, func() (*gomilter.Action, error) { return s.BodyChunk([]byte(b)) })
	}
	for i, step := range steps {
		a, err := step()
		if err != nil {
			return outcome{}, fmt.Errorf("step %d: %w", i, err)
		}
		if a.Code != gomilter.ActContinue {
			return outcome{act: a}, fmt.Errorf("step %d: action %c", i, a.Code)
		}
	}
	mods, act, err := s.End()
	if err != nil {
		return outcome{}, fmt.Errorf("end: %w", err)
	}
	return outcome{mods: mods, act: act}, s.Abort()
}

// sendOne opens a session, sends m, closes, and fails the test unless an
// A-R came back: the daemon is still serving.
func (r *rig) sendOne(t testing.TB, m message) outcome {
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
	if !strings.HasPrefix(o.ar(), " "+servID+";") {
		t.Fatalf("no A-R of ours: %+v", o.mods)
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
			t.Fatalf("leak: goroutines %d (baseline %d), fds %d (baseline %d)\n%s", g, baseG, fd, baseFD, tail(string(buf), 20000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
