package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/integration/internal/acked"
	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
)

const zone = `
pass.test.           300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.pass.test.    300 IN TXT "v=DMARC1; p=reject"
quar.test.           300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.quar.test.    300 IN TXT "v=DMARC1; p=quarantine"
broken.test.         300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
`

// testCorpus writes a small corpus: each class once per client.
//
//	pass: SPF pass, DMARC pass          -> accept
//	spoof: SPF fail, p=reject           -> reject
//	quar: SPF fail, p=quarantine        -> quarantine
//	temp: DMARC lookup SERVFAIL         -> tempfail (dmarc.temperror = "tempfail")
var classVerdict = map[string]string{"pass": "accept", "spoof": "reject", "quar": "quarantine", "temp": "tempfail"}

func testCorpus(t *testing.T) (dir string, want map[string]int64) {
	dir = t.TempDir()
	var index strings.Builder
	index.WriteString("# file\tip\tname\thelo\tfrom\trcpt\tclass\n")
	want = map[string]int64{}
	cases := []struct {
		class, ip, domain, verdict string
		body                       int
	}{
		{"pass", "192.0.2.10", "pass.test", "accept", 1 << 10},
		{"spoof", "198.51.100.7", "pass.test", "reject", 3 << 10},
		{"quar", "198.51.100.7", "quar.test", "quarantine", 200 << 10}, // several body chunks
		{"temp", "192.0.2.10", "broken.test", "tempfail", 0},           // no body chunk at all
	}
	for i, c := range cases {
		name := fmt.Sprintf("%02d.eml", i)
		var msg bytes.Buffer
		fmt.Fprintf(&msg, "From: Someone <a@%s>\r\nTo: b@rcpt.test\r\nSubject: case %s\r\n\tfolded\r\nMessage-ID: <%d@%s>\r\n\r\n", c.domain, c.class, i, c.domain)
		for msg.Len() < c.body {
			msg.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
		}
		if err := os.WriteFile(filepath.Join(dir, name), msg.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&index, "%s\t%s\t-\tmx.%s\ta@%s\tb@rcpt.test\t%s\n", name, c.ip, c.domain, c.domain, c.class)
		want[c.verdict]++
	}
	if err := os.WriteFile(filepath.Join(dir, "index.tsv"), []byte(index.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

// startServer runs the real authmilter service (resolver, engine, policy,
// milter server) on a unix socket and a loopback TCP port.
func startServer(t *testing.T, authservID string) (unixSpec, tcpSpec string) {
	t.Helper()
	ds := dnstest.New(t, zone)
	ds.Fail("_dmarc.broken.test", dns.RcodeServerFailure)
	cfg := config.Default()
	cfg.AuthservID = authservID
	cfg.DMARC.TempError = "tempfail"
	cfg.DNS.Servers = []string{ds.Addr()}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng := engine.New(res, engine.Options{
		SPF: true, CheckHELO: true, SPFTimeout: 5 * time.Second,
		DKIM: true, DKIMOptions: dkimverify.Options{MinRSABits: 1024, MaxSignatures: 5, ClockDrift: 5 * time.Minute},
		DMARC: true, DMARCMode: dmarc.Mode(cfg.DMARC.Mode), MultiFrom: cfg.DMARC.MultiFrom,
		MaxAuthorDomains: 5, MaxHeaderBytes: 1 << 20, MaxHeaders: 1000,
	})
	svc := &service.Service{AuthservID: authservID, Engine: eng, Policy: pol, Log: log}
	srv := milter.NewServer(svc, milter.Options{IdleTimeout: 10 * time.Second, Log: log})
	sock := filepath.Join(t.TempDir(), "m.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- srv.Serve(uln) }()
	go func() { done <- srv.Serve(tln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return "unix:" + sock, "inet:" + tln.Addr().String()
}

func specs(t *testing.T, socks ...string) []milterSpec {
	var out []milterSpec
	for _, s := range socks {
		sock, err := config.ParseSocket(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, milterSpec{label: s, network: sock.Network, address: sock.Address})
	}
	return out
}

// checkSums checks that the report's counts add up.
func checkSums(t *testing.T, r *Report, sent int64) {
	t.Helper()
	var sum int64
	for _, n := range r.Verdicts {
		sum += n
	}
	if sum != r.Messages {
		t.Errorf("verdicts add up to %d, messages %d", sum, r.Messages)
	}
	if r.Errors != 0 {
		t.Errorf("%d errors: %v", r.Errors, r.ErrorSample)
	}
	if r.Messages+r.Errors != sent {
		t.Errorf("messages %d + errors %d != %d sent", r.Messages, r.Errors, sent)
	}
	if r.Content.P50 <= 0 || r.Content.P50 > r.Content.P99 || r.Content.P99 > r.Content.Max {
		t.Errorf("latency percentiles out of order: %+v", r.Content)
	}
	if r.EOM.Max > r.Content.Max {
		t.Errorf("eom latency %v above content latency %v", r.EOM.Max, r.Content.Max)
	}
	if r.Connections == 0 || r.Connections > r.Messages {
		t.Errorf("%d connections for %d messages", r.Connections, r.Messages)
	}
}

func TestRunAgainstAuthmilter(t *testing.T) {
	dir, want := testCorpus(t)
	corpus, err := loadCorpus(dir)
	if err != nil {
		t.Fatal(err)
	}
	unixSock, tcpSock := startServer(t, "mx.rcpt.test")
	const rounds = 5
	n := int64(rounds * len(corpus))
	tests := []struct {
		name     string
		socks    []string
		sessions int
		perConn  int
		exact    bool // one message per connection: every corpus message equally often
		chained  bool
	}{
		{"unix, one message per connection", []string{unixSock}, 3, 1, true, false},
		{"tcp, several per connection", []string{tcpSock}, 4, 3, false, false},
		{"chain of two", []string{unixSock, tcpSock}, 2, 1, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options{milters: specs(t, tc.socks...), corpus: corpus, sessions: tc.sessions, perConn: tc.perConn,
				count: n, timeout: 10 * time.Second, mtaHost: "mx.rcpt.test"}
			r, err := run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			checkSums(t, r, n)
			if tc.exact {
				for _, class := range []string{"pass", "spoof", "quar", "temp"} {
					if got := r.ByClass[class]; len(got) != 1 || got[classVerdict[class]] != rounds {
						t.Errorf("class %s: verdicts %v, want %d %s", class, got, rounds, classVerdict[class])
					}
				}
				for v, k := range want {
					if r.Verdicts[v] != k*rounds {
						t.Errorf("verdict %s: %d, want %d (all %v)", v, r.Verdicts[v], k*rounds, r.Verdicts)
					}
				}
			}
			// authmilter adds its Authentication-Results to every message.
			if r.HeaderAdded != r.Messages {
				t.Errorf("header added to %d of %d messages", r.HeaderAdded, r.Messages)
			}
			// Both milters have the same authserv-id: the second sees
			// the first one's header, takes it for a forgery and deletes
			// it (RFC 8601 §5), but only for messages that reached it:
			// the first holds quarantined mail and ends rejected and
			// tempfailed mail itself.
			wantEdit := int64(0)
			if tc.chained {
				wantEdit = r.Verdicts["accept"]
			}
			if r.HeaderEdit != wantEdit {
				t.Errorf("header changed in %d messages, want %d", r.HeaderEdit, wantEdit)
			}
		})
	}
}

// TestCLI runs the command as a user would, for a duration, with JSON output.
func TestCLI(t *testing.T) {
	dir, _ := testCorpus(t)
	unixSock, _ := startServer(t, "mx.rcpt.test")
	var out, errb bytes.Buffer
	code := cli([]string{"-corpus", dir, "-milter", unixSock, "-c", "2", "-m", "2", "-d", "300ms", "-warmup", "100ms", "-json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if r.Messages == 0 || r.Errors != 0 || r.PerSecond <= 0 {
		t.Errorf("report %+v", r)
	}
	if got := cli([]string{"-corpus", dir}, io.Discard, io.Discard); got != 2 {
		t.Errorf("no -milter: exit %d, want 2", got)
	}
	if got := cli([]string{"-corpus", t.TempDir(), "-milter", unixSock}, io.Discard, io.Discard); got != 1 {
		t.Errorf("empty corpus dir: exit %d, want 1", got)
	}
}

// TestDeadMilter: a socket nobody listens on gives errors, not a hang or
// a panic, and no messages.
func TestDeadMilter(t *testing.T) {
	dir, _ := testCorpus(t)
	corpus, err := loadCorpus(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := options{milters: specs(t, "unix:"+filepath.Join(t.TempDir(), "none.sock")), corpus: corpus,
		sessions: 2, perConn: 2, count: 6, timeout: time.Second}
	r, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages != 0 || r.Errors != 6 || len(r.ErrorSample) == 0 {
		t.Errorf("messages %d, errors %d (%v), want 0 and 6", r.Messages, r.Errors, r.ErrorSample)
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		fields []field
		body   string
	}{
		{"crlf with fold", "From: a@b\r\nSubject:  two\r\n\tfolded\r\nX-Empty:\r\n\r\nbody\r\n",
			[]field{{"From", " a@b"}, {"Subject", "  two\n\tfolded"}, {"X-Empty", ""}}, "body\r\n"},
		{"bare LF becomes CRLF", "From: a@b\nX-Sp : v\n\nl1\nl2\n",
			[]field{{"From", " a@b"}, {"X-Sp", " v"}}, "l1\r\nl2\r\n"},
		{"no body", "From: a@b\r\n", []field{{"From", " a@b"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, b, err := parseMessage([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(f) != fmt.Sprint(tc.fields) || string(b) != tc.body {
				t.Errorf("got %q %q, want %q %q", f, b, tc.fields, tc.body)
			}
		})
	}
	if _, _, err := parseMessage([]byte("no colon here\r\n\r\n")); err == nil {
		t.Error("a header line without a colon was accepted")
	}
}

func TestApplyHeaderMod(t *testing.T) {
	base := []field{{"From", " a@b"}, {"X-A", " one"}, {"X-A", " two"}}
	tests := []struct {
		name string
		mod  modification
		lead bool
		want []field
	}{
		{"insert 0 goes on top", modification{code: 'i', index: 0, name: "A-R", value: " x"}, true,
			[]field{{"A-R", " x"}, {"From", " a@b"}, {"X-A", " one"}, {"X-A", " two"}}},
		{"insert 1 is below the hidden Received, also on top", modification{code: 'i', index: 1, name: "A-R", value: "x"}, false,
			[]field{{"A-R", " x"}, {"From", " a@b"}, {"X-A", " one"}, {"X-A", " two"}}},
		{"insert 3 after two visible fields", modification{code: 'i', index: 3, name: "N", value: " v"}, true,
			[]field{{"From", " a@b"}, {"X-A", " one"}, {"N", " v"}, {"X-A", " two"}}},
		{"add appends", modification{code: 'h', name: "N", value: "v"}, false,
			[]field{{"From", " a@b"}, {"X-A", " one"}, {"X-A", " two"}, {"N", " v"}}},
		{"delete the second of a name", modification{code: 'm', index: 2, name: "x-a"}, true,
			[]field{{"From", " a@b"}, {"X-A", " one"}}},
		{"change the first", modification{code: 'm', index: 1, name: "X-A", value: " new"}, true,
			[]field{{"From", " a@b"}, {"X-A", " new"}, {"X-A", " two"}}},
		{"delete a missing one", modification{code: 'm', index: 3, name: "X-A"}, true, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := applyHeaderMod(append([]field(nil), base...), tc.mod, tc.lead)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDrop: -drop closes connections on purpose at a random packet; those
// are counted as dropped, not as errors, the milter goes on serving, and
// -acked lists exactly the messages whose end-of-message reply arrived,
// each with its own queue id.
func TestDrop(t *testing.T) {
	dir, _ := testCorpus(t)
	corpus, err := loadCorpus(dir)
	if err != nil {
		t.Fatal(err)
	}
	unixSock, tcpSock := startServer(t, "mx.rcpt.test")
	for _, tc := range []struct {
		name  string
		drop  float64
		socks []string
	}{
		{"every connection", 1, []string{tcpSock}},
		{"every connection, chain", 1, []string{unixSock, tcpSock}},
		{"a third", 0.33, []string{unixSock}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, perConn = 90, 3
			var ackedBuf bytes.Buffer
			o := options{milters: specs(t, tc.socks...), corpus: corpus, sessions: 3, perConn: perConn, count: n,
				timeout: 10 * time.Second, mtaHost: "mx.rcpt.test", drop: tc.drop, seed: 7, acked: acked.NewWriter(&ackedBuf)}
			r, err := run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 {
				t.Errorf("%d errors: %v", r.Errors, r.ErrorSample)
			}
			// Each connection takes 1 to perConn messages.
			if tc.drop == 1 && r.Dropped < n/perConn {
				t.Errorf("dropped %d connections, want every one (at least %d)", r.Dropped, n/perConn)
			}
			if tc.drop < 1 && (r.Dropped == 0 || r.Dropped >= r.Connections) {
				t.Errorf("dropped %d of %d connections", r.Dropped, r.Connections)
			}
			if r.Messages >= n {
				t.Errorf("%d messages of %d: nothing was cut", r.Messages, n)
			}
			// Drops fall anywhere in a connection, not only on its
			// first packet: connections get through option negotiation,
			// CONNECT and HELO, and messages through end of message.
			if r.Connections == 0 || r.Messages == 0 {
				t.Errorf("%d connections opened, %d messages checked: every drop came first", r.Connections, r.Messages)
			}
			entries, err := acked.Read(&ackedBuf, "acked") // also: no queue id twice
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(entries)) != r.Messages {
				t.Errorf("%d acknowledged lines, %d messages", len(entries), r.Messages)
			}
			for _, e := range entries {
				if len(e.QueueID) != 11 || !strings.HasSuffix(e.File, ".eml") || r.Verdicts[e.Verdict] == 0 {
					t.Errorf("acked line %+v", e)
				}
			}
			// The milter is unharmed: a run without drops is clean.
			o.drop, o.acked = 0, nil
			r, err = run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			checkSums(t, r, n)
		})
	}
}
