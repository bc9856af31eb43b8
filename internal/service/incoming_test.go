package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/incoming"
	"github.com/authmilter/authmilter/internal/incoming/incomingtest"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// TestIncomingReportsThroughMilter sends report mails through the real
// milter server to the site's rua mailbox and finds their rows in the
// store: a re-delivery stores nothing twice, ordinary mail and mail to
// other recipients is not read, an unreadable report mail is delivered and
// stores nothing, and with discard on a stored report mail is discarded.
func TestIncomingReportsThroughMilter(t *testing.T) {
	for _, discard := range []bool{false, true} {
		name := "deliver"
		if discard {
			name = "discard"
		}
		t.Run(name, func(t *testing.T) {
			st := tempStore(t)
			h := &harness{t: t, dns: dnstest.New(t, baseZone), logs: &testmilter.Logs{}}
			cfg := testmilter.Config(authservID, h.dns.Addr(), 300*time.Millisecond)
			cfg.Policy.IgnoreHosts = []string{}
			log := testmilter.Logger(h.logs, slog.LevelDebug)
			svc := testmilter.NewService(t, cfg, log, nil)
			seen := map[string]int{}
			in := &incoming.Ingester{Store: st, Domains: []string{"example.org"}, Log: log, Observe: func(r string) { seen[r]++ }}
			svc.Incoming = service.NewIncoming(in, []string{"DMARC@Example.org"}, discard, 1<<20)
			h.serve(svc, log)

			send := func(rcpt string, mail []byte) *gomilter.Action {
				t.Helper()
				fields, body := incomingtest.SplitMail(mail)
				c := h.connect("192.0.2.10", "mail-it1-f201.google.test", "mail-it1-f201.google.test")
				r, err := testmilter.Send(c.s, testmilter.Message{From: "noreply-dmarc@google.test", Rcpt: rcpt, Headers: fields, Body: [][]byte{body}})
				if err != nil {
					t.Fatal(err)
				}
				return r.Action
			}
			count := func() (int64, int64) {
				n, rows, err := st.IncomingReports(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return n, rows
			}
			xml := incomingtest.XML("google.test", "r1", "example.org", 1777593600,
				incomingtest.Row{IP: "192.0.2.1", Count: 7, DKIM: "pass", SPF: "pass"},
				incomingtest.Row{IP: "198.51.100.9", Count: 2, DKIM: "fail", SPF: "fail", Disposition: "reject"})
			mail := incomingtest.Mail("google.test", "r1", "example.org", "dmarc@example.org", "application/gzip", xml)
			wantAct := byte(gomilter.ActContinue)
			if discard {
				wantAct = byte(gomilter.ActDiscard)
			}
			if a := send("dmarc@example.org", mail); byte(a.Code) != wantAct {
				t.Fatalf("action %c, want %c", a.Code, wantAct)
			}
			if n, rows := count(); n != 1 || rows != 2 {
				t.Fatalf("after the first delivery: %d reports, %d rows", n, rows)
			}
			ts, _ := st.IncomingTotals(context.Background(), store.IncomingFilter{Domain: "example.org"}, store.ByDomain, 0)
			if len(ts) != 1 || ts[0].Messages != 9 || ts[0].DMARCPass != 7 || ts[0].Rejected != 2 {
				t.Fatalf("totals %+v", ts)
			}
			// Re-delivery: nothing stored twice (and, a duplicate being in the
			// store, discarded too when discard is on).
			if a := send("dmarc@example.org", mail); byte(a.Code) != wantAct {
				t.Fatalf("re-delivery: action %c, want %c", a.Code, wantAct)
			}
			// The same mail to another mailbox is not read.
			other := incomingtest.Mail("google.test", "r2", "example.org", "postmaster@example.org", "application/gzip", xml)
			if a := send("postmaster@example.org", other); a.Code != gomilter.ActContinue {
				t.Fatalf("other recipient: action %c", a.Code)
			}
			// A broken report to the rua mailbox: delivered, nothing stored.
			broken := incomingtest.Mail("google.test", "r3", "example.org", "dmarc@example.org", "application/gzip", xml[:len(xml)/2])
			if a := send("dmarc@example.org", broken); a.Code != gomilter.ActContinue {
				t.Fatalf("broken: action %c", a.Code)
			}
			if n, rows := count(); n != 1 || rows != 2 {
				t.Fatalf("at the end: %d reports, %d rows", n, rows)
			}
			if seen[incoming.Stored] != 1 || seen[incoming.Duplicate] != 1 || seen[incoming.Invalid] != 1 {
				t.Errorf("observed %v", seen)
			}
		})
	}
}

// TestIncomingReportsSlots: at most service.MaxConcurrent report mails are
// kept at once; one more is delivered unread (counted invalid) and stores
// nothing; once the others are aborted, the next one is read.
func TestIncomingReportsSlots(t *testing.T) {
	st := tempStore(t)
	h := &harness{t: t, dns: dnstest.New(t, baseZone), logs: &testmilter.Logs{}}
	cfg := testmilter.Config(authservID, h.dns.Addr(), 300*time.Millisecond)
	cfg.Policy.IgnoreHosts = []string{}
	log := testmilter.Logger(h.logs, slog.LevelDebug)
	svc := testmilter.NewService(t, cfg, log, nil)
	seen := map[string]int{}
	var mu sync.Mutex
	in := &incoming.Ingester{Store: st, Domains: []string{"example.org"}, Log: log, Observe: func(r string) { mu.Lock(); seen[r]++; mu.Unlock() }}
	svc.Incoming = service.NewIncoming(in, []string{"dmarc@example.org"}, false, 1<<20)
	h.serve(svc, log)
	mail := func(id string) testmilter.Message {
		xml := incomingtest.XML("google.test", id, "example.org", 1777593600, incomingtest.Row{IP: "192.0.2.1", Count: 1, DKIM: "pass", SPF: "pass"})
		fields, body := incomingtest.SplitMail(incomingtest.Mail("google.test", id, "example.org", "dmarc@example.org", "application/gzip", xml))
		return testmilter.Message{From: "noreply-dmarc@google.test", Rcpt: "dmarc@example.org", Headers: fields, Body: [][]byte{body}}
	}
	var held []*conn
	for i := range service.MaxConcurrent {
		c := h.connect("192.0.2.10", "r.google.test", "r.google.test")
		m := mail(fmt.Sprint("held", i))
		m.NoEnd = true
		if _, err := testmilter.Send(c.s, m); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c := h.connect("192.0.2.10", "r.google.test", "r.google.test")
	if r, err := testmilter.Send(c.s, mail("one-too-many")); err != nil || r.Action.Code != gomilter.ActContinue {
		t.Fatalf("one too many: %v %v", r.Action, err)
	}
	if n, _, _ := st.IncomingReports(context.Background()); n != 0 {
		t.Fatalf("%d reports stored from the mail over the slots", n)
	}
	for _, c := range held {
		if err := c.s.Abort(); err != nil {
			t.Fatal(err)
		}
		// ABORT has no reply: a command that has one shows the server
		// handled it (one connection is served in order).
		if _, err := c.s.Mail("<next@google.test>", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := testmilter.Send(c.s, mail("after")); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := st.IncomingReports(context.Background()); n != 1 {
		t.Fatalf("after the others ended: %d reports, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[incoming.Invalid] != 1 || seen[incoming.Stored] != 1 {
		t.Errorf("observed %v", seen)
	}
}

// tempStore opens a SQLite record store in a temporary directory, closed
// when the test ends.
func tempStore(t testing.TB) *store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
