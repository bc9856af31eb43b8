package integration

import (
	"strings"
	"testing"
)

// TestPostfixHarness proves the Postfix side alone: mail flows on the port
// without milters, and a port whose milter is down answers with
// milter_default_action (tempfail: the greeting and EHLO are normal, MAIL gets 451 4.7.1).
func TestPostfixHarness(t *testing.T) {
	needPostfix(t)
	cl := client{IP: "192.0.2.1", Name: "mail.harness.test", HELO: "mail.harness.test"}

	t.Run("no-milter port delivers unchanged", func(t *testing.T) {
		id := newID(t.Name())
		if _, err := sendOne(pf.smtpPlain, cl, "a@harness.test", []string{"plain@rcpt.test"}, message(id, "a@harness.test")); err != nil {
			t.Fatal(err)
		}
		d, err := pf.waitDelivered(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.get("Authentication-Results"); len(got) != 0 {
			t.Errorf("A-R without a milter: %q", got)
		}
		if got := d.get("Delivered-To"); len(got) != 1 || strings.TrimSpace(got[0]) != "plain@rcpt.test" {
			t.Errorf("Delivered-To = %q", got)
		}
	})

	t.Run("IPv6 client address via XCLIENT", func(t *testing.T) {
		id := newID(t.Name())
		v6 := client{IP: "2001:db8::1", Name: "mail6.harness.test", HELO: "mail6.harness.test"}
		if _, err := sendOne(pf.smtpPlain, v6, "a@harness.test", []string{"plain@rcpt.test"}, message(id, "a@harness.test")); err != nil {
			t.Fatal(err)
		}
		d, err := pf.waitDelivered(id)
		if err != nil {
			t.Fatal(err)
		}
		if rcvd := d.get("Received"); len(rcvd) == 0 || !strings.Contains(rcvd[0], "[IPv6:2001:db8::1]") {
			t.Errorf("Received does not show the XCLIENT IPv6 address: %q", rcvd)
		}
	})

	t.Run("hold queue is readable", func(t *testing.T) {
		id := newID(t.Name())
		qid, err := sendOne(pf.smtpPlain, cl, "hold@harness.test", []string{"held@rcpt.test"}, message(id, "hold@harness.test"))
		if err != nil {
			t.Fatal(err)
		}
		held, head, err := pf.held(qid)
		if err != nil || !held {
			t.Fatalf("queue id %s held=%v err=%v", qid, held, err)
		}
		if got := head.get("X-Test-Id"); len(got) != 1 || strings.TrimSpace(got[0]) != id {
			t.Errorf("postcat header of %s: X-Test-Id = %q, want %s:\n%s", qid, got, id, head.Raw)
		}
		q, err := pf.queueListing()
		if err != nil || !strings.Contains(q, qid+"!") {
			t.Errorf("postqueue -p does not mark %s held (err %v):\n%s", qid, err, q)
		}
	})

	t.Run("milter down gives 451 at MAIL", func(t *testing.T) {
		// Nothing listens on the alt milter address outside the cases that
		// start one there.
		id := newID(t.Name())
		_, err := sendOne(pf.smtpAlt, cl, "a@harness.test", []string{"down@rcpt.test"}, message(id, "a@harness.test"))
		se, ok := err.(*smtpError)
		if !ok || se.Code != 451 || se.Stage != "MAIL" || !strings.HasPrefix(se.Msg, "4.7.1") {
			t.Fatalf("got %v, want MAIL: 451 4.7.1 ...", err)
		}
	})
}
