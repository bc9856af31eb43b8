package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/incoming/incomingtest"
	"github.com/authmilter/authmilter/internal/store"
)

// testIncomingReports: report mails sent through the real Postfix to the
// site's rua mailbox are read by the milter hook, stored, and delivered as
// usual; the same report delivered again stores nothing twice; mail to
// another mailbox is not read (issue 22).
func testIncomingReports(t *testing.T, dnsAddr string) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
	cfg.StoreDir = filepath.Join(dir, "store")
	cfg.Extra = `
[incoming_reports]
recipients = ["dmarc@rcpt.test"]
domains = ["example.org"]
`
	m := runMilter(t, "incoming", cfg)
	reporter := client{IP: goodV4, Name: "mail.example.net", HELO: "mail.example.net"}
	xml := incomingtest.XML("google.test", "pf-1", "example.org", 1777593600,
		incomingtest.Row{IP: "192.0.2.1", Count: 40, DKIM: "pass", SPF: "pass"},
		incomingtest.Row{IP: "203.0.113.5", Count: 3, DKIM: "fail", SPF: "fail", Disposition: "reject"})
	send := func(rcpt, id string) {
		t.Helper()
		msg := withTestID(id, incomingtest.Mail("google.test", "pf-1", "example.org", rcpt, "application/gzip", xml))
		if _, err := sendOne(pf.smtpAlt, reporter, "noreply-dmarc@spf-pass.test", []string{rcpt}, msg); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
		d, err := pf.waitDelivered(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.get("Delivered-To"); len(got) != 1 || strings.TrimSpace(got[0]) != rcpt {
			t.Errorf("%s delivered to %q", id, got)
		}
	}
	send("dmarc@rcpt.test", newID(t.Name()))
	send("dmarc@rcpt.test", newID(t.Name()))      // re-delivery of the same report
	send("postmaster@rcpt.test", newID(t.Name())) // not a rua mailbox: not read
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(cfg.StoreDir, "records.db"), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, rows, err := st.IncomingReports(context.Background())
	if err != nil || n != 1 || rows != 2 {
		t.Fatalf("store: %d reports, %d rows, %v; want 1 report of 2 rows", n, rows, err)
	}
	ts, err := st.IncomingTotals(context.Background(), store.IncomingFilter{Domain: "example.org"}, store.BySource, 0)
	if err != nil || len(ts) != 2 || ts[0].Key != "192.0.2.1" || ts[0].Messages != 40 || ts[1].Failing() != 3 || ts[1].Rejected != 3 {
		t.Fatalf("by source: %+v %v", ts, err)
	}
	if !strings.Contains(m.log.String(), "incoming report stored before: ignored") {
		t.Errorf("the re-delivery was not seen as a duplicate")
	}
	st.Close()

	// With discard on, a new report is stored and Postfix discards the
	// mail (at end of DATA: it never enters the queue): a message sent
	// after it is delivered, the report mail never.
	cfg.Extra += "discard = true\n"
	m = runMilter(t, "incoming-discard", cfg)
	xml2 := incomingtest.XML("google.test", "pf-2", "example.org", 1777680000, incomingtest.Row{IP: "192.0.2.1", Count: 5, DKIM: "pass", SPF: "pass"})
	discarded, after := newID(t.Name()), newID(t.Name())
	msg := withTestID(discarded, incomingtest.Mail("google.test", "pf-2", "example.org", "dmarc@rcpt.test", "application/gzip", xml2))
	if _, err := sendOne(pf.smtpAlt, reporter, "noreply-dmarc@spf-pass.test", []string{"dmarc@rcpt.test"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	send("postmaster@rcpt.test", after) // not a rua mailbox: delivered; by then the report mail is long decided
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(pf.maildir, "new"))
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(pf.maildir, "new", e.Name())); err == nil && strings.Contains(string(b), "X-Test-Id: "+discarded+"\n") {
			t.Errorf("the stored report mail %s was delivered with discard = true", discarded)
		}
	}
	st2, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(cfg.StoreDir, "records.db"), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if n, _, _ := st2.IncomingReports(context.Background()); n != 2 {
		t.Errorf("after the discarded report: %d reports, want 2", n)
	}
}
