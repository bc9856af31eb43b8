package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
)

// TestFailureReports (issue #23): through the real Postfix, a message that
// fails DMARC for a domain publishing ruf= produces one RFC 6591 report at
// the relay, with the local parts of the reported header fields redacted;
// more failing messages from the same IP produce no more (rate limit).
func TestFailureReports(t *testing.T) {
	needMilter(t)
	dnsSrv := dnstest.New(t, `$TTL 300
ruf.test.         IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.ruf.test.  IN TXT "v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@ruf.test"
`)
	relay := smtptest.New(t, smtptest.Options{})
	cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
	cfg.Extra = fmt.Sprintf(`
[report]
from = "dmarc-reports@receiver.test"

[report.smtp]
host = "127.0.0.1"
port = %d
starttls = "none"

[failure_reports]
enabled = true
policy_domains = ["ruf.test"]
send_interval = "1s"
`, relay.Port())
	m := runMilter(t, "failure-reports", cfg)

	bad := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
	for range 5 {
		id := newID(t.Name())
		msg := message(id, "Chief Executive <ceo@ruf.test>", "To: Bob <bob@rcpt.test>")
		_, err := sendOne(pf.smtpAlt, bad, "ceo@ruf.test", []string{"bob@rcpt.test"}, msg)
		wantSMTPError(t, err, 550, "5.7.1")
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(relay.Messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // two more send intervals: nothing else may come
	msgs := relay.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d report mails at the relay for 5 failing messages from one IP, want 1\n%s", len(msgs), tail(m.log.String(), 4000))
	}
	rep := msgs[0]
	body := string(rep.Data)
	if rep.To != "ruf@ruf.test" || rep.From != "dmarc-reports@receiver.test" {
		t.Errorf("envelope %s -> %s", rep.From, rep.To)
	}
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=feedback-report;",
		"Feedback-Type: auth-failure", "Auth-Failure: dmarc", "Identity-Alignment: dkim, spf",
		"Reported-Domain: ruf.test", "Source-IP: " + badV4, "Delivery-Result: reject",
		"Original-Mail-From: <redacted@ruf.test>",
		"Content-Type: text/rfc822-headers",
		"From: Chief Executive <redacted@ruf.test>", "To: Bob <redacted@rcpt.test>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("report lacks %q:\n%s", want, body)
		}
	}
	for _, leak := range []string{"ceo@", "bob@"} {
		if strings.Contains(body, leak) {
			t.Errorf("report carries %q:\n%s", leak, body)
		}
	}
}
