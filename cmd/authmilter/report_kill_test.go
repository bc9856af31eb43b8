package main

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

// TestReportKilledBetweenSendAndMark: the reporter process is killed with
// SIGKILL after the relay accepted a report and before the records were
// marked (the SMTP server kills it when it sends QUIT). The next run sends
// that report once more with the same Report-ID; the run after sends
// nothing.
func TestReportKilledBetweenSendAndMark(t *testing.T) {
	bin := buildBinary(t)
	dns := dnstest.New(t, reportZone)
	dir := t.TempDir()

	// Records of yesterday, as the milter leaves them.
	day, _ := report.PeriodOf(time.Now().Add(-24*time.Hour), 24*time.Hour)
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "records.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var recs []report.Record
	for i := 0; i < 3; i++ {
		recs = append(recs, report.Record{
			Time: day.Add(time.Duration(i+1) * time.Hour), Reporter: "mx.receiver.test", SourceIP: "192.0.2.1",
			HeaderFrom: "a.test", EnvelopeFrom: "a.test", EnvelopeTo: []string{"receiver.test"},
			SPF:         []report.SPFResult{{Domain: "a.test", Scope: "mfrom", Result: "pass"}},
			Policy:      report.PolicyPublished{Domain: "a.test", DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r", P: "reject", Testing: "n", Pct: -1, RUA: []report.URI{{Address: "mailto:dmarc@a.test"}}},
			Disposition: "pass", DKIMAligned: "fail", SPFAligned: "pass", DMARCResult: "pass",
		})
	}
	if err := st.Put(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var (
		mu     sync.Mutex
		victim *os.Process
	)
	sink := smtptest.New(t, smtptest.Options{OnQuit: func() {
		mu.Lock()
		defer mu.Unlock()
		if victim != nil {
			victim.Kill() // SIGKILL: no deferred code, no marking
			victim = nil
		}
	}})
	cfg := filepath.Join(dir, "am.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`authserv_id = "mx.receiver.test"
[dns]
servers = ["%s"]
timeout = "1s"
attempts = 1
[store]
dir = "%s"
[report]
from = "dmarc-noreply@receiver.test"
[report.smtp]
host = "127.0.0.1"
port = %d
starttls = "none"
timeout = "10s"
`, dns.Addr(), dir, sink.Port())), 0o600)

	run := func(kill bool) error {
		cmd := exec.Command(bin, "report", "-config", cfg)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		mu.Lock()
		if err := cmd.Start(); err != nil {
			mu.Unlock()
			t.Fatal(err)
		}
		if kill {
			victim = cmd.Process
		}
		mu.Unlock()
		err := cmd.Wait()
		if err != nil && !kill {
			t.Logf("report output:\n%s", out.String())
		}
		return err
	}

	if err := run(true); err == nil {
		t.Fatal("the first run was not killed")
	}
	if n := len(sink.Messages()); n != 1 {
		t.Fatalf("after the killed run: %d mails, want 1", n)
	}
	if err := run(false); err != nil {
		t.Fatalf("second run: %v", err)
	}
	msgs := sink.Messages()
	if len(msgs) != 2 {
		t.Fatalf("after the second run: %d mails, want 2 (one re-send)", len(msgs))
	}
	subj := func(m smtptest.Message) string {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		return msg.Header.Get("Subject")
	}
	if a, b := subj(msgs[0]), subj(msgs[1]); a != b {
		t.Errorf("re-send has another Subject/Report-ID:\n%s\n%s", a, b)
	}
	if err := run(false); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if n := len(sink.Messages()); n != 2 {
		t.Errorf("third run sent again: %d mails", n)
	}
}
