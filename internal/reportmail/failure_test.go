package reportmail_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/failrep"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/reportmail"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// The zone: spoof.test publishes p=reject with ruf to itself (fo=1),
// partner.test sends ruf to an external host that authorized it (RFC 9990
// §4), rogue.test to one that did not; psd.test is a PSD record (RFC 9991
// §2: its ruf is ignored); pass.test passes SPF for 192.0.2.0/24 with fo=0;
// blocked.test is not in policy_domains.
const failureZone = `
spoof.test.            300 IN TXT "v=spf1 -all"
_dmarc.spoof.test.     300 IN TXT "v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@spoof.test"
partner.test.          300 IN TXT "v=spf1 -all"
_dmarc.partner.test.   300 IN TXT "v=DMARC1; p=none; ruf=mailto:ruf@reports.example"
partner.test._report._dmarc.reports.example. 300 IN TXT "v=DMARC1"
rogue.test.            300 IN TXT "v=spf1 -all"
_dmarc.rogue.test.     300 IN TXT "v=DMARC1; p=none; ruf=mailto:victim@reports.example"
psd.test.              300 IN TXT "v=spf1 -all"
_dmarc.psd.test.       300 IN TXT "v=DMARC1; p=reject; psd=y; ruf=mailto:ruf@psd.test"
pass.test.             300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.pass.test.      300 IN TXT "v=DMARC1; p=reject; fo=0; ruf=mailto:ruf@pass.test"
blocked.test.          300 IN TXT "v=spf1 -all"
_dmarc.blocked.test.   300 IN TXT "v=DMARC1; p=reject; ruf=mailto:ruf@blocked.test"
`

type failureRig struct {
	t       *testing.T
	dns     *dnstest.Server
	st      *store.Store
	res     *resolver.Resolver
	rep     *failrep.Reporter
	addr    string
	offered atomic.Int64 // outcomes seen by the reporter
}

func newFailureRig(t *testing.T, withReports bool) *failureRig {
	t.Helper()
	r := &failureRig{t: t, dns: dnstest.New(t, failureZone)}
	dir := t.TempDir()
	var err error
	r.st, err = store.Open(context.Background(), store.Options{Backend: store.SQLite,
		SQLitePath: filepath.Join(dir, "records.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.res, err = resolver.New(resolver.Config{Servers: []string{r.dns.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testmilter.Logs{}
	log := testmilter.Logger(logs, slog.LevelInfo)
	cfg := testmilter.Config("mx.receiver.test", r.dns.Addr(), time.Second)
	svc := testmilter.NewService(t, cfg, log, nil)
	if withReports {
		ctx, cancel := context.WithCancel(context.Background())
		r.rep = &failrep.Reporter{Store: r.st, Resolver: r.res, ReportingMTA: "mx.receiver.test",
			PolicyDomains: []string{"spoof.test", "partner.test", "rogue.test", "psd.test", "pass.test"}, Redact: true,
			Interval: time.Hour, MaxPerHour: 10, Log: log, Observe: func(string) { r.offered.Add(1) }}
		r.rep.Start(ctx)
		t.Cleanup(func() { cancel(); r.rep.Stop() })
		svc.Failures = r.rep
	}
	r.addr = testmilter.Serve(t, svc, milter.Options{IdleTimeout: 5 * time.Second, Log: log}, logs).Addr
	return r
}

// send sends n messages on one connection from ip, From: local@fromDomain,
// each with extra header fields; it returns the action codes.
func (r *failureRig) send(ip, fromDomain string, n int, auth string, extra ...[2]string) []byte {
	r.t.Helper()
	s, err := testmilter.Dial("tcp", r.addr, 10*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	defer s.Close()
	var codes []byte
	for i := range n {
		m := testmilter.Message{From: "bounce@" + fromDomain,
			Headers: append([][2]string{{"From", " CEO <ceo@" + fromDomain + ">"}, {"To", " bob@receiver.test"},
				{"Subject", fmt.Sprintf(" invoice %d", i)}, {"Message-ID", fmt.Sprintf(" <m%d@%s>", i, fromDomain)}}, extra...),
			Body: [][]byte{[]byte("Pay now.\r\n")}}
		if auth != "" {
			m.MailMacros = []string{"{auth_authen}", auth}
		}
		if i == 0 {
			m.IP, m.Host, m.HELO = ip, "client.example", "client.example"
		}
		res, err := testmilter.Send(s, m)
		if err != nil && res.Action == nil {
			r.t.Fatalf("message %d: %v", i, err)
		}
		codes = append(codes, byte(res.Action.Code))
	}
	return codes
}

// queued waits until the reporter has handled want more offers than
// before, then returns the pending failure reports.
func (r *failureRig) settle(want int64) []store.QueuedFailure {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.offered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.offered.Load(); got < want {
		r.t.Fatalf("reporter saw %d outcomes, want %d", got, want)
	}
	due, err := r.st.DueFailures(context.Background(), time.Now().Add(time.Hour), 10000)
	if err != nil {
		r.t.Fatal(err)
	}
	return due
}

// RFC 9991 §2 and §7 through the real milter protocol: 1,000 failing
// messages from one IP give one report; other IPs up to max_per_hour;
// nothing for ignored or authenticated clients, report mail, psd=y, a
// domain off the list, or fo=0 mail one mechanism passed.
func TestFailureReportsThroughMilter(t *testing.T) {
	r := newFailureRig(t, true)

	// 1,000 spoofed messages from one IP, on 4 connections: all rejected
	// (p=reject), one report.
	for range 4 {
		for i, c := range r.send("192.0.2.99", "spoof.test", 250, "") {
			if c != 'y' { // 550 reply
				t.Fatalf("message %d: action %c, want a reject reply", i, c)
			}
		}
	}
	if due := r.settle(1000); len(due) != 1 {
		t.Fatalf("%d reports queued for 1,000 failing messages from one IP, want 1", len(due))
	}

	// Nothing at all for these (each offer the reporter sees is counted).
	before := r.offered.Load()
	r.send("127.0.0.1", "spoof.test", 3, "")       // ignored host: not checked
	r.send("192.0.2.98", "spoof.test", 3, "alice") // authenticated: not checked
	r.send("192.0.2.97", "pass.test", 3, "")       // fo=0 and SPF passes aligned
	r.send("192.0.2.96", "blocked.test", 1, "")    // not in policy_domains
	r.send("192.0.2.95", "psd.test", 1, "")        // psd=y
	r.send("192.0.2.94", "spoof.test", 1, "", [2]string{"Content-Type", " multipart/report; report-type=feedback-report; boundary=x"})
	r.send("192.0.2.93", "spoof.test", 1, "", [2]string{"Auto-Submitted", " auto-generated"})
	if due := r.settle(before + 4); len(due) != 1 {
		t.Fatalf("%d reports queued, want still 1", len(due))
	}

	// Other sources: the hourly cap (10) holds.
	for i := range 20 {
		r.send(fmt.Sprintf("198.51.100.%d", i+1), "spoof.test", 1, "")
	}
	if due := r.settle(before + 4 + 20); len(due) != 10 {
		t.Fatalf("%d reports queued after 20 sources, want max_per_hour = 10", len(due))
	}
}

// Off by default: a service built from the default configuration queues
// nothing.
func TestFailureReportsOffByDefault(t *testing.T) {
	r := newFailureRig(t, false)
	r.send("192.0.2.99", "spoof.test", 5, "")
	if due := r.settle(0); len(due) != 0 {
		t.Fatalf("%d reports queued with failure reports off", len(due))
	}
}

// The sender: external destinations verified (the same code as rua), the
// per-destination cap, the relay's acceptance before marking, a temporary
// relay failure retried later.
func TestFailureSender(t *testing.T) {
	r := newFailureRig(t, true)
	r.send("192.0.2.10", "spoof.test", 1, "")
	r.send("192.0.2.11", "partner.test", 1, "")
	r.send("192.0.2.12", "rogue.test", 1, "")
	r.send("192.0.2.13", "spoof.test", 1, "")
	r.send("192.0.2.14", "spoof.test", 1, "")
	if due := r.settle(5); len(due) != 5 {
		t.Fatalf("%d queued, want 5", len(due))
	}
	relay := smtptest.New(t, smtptest.Options{})
	var outcomes []string
	snd := &reportmail.FailureSender{Store: r.st, Resolver: r.res, From: "dmarc-reports@receiver.test",
		UserAgent: "authmilter/test", MaxPerDestinationPerDay: 2,
		Mailer: reportmail.NewSender(reportmail.SMTPConfig{Host: "127.0.0.1", Port: relay.Port(), StartTLS: reportmail.StartTLSNone}),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)), Observe: func(o string) { outcomes = append(outcomes, o) }}

	// The relay is down first: everything stays queued for a retry.
	relay.Refuse("ruf@spoof.test", "451 4.3.0 try later")
	sent, err := snd.Run(context.Background())
	if err != nil || sent != 1 { // only partner's went
		t.Fatalf("first run: sent %d, %v (outcomes %v)", sent, err, outcomes)
	}
	relay.Refuse("ruf@spoof.test", "")
	snd.Now = func() time.Time { return time.Now().Add(2 * time.Minute) } // past the first backoff
	sent, err = snd.Run(context.Background())
	if err != nil || sent != 2 {
		t.Fatalf("second run: sent %d, %v (outcomes %v)", sent, err, outcomes)
	}
	msgs := relay.Messages()
	to := map[string]int{}
	for _, m := range msgs {
		to[m.To]++
		body := string(m.Data)
		for _, want := range []string{"Content-Type: multipart/report; report-type=feedback-report;", "Content-Type: message/feedback-report",
			"Feedback-Type: auth-failure", "Auth-Failure: dmarc", "Content-Type: text/rfc822-headers", "From: CEO <redacted@"} {
			if !strings.Contains(body, want) {
				t.Errorf("report to %s lacks %q:\n%s", m.To, want, body)
			}
		}
		if strings.Contains(body, "ceo@") || strings.Contains(body, "bob@") || strings.Contains(body, "Pay now") {
			t.Errorf("report to %s carries a local part or the body:\n%s", m.To, body)
		}
	}
	// spoof.test: 3 queued, cap 2 a day; partner: verified external; rogue:
	// external without authorization, never sent.
	if to["ruf@spoof.test"] != 2 || to["ruf@reports.example"] != 1 || to["victim@reports.example"] != 0 || len(msgs) != 3 {
		t.Errorf("sent to %v", to)
	}
	if due, _ := r.st.DueFailures(context.Background(), time.Now().Add(time.Hour), 100); len(due) != 0 {
		t.Errorf("%d still pending after both runs", len(due))
	}
	joined := strings.Join(outcomes, ",")
	for _, want := range []string{reportmail.FailureRetry, reportmail.FailureCapped, reportmail.FailureUnsendable, reportmail.FailureSent} {
		if !strings.Contains(joined, want) {
			t.Errorf("outcomes %v lack %s", outcomes, want)
		}
	}
}
