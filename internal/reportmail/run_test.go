package reportmail

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
)

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// The policy domains of the tests and their reporting addresses:
// a.example reports in its own domain, b.example to an external consumer
// that authorised it, c.example to one that did not, d.example to one
// whose DNS fails.
const zone = `
$TTL 300
_dmarc.a.example.             IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@a.example"
_dmarc.b.example.             IN TXT "v=DMARC1; p=none; rua=mailto:rua@consumer.example"
_dmarc.c.example.             IN TXT "v=DMARC1; p=none; rua=mailto:rua@stranger.example"
_dmarc.d.example.             IN TXT "v=DMARC1; p=none; rua=mailto:rua@flaky.example"
_dmarc.consumer.example.      IN TXT "v=DMARC1; p=none"
_dmarc.stranger.example.      IN TXT "v=DMARC1; p=none"
_dmarc.flaky.example.         IN TXT "v=DMARC1; p=none"
b.example._report._dmarc.consumer.example. IN TXT "v=DMARC1"
d.example._report._dmarc.flaky.example.    IN TXT "v=DMARC1"
`

func policy(domain, rua string) report.PolicyPublished {
	return report.PolicyPublished{Domain: domain, DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r",
		P: "none", Testing: "n", Pct: -1, RUA: []report.URI{{Address: rua}}}
}

// message is the record one evaluated message leaves.
func message(at time.Duration, ip, from string, pol report.PolicyPublished, pass bool) report.Record {
	r := report.Record{Time: day.Add(at), Reporter: "mx.receiver.example", QueueID: "Q1", SourceIP: ip,
		HeaderFrom: from, EnvelopeFrom: from, EnvelopeTo: []string{"receiver.example"},
		SPF:    []report.SPFResult{{Domain: from, Scope: "mfrom", Result: "pass"}},
		DKIM:   []report.DKIMResult{{Domain: from, Selector: "s1", Result: "pass"}},
		Policy: pol, Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass", DMARCResult: "pass"}
	if !pass {
		r.SPF[0].Result, r.DKIM[0].Result = "fail", "fail"
		r.Disposition, r.DKIMAligned, r.SPFAligned, r.DMARCResult = "none", "fail", "fail", "fail"
	}
	return r
}

type env struct {
	t      *testing.T
	st     *store.Store
	dns    *dnstest.Server
	smtp   *smtptest.Server
	runner *Runner
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "records.db"),
		SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sink := smtptest.New(t, smtptest.Options{TLS: true, User: "reporter", Password: "s3cret"})
	e := &env{t: t, st: st, smtp: sink}
	e.runner = &Runner{
		Store: st,
		Mailer: NewSender(SMTPConfig{Host: "127.0.0.1", Port: sink.Port(), StartTLS: StartTLSRequired,
			RootCAs: sink.RootCAs(), Username: "reporter", Password: "s3cret", HELO: "mx.receiver.example",
			Timeout: 10 * time.Second}),
		Options: report.Options{Receiver: "receiver.example", OrgName: "Receiver", Generator: "authmilter test"},
		Format:  report.FormatRFC9990,
		From:    "dmarc-noreply@receiver.example",
		Delay:   15 * time.Minute,
		Log:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Now:     func() time.Time { return day.Add(24*time.Hour + time.Hour) },
	}
	e.useDNS(dnstest.New(t, zone))
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// useDNS points the reporter at another DNS server.
func (e *env) useDNS(srv *dnstest.Server) {
	e.t.Helper()
	// Generous: a destination check that times out on a loaded machine
	// would postpone the report the test expects (issue 19); the failure
	// cases use SERVFAIL, which answers at once.
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1, Attempts: 1,
		Timeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.dns, e.runner.Resolver = srv, res
}

func (e *env) put(recs ...report.Record) {
	e.t.Helper()
	if err := e.st.Put(context.Background(), recs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run() Summary {
	e.t.Helper()
	sum, err := e.runner.Run(context.Background())
	if err != nil {
		e.t.Fatalf("Run: %v", err)
	}
	return sum
}

func (e *env) pending() int {
	e.t.Helper()
	rows, err := e.st.Pending(context.Background(), day.Add(48*time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(rows)
}

// received is one report mail, checked and read back.
type received struct {
	to, subject, filename, reportID string
	domain                          string
	counts                          int
}

// check takes apart every mail the sink got: headers, attachment name, the
// XML against the schema, and the counts in it.
func (e *env) received(f report.Format) []received {
	e.t.Helper()
	var out []received
	for _, m := range e.smtp.Messages() {
		if !m.TLS || m.User != "reporter" || m.From != "dmarc-noreply@receiver.example" {
			e.t.Errorf("mail to %s: tls=%v user=%q from=%q", m.To, m.TLS, m.User, m.From)
		}
		p, err := m.ParseReport()
		if err != nil {
			e.t.Fatalf("mail to %s: %v\n%s", m.To, err, m.Data)
		}
		reporttest.Validate(e.t, f, p.XML)
		var fb struct {
			ReportID string `xml:"report_metadata>report_id"`
			Begin    int64  `xml:"report_metadata>date_range>begin"`
			End      int64  `xml:"report_metadata>date_range>end"`
			Domain   string `xml:"policy_published>domain"`
			Counts   []int  `xml:"record>row>count"`
		}
		if err := xml.Unmarshal(p.XML, &fb); err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for _, c := range fb.Counts {
			n += c
		}
		subj := p.Header.Get("Subject")
		wantSubj := fmt.Sprintf("Report Domain: %s Submitter: receiver.example Report-ID: %s", fb.Domain, fb.ReportID)
		if subj != wantSubj {
			e.t.Errorf("Subject %q, want %q", subj, wantSubj)
		}
		wantFile := fmt.Sprintf("receiver.example!%s!%d!%d!%s.xml.gz", fb.Domain, fb.Begin, fb.End, fb.ReportID)
		if p.Filename != wantFile {
			e.t.Errorf("attachment %q, want %q", p.Filename, wantFile)
		}
		if p.Header.Get("Message-ID") != "<"+fb.ReportID+"@receiver.example>" {
			e.t.Errorf("Message-ID %q", p.Header.Get("Message-ID"))
		}
		out = append(out, received{to: m.To, subject: subj, filename: p.Filename, reportID: fb.ReportID,
			domain: fb.Domain, counts: n})
	}
	return out
}

// TestEndToEnd: records in the store → reports → mail through a real SMTP
// conversation (STARTTLS with a verified certificate, AUTH) → attachments
// valid against the XSD, counting exactly the messages of each policy
// domain. A second run sends nothing.
func TestEndToEnd(t *testing.T) {
	for _, f := range []report.Format{report.FormatRFC9990, report.FormatRFC7489} {
		t.Run(string(f), func(t *testing.T) {
			e := newEnv(t)
			e.runner.Format = f
			a := policy("a.example", "mailto:dmarc@a.example")
			b := policy("b.example", "mailto:rua@consumer.example")
			want := map[string]int{}
			for i := 0; i < 7; i++ {
				e.put(message(time.Duration(i)*time.Hour, "192.0.2.1", "a.example", a, i%3 != 0))
				want["a.example"]++
			}
			for i := 0; i < 4; i++ {
				e.put(message(time.Duration(i)*time.Hour, "2001:db8::25", "b.example", b, true))
				want["b.example"]++
			}
			temp := message(time.Hour, "192.0.2.1", "a.example", a, true)
			temp.DMARCResult = "temperror"
			e.put(temp)
			// Today's records: the period is still open.
			e.put(message(24*time.Hour+10*time.Minute, "192.0.2.1", "a.example", a, true))

			sum := e.run()
			if sum.Reports != 2 || sum.Sent != 2 || sum.Done != 2 || sum.Skipped != 1 || sum.Postponed != 0 {
				t.Errorf("summary %+v", sum)
			}
			got := map[string]int{}
			for _, r := range e.received(f) {
				got[r.domain] += r.counts
				if wantTo := map[string]string{"a.example": "dmarc@a.example", "b.example": "rua@consumer.example"}[r.domain]; r.to != wantTo {
					t.Errorf("report for %s went to %s, want %s", r.domain, r.to, wantTo)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("messages per policy domain in the reports %v, want %v", got, want)
			}
			if n := e.pending(); n != 1 {
				t.Errorf("%d records pending, want 1 (today's)", n)
			}

			sum = e.run()
			if sum.Sent != 0 || sum.Reports != 0 || len(e.smtp.Messages()) != 2 {
				t.Errorf("second run: %+v, %d mails in all", sum, len(e.smtp.Messages()))
			}
		})
	}
}

// TestCrashBetweenSendAndMark: the run stops after the relay took the mail
// and before the records are marked; the next run sends the report again,
// with the same Report-ID and attachment name, and the one after that
// sends nothing.
func TestCrashBetweenSendAndMark(t *testing.T) {
	e := newEnv(t)
	a := policy("a.example", "mailto:dmarc@a.example")
	e.put(message(time.Hour, "192.0.2.1", "a.example", a, true), message(2*time.Hour, "192.0.2.2", "a.example", a, false))

	ctx, cancel := context.WithCancel(context.Background())
	e.runner.beforeMark = func(*report.Report) { cancel() } // the process dies here
	if _, err := e.runner.Run(ctx); err == nil {
		t.Fatal("Run with the store gone before marking returned no error")
	}
	e.runner.beforeMark = nil
	if n := e.pending(); n != 2 {
		t.Fatalf("%d records pending after the crash, want 2", n)
	}
	first := e.received(report.FormatRFC9990)
	if len(first) != 1 {
		t.Fatalf("%d mails before the crash, want 1", len(first))
	}

	e.run()
	all := e.received(report.FormatRFC9990)
	if len(all) != 2 {
		t.Fatalf("%d mails after the re-run, want 2", len(all))
	}
	if all[1].reportID != first[0].reportID || all[1].filename != first[0].filename || all[1].subject != first[0].subject {
		t.Errorf("re-send differs: %+v vs %+v", all[1], first[0])
	}
	if all[1].counts != 2 {
		t.Errorf("re-send counts %d messages, want 2", all[1].counts)
	}
	e.run()
	if n := len(e.smtp.Messages()); n != 2 || e.pending() != 0 {
		t.Errorf("third run: %d mails in all (want 2), %d pending", n, e.pending())
	}
}

// TestExternalDestinations: RFC 9990 §4 in the reporter: an authorised
// consumer gets its report, an unauthorised one gets nothing and the
// report is done, a DNS temperror postpones the report without losing it,
// and it is sent once DNS answers.
func TestExternalDestinations(t *testing.T) {
	e := newEnv(t)
	b := policy("b.example", "mailto:rua@consumer.example")
	c := policy("c.example", "mailto:rua@stranger.example")
	d := policy("d.example", "mailto:rua@flaky.example")
	e.put(message(time.Hour, "192.0.2.1", "b.example", b, true),
		message(time.Hour, "192.0.2.1", "c.example", c, true),
		message(time.Hour, "192.0.2.1", "d.example", d, true), message(2*time.Hour, "192.0.2.1", "d.example", d, false))
	e.dns.Fail("d.example._report._dmarc.flaky.example.", dns.RcodeServerFailure)

	sum := e.run()
	if sum.Sent != 1 || sum.Done != 2 || sum.Postponed != 1 || sum.Unsendable != 1 {
		t.Errorf("summary %+v, want 1 sent (b), 2 done (b, c), 1 postponed (d), 1 unsendable (c)", sum)
	}
	got := e.received(report.FormatRFC9990)
	if len(got) != 1 || got[0].domain != "b.example" || got[0].to != "rua@consumer.example" {
		t.Fatalf("mails %+v, want one for b.example", got)
	}
	if n := e.pending(); n != 2 {
		t.Fatalf("%d pending, want d.example's 2", n)
	}

	e.useDNS(dnstest.New(t, zone)) // DNS answers again (dnstest cannot lift a Fail)
	sum = e.run()
	got = e.received(report.FormatRFC9990)
	if sum.Sent != 1 || len(got) != 2 || got[1].domain != "d.example" || got[1].counts != 2 || e.pending() != 0 {
		t.Errorf("after DNS came back: %+v, mails %+v, %d pending", sum, got, e.pending())
	}
}

// TestGiveUp: a report postponed past give_up_after goes to the
// destinations that could be checked and is then done.
func TestGiveUp(t *testing.T) {
	e := newEnv(t)
	pol := policy("a.example", "mailto:dmarc@a.example")
	pol.RUA = append(pol.RUA, report.URI{Address: "mailto:rua@flaky.example"})
	pol.Domain = "d.example"
	pol.RUA[0] = report.URI{Address: "mailto:dmarc@d.example"}
	e.put(message(time.Hour, "192.0.2.1", "d.example", pol, true))
	e.dns.Fail("d.example._report._dmarc.flaky.example.", dns.RcodeServerFailure)
	if sum := e.run(); sum.Postponed != 1 || sum.Sent != 0 {
		t.Fatalf("within give_up_after: %+v", sum)
	}
	e.runner.Now = func() time.Time { return day.Add(24*time.Hour + 73*time.Hour) }
	sum := e.run()
	got := e.received(report.FormatRFC9990)
	if sum.Sent != 1 || sum.Done != 1 || len(got) != 1 || got[0].to != "dmarc@d.example" || e.pending() != 0 {
		t.Errorf("after give_up_after: %+v, mails %+v, %d pending", sum, got, e.pending())
	}
}

// TestRelayFailures: a relay that is down postpones (nothing marked); a
// 4xx for a recipient postpones; a 5xx drops that destination only; a size
// limit smaller than the mail skips the destination.
func TestRelayFailures(t *testing.T) {
	e := newEnv(t)
	pol := policy("a.example", "mailto:dmarc@a.example")
	pol.RUA = []report.URI{{Address: "mailto:gone@a.example"}, {Address: "mailto:tiny@a.example", MaxSize: "1k"},
		{Address: "mailto:dmarc@a.example"}}
	e.put(message(time.Hour, "192.0.2.1", "a.example", pol, true))

	good := e.runner.Mailer
	e.runner.Mailer = NewSender(SMTPConfig{Host: "127.0.0.1", Port: closedPort(t), StartTLS: StartTLSNone, Timeout: 5 * time.Second})
	if sum := e.run(); sum.Postponed != 1 || sum.Done != 0 || e.pending() != 1 {
		t.Fatalf("relay down: %+v, %d pending", sum, e.pending())
	}
	e.runner.Mailer = good
	e.smtp.Refuse("dmarc@a.example", "451 4.3.0 try again later")
	e.smtp.Refuse("gone@a.example", "550 5.1.1 no such user")
	if sum := e.run(); sum.Postponed != 1 || e.pending() != 1 {
		t.Fatalf("4xx: %+v, %d pending", sum, e.pending())
	}
	e.smtp.Refuse("dmarc@a.example", "")
	sum := e.run()
	got := e.received(report.FormatRFC9990)
	if sum.Sent != 1 || sum.Unsendable != 2 || sum.Done != 1 || len(got) != 1 || got[0].to != "dmarc@a.example" || e.pending() != 0 {
		t.Errorf("5xx and size limit: %+v, mails %+v, %d pending", sum, got, e.pending())
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	s := smtptest.New(t, smtptest.Options{})
	p := s.Port()
	s.Close()
	return p
}

// TestOneInstanceSends: while another MX holds the store's lock, a run
// sends nothing and marks nothing.
func TestOneInstanceSends(t *testing.T) {
	e := newEnv(t)
	e.put(message(time.Hour, "192.0.2.1", "a.example", policy("a.example", "mailto:dmarc@a.example"), true))
	release, ok, err := e.st.TryLock(context.Background(), LockName)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if sum := e.run(); sum.Locked || sum.Sent != 0 || len(e.smtp.Messages()) != 0 || e.pending() != 1 {
		t.Errorf("with the lock held elsewhere: %+v, %d mails, %d pending", sum, len(e.smtp.Messages()), e.pending())
	}
	release()
	if sum := e.run(); !sum.Locked || sum.Sent != 1 {
		t.Errorf("after release: %+v", sum)
	}
}

// TestSuppressDryRunOut: the suppression list, --dry-run and --out.
func TestSuppressDryRunOut(t *testing.T) {
	e := newEnv(t)
	a := policy("a.example", "mailto:dmarc@a.example")
	b := policy("b.example", "mailto:rua@consumer.example")
	e.put(message(time.Hour, "192.0.2.1", "a.example", a, true), message(time.Hour, "192.0.2.1", "b.example", b, true))

	e.runner.DryRun = true
	if sum := e.run(); sum.Reports != 2 || sum.Sent != 0 || len(e.smtp.Messages()) != 0 || e.pending() != 2 {
		t.Errorf("dry run: %+v, %d mails, %d pending", sum, len(e.smtp.Messages()), e.pending())
	}
	e.runner.DryRun = false
	e.runner.OutDir = t.TempDir()
	if sum := e.run(); sum.Written != 2 || sum.Sent != 0 || e.pending() != 2 {
		t.Errorf("out: %+v, %d pending", sum, e.pending())
	}
	files, _ := filepath.Glob(filepath.Join(e.runner.OutDir, "*.xml.gz"))
	sort.Strings(files)
	re := regexp.MustCompile(`^receiver\.example![ab]\.example!1772323200!1772409599![A-Za-z0-9]+\.xml\.gz$`)
	if len(files) != 2 || !re.MatchString(filepath.Base(files[0])) {
		t.Errorf("files %v", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	e.runner.OutDir = ""
	e.runner.Suppress = []string{"A.example", "rua@consumer.example"}
	sum := e.run()
	if sum.Suppressed != 1 || sum.Sent != 0 || sum.Done != 2 || len(e.smtp.Messages()) != 0 || e.pending() != 0 {
		t.Errorf("suppressed: %+v, %d mails, %d pending", sum, len(e.smtp.Messages()), e.pending())
	}
}

func TestSuppressedMatching(t *testing.T) {
	r := &Runner{Suppress: []string{"example.com", "@list.example", "one@x.example"}}
	for name, want := range map[string]bool{
		"example.com": true, "sub.example.com": true, "notexample.com": false,
		"a@example.com": true, "a@list.example": true, "one@x.example": true, "two@x.example": false, "x.example": false,
	} {
		if got := r.suppressed(name); got != want {
			t.Errorf("suppressed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCutoff(t *testing.T) {
	r := &Runner{Delay: 15 * time.Minute, Options: report.Options{Period: 6 * time.Hour}}
	for now, want := range map[time.Time]time.Time{
		day.Add(6*time.Hour + 10*time.Minute): day,                    // 06:00 period closed, but within the delay
		day.Add(6*time.Hour + 20*time.Minute): day.Add(6 * time.Hour), // 00:00–06:00 may be reported
		day.Add(23 * time.Hour):               day.Add(18 * time.Hour),
	} {
		got, err := r.Cutoff(now)
		if err != nil || !got.Equal(want) {
			t.Errorf("Cutoff(%v) = %v, %v; want %v", now, got, err, want)
		}
	}
	r.Options.Period = 7 * time.Hour
	if _, err := r.Cutoff(day); !errors.Is(err, report.ErrBadPeriod) {
		t.Errorf("7h period: %v", err)
	}
}

// TestLoop: the scheduler sends at start (catching up on closed periods)
// and returns when its context ends.
func TestLoop(t *testing.T) {
	e := newEnv(t)
	e.put(message(time.Hour, "192.0.2.1", "a.example", policy("a.example", "mailto:dmarc@a.example"), true))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.runner.Loop(ctx, time.Minute)
		close(done)
	}()
	for i := 0; e.pending() != 0; i++ { // sent and marked
		if i > 1000 {
			t.Fatal("the scheduler did not report")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(e.smtp.Messages()); n != 1 || e.pending() != 0 {
		t.Errorf("%d mails, %d pending; want 1 and 0", n, e.pending())
	}
}

// TestInvalidURIsDoNotStick: a report whose rua holds only URIs we cannot
// use (mailto:0, another scheme) is logged and done, never left pending.
func TestInvalidURIsDoNotStick(t *testing.T) {
	e := newEnv(t)
	pol := policy("a.example", "mailto:0")
	pol.RUA = append(pol.RUA, report.URI{Address: "https://a.example/dmarc"})
	e.put(message(time.Hour, "192.0.2.1", "a.example", pol, true))
	sum := e.run()
	if sum.Done != 1 || sum.Sent != 0 || sum.Unsendable != 2 || e.pending() != 0 || len(e.smtp.Messages()) != 0 {
		t.Errorf("summary %+v, %d pending, %d mails", sum, e.pending(), len(e.smtp.Messages()))
	}
}

// pgDSN gives a fresh PostgreSQL database of the test's own (dropped at the
// end), under AUTHMILTER_TEST_PG_DSN as scripts/test-all provides it.
// Without it the test is skipped, and fails under CI=true.
func pgDSN(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("AUTHMILTER_TEST_PG_DSN")
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AUTHMILTER_TEST_PG_DSN is not set: CI must run PostgreSQL (scripts/test-all starts one)")
		}
		t.Skip("AUTHMILTER_TEST_PG_DSN is not set: no PostgreSQL to test against")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := fmt.Sprintf("amreport_%x", b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestSeveralMXOnePostgres: two MX hosts record into one PostgreSQL
// database and both run the reporter at the same moment: each report is
// sent exactly once (the advisory lock), counting the mail of both hosts.
func TestSeveralMXOnePostgres(t *testing.T) {
	dsn := pgDSN(t)
	e := newEnv(t) // the SMTP sink, DNS and a runner template
	a := policy("a.example", "mailto:dmarc@a.example")
	b := policy("b.example", "mailto:rua@consumer.example")
	var runners []*Runner
	for i, mx := range []string{"mx1", "mx2"} {
		st, err := store.Open(context.Background(), store.Options{Backend: store.Postgres, PostgresDSN: dsn, SpoolDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		for j := 0; j < 5+i; j++ {
			r := message(time.Duration(j)*time.Hour, "192.0.2.1", "a.example", a, true)
			r.Reporter = mx
			if err := st.Put(context.Background(), r, message(time.Hour, "192.0.2.9", "b.example", b, false)); err != nil {
				t.Fatal(err)
			}
		}
		r := *e.runner
		r.Store = st
		runners = append(runners, &r)
	}
	for round := 0; round < 2; round++ {
		done := make(chan Summary, len(runners))
		for _, r := range runners {
			go func() {
				sum, err := r.Run(context.Background())
				if err != nil {
					t.Error(err)
				}
				done <- sum
			}()
		}
		for range runners {
			<-done
		}
	}
	got := map[string]int{}
	for _, r := range e.received(report.FormatRFC9990) {
		got[r.domain] += r.counts
	}
	if len(e.smtp.Messages()) != 2 || got["a.example"] != 11 || got["b.example"] != 11 {
		t.Errorf("%d mails counting %v; want 2 mails, 11 messages for each domain", len(e.smtp.Messages()), got)
	}
}
