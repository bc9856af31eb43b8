package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
)

// reportZone: a.test reports to its own domain, b.test to an external
// consumer that authorised it (RFC 9990 §4). 192.0.2.0/24 may send for both.
const reportZone = `
$TTL 300
a.test.                  IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
b.test.                  IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.a.test.           IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@a.test"
_dmarc.b.test.           IN TXT "v=DMARC1; p=none; rua=mailto:rua@reports.test"
b.test._report._dmarc.reports.test. IN TXT "v=DMARC1"
`

// TestReportEndToEnd: messages through the milter (the real binary, its
// SQLite store) → `authmilter report` → mail received over SMTP with
// STARTTLS and AUTH → each attachment unzipped, valid against the RFC 9990
// schema, and counting exactly the messages sent for its policy domain.
// A second run sends nothing.
func TestReportEndToEnd(t *testing.T) {
	reporttest.Xmllint(t) // fail early under CI when it is missing
	bin := buildBinary(t)
	dns := dnstest.New(t, reportZone)
	sink := smtptest.New(t, smtptest.Options{TLS: true, User: "reporter", Password: "pw"})
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "am.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`authserv_id = "mx.receiver.test"
[milter]
listen = ["inet:%d@127.0.0.1"]
[dns]
servers = ["%s"]
timeout = "1s"
attempts = 1
[policy]
ignore_hosts = []
[store]
dir = "%s"
[report]
from = "dmarc-noreply@receiver.test"
org_name = "Receiver Test"
[report.smtp]
host = "127.0.0.1"
port = %d
starttls = "required"
ca_file = "%s"
username = "reporter"
password = "pw"
timeout = "10s"
`, port, dns.Addr(), dir, sink.Port(), sink.CAFile(t))), 0o600); err != nil {
		t.Fatal(err)
	}

	serve := startProc(t, bin, "serve", "-config", cfg)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	serve.waitListening(addr)
	sent := map[string]int{}
	for i, m := range []struct{ ip, domain string }{
		{"192.0.2.1", "a.test"}, {"192.0.2.1", "a.test"}, {"192.0.2.7", "a.test"},
		{"198.51.100.1", "a.test"}, // SPF fail, DMARC fail, p=reject
		{"192.0.2.1", "b.test"}, {"198.51.100.1", "b.test"},
	} {
		s := dial(t, "tcp", addr)
		if _, err := testmilter.Send(s, senderMessage(m.ip, m.domain, "receiver.test", [2]string{"Subject", fmt.Sprintf(" message %d", i)})); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		s.Close()
		sent[m.domain]++
	}
	serve.signal(syscall.SIGTERM)
	if err := serve.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, serve.logs.String())
	}

	// Right away, the day of the messages is still open: the dry run says
	// so, and when it will be reported (issue 19).
	var early, earlyErr bytes.Buffer
	if code := cmdReport([]string{"-config", cfg, "-dry-run"}, &early, &earlyErr); code != 0 ||
		!strings.Contains(early.String(), "no period has closed yet: records of 2 policy domain(s)") ||
		!strings.Contains(early.String(), "(its end plus report.delay 15m0s)") {
		t.Errorf("dry run before the period closed: exit %d\n%s%s", code, early.String(), earlyErr.String())
	}

	// The day of the messages has ended: report as of tomorrow 01:00 UTC.
	_, end := report.PeriodOf(time.Now(), 24*time.Hour)
	now := end.Add(time.Hour).Format(time.RFC3339)
	var out, errb bytes.Buffer
	if code := cmdReport([]string{"-config", cfg, "-dry-run", "-now", now}, &out, &errb); code != 0 || len(sink.Messages()) != 0 {
		t.Fatalf("dry run: exit %d, %d mails\n%s%s", code, len(sink.Messages()), out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := cmdReport([]string{"-config", cfg, "-now", now}, &out, &errb); code != 0 {
		t.Fatalf("report: exit %d\n%s%s", code, out.String(), errb.String())
	}
	got := map[string]int{}
	for _, m := range sink.Messages() {
		p, err := m.ParseReport()
		if err != nil {
			t.Fatal(err)
		}
		reporttest.Validate(t, report.FormatRFC9990, p.XML)
		var fb struct {
			Domain string `xml:"policy_published>domain"`
			Counts []int  `xml:"record>row>count"`
		}
		if err := xml.Unmarshal(p.XML, &fb); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"a.test": "dmarc@a.test", "b.test": "rua@reports.test"}[fb.Domain]
		if m.To != want || !m.TLS || m.User != "reporter" {
			t.Errorf("report for %s: to %s tls=%v user=%q; want to %s over TLS with AUTH", fb.Domain, m.To, m.TLS, m.User, want)
		}
		if !strings.HasPrefix(p.Filename, "receiver.test!"+fb.Domain+"!") {
			t.Errorf("attachment %s", p.Filename)
		}
		for _, c := range fb.Counts {
			got[fb.Domain] += c
		}
	}
	t.Logf("messages per policy domain: sent %v, reported %v", sent, got)
	if fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Errorf("messages counted per policy domain %v, want %v\n%s%s", got, sent, out.String(), errb.String())
	}

	out.Reset()
	if code := cmdReport([]string{"-config", cfg, "-now", now}, &out, &errb); code != 0 || len(sink.Messages()) != 2 {
		t.Errorf("second run: exit %d, %d mails in all (want 2)\n%s", code, len(sink.Messages()), out.String())
	}
}

func TestReportFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("authserv_id = \"mx.test\"\n[store]\ndir = %q\n", dir)), 0o600)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-config", cfg, "-period", "5h"}, 2, "period"},
		{[]string{"-config", cfg, "-now", "yesterday"}, 2, "-now"},
		{[]string{"-config", cfg, "-out", filepath.Join(dir, "missing")}, 2, "not a directory"},
		{[]string{"-config", cfg, "extra"}, 2, "unexpected argument"},
		{[]string{"-config", cfg}, 1, "report.from is not set"},
		{[]string{"-config", cfg, "-dry-run"}, 0, ""},
		{[]string{"-config", cfg, "-out", dir, "-period", "6h"}, 0, ""},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := cmdReport(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.msg) {
			t.Errorf("report %v: exit %d (want %d)\n%s%s", tt.args, code, tt.code, out.String(), errb.String())
		}
	}
}

// TestServeSchedulerSends: with report.enabled, serve sends the reports of
// closed periods by itself (here: yesterday's records, already in the
// store when it starts) and stops cleanly on SIGTERM.
func TestServeSchedulerSends(t *testing.T) {
	reporttest.Xmllint(t)
	bin := buildBinary(t)
	dns := dnstest.New(t, reportZone)
	sink := smtptest.New(t, smtptest.Options{})
	dir := t.TempDir()

	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "records.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	yesterday := time.Now().UTC().Add(-24 * time.Hour)
	pol := report.PolicyPublished{Domain: "a.test", DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r", P: "reject",
		Testing: "n", Pct: -1, RUA: []report.URI{{Address: "mailto:dmarc@a.test"}}}
	for i := 0; i < 3; i++ {
		if err := st.Put(context.Background(), report.Record{Time: yesterday, SourceIP: "192.0.2.1", HeaderFrom: "a.test",
			EnvelopeFrom: "a.test", Policy: pol, Disposition: "pass", DKIMAligned: "fail", SPFAligned: "pass",
			DMARCResult: "pass", SPF: []report.SPFResult{{Domain: "a.test", Scope: "mfrom", Result: "pass"}}}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	cfg := filepath.Join(dir, "am.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`authserv_id = "mx.receiver.test"
[milter]
listen = ["inet:%d@127.0.0.1"]
[dns]
servers = ["%s"]
timeout = "1s"
attempts = 1
[store]
dir = "%s"
[report]
enabled = true
from = "dmarc-noreply@receiver.test"
delay = "0s"
[report.smtp]
port = %d
`, freePort(t), dns.Addr(), dir, sink.Port())), 0o600)
	serve := startProc(t, bin, "serve", "-config", cfg)
	serve.waitUntil("sent a report mail", func() bool { return len(sink.Messages()) > 0 })
	serve.signal(syscall.SIGTERM)
	if err := serve.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, serve.logs.String())
	}
	ms := sink.Messages()
	if len(ms) != 1 || ms[0].To != "dmarc@a.test" {
		t.Fatalf("mails %+v", ms)
	}
	p, err := ms[0].ParseReport()
	if err != nil {
		t.Fatal(err)
	}
	reporttest.Validate(t, report.FormatRFC9990, p.XML)
	if !bytes.Contains(p.XML, []byte("<count>3</count>")) {
		t.Errorf("report does not count the 3 messages:\n%s", p.XML)
	}
}
