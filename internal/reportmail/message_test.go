package reportmail

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
)

func testReport(t *testing.T, domain string) *report.Report {
	t.Helper()
	pol := report.PolicyPublished{Domain: domain, P: "none", Pct: -1, RUA: []report.URI{{Address: "mailto:d@" + domain}}}
	rec := report.Record{Time: time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC), SourceIP: "192.0.2.1", HeaderFrom: domain,
		Policy: pol, Disposition: "none", DKIMAligned: "fail", SPFAligned: "fail", DMARCResult: "fail"}
	reps, _, err := report.Build([]report.Entry{{ID: "1", Record: rec}}, report.Options{Receiver: "receiver.example",
		Email: "r@receiver.example"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("Build: %v", err)
	}
	return reps[0]
}

func TestCompose(t *testing.T) {
	for _, domain := range []string{"a.example", strings.Repeat("long-label.", 6) + "example"} {
		r := testReport(t, domain)
		gz, err := r.Gzip(report.FormatRFC9990)
		if err != nil {
			t.Fatal(err)
		}
		date := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
		raw := Compose(r, "r@receiver.example", "d@"+domain, gz, date)
		for _, line := range strings.Split(string(raw), "\r\n") {
			if len(line) > 998 { // RFC 5322 §2.1.1
				t.Errorf("line of %d octets", len(line))
			}
		}
		if !bytes.Equal(raw, Compose(r, "r@receiver.example", "d@"+domain, gz, date)) {
			t.Error("Compose is not deterministic")
		}
		if strings.Contains(strings.ReplaceAll(string(raw), "\r\n", ""), "\n") {
			t.Error("bare LF in the message")
		}
		p, err := smtptest.Message{Data: raw}.ParseReport()
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		// mail.Header.Get does not unfold; the folded Subject must read back
		// as the dmarc-subject of RFC 9990 §3.5.2.
		subj := strings.Join(strings.Fields(p.Header.Get("Subject")), " ")
		if subj != r.Subject() {
			t.Errorf("Subject %q, want %q", subj, r.Subject())
		}
		if long := len("Subject: "+r.Subject()) > 78; long != strings.Contains(string(raw), "\r\n Submitter:") {
			t.Errorf("folding: long=%v but message:\n%s", long, raw[:300])
		}
		if p.Filename != r.Filename() || p.Header.Get("Auto-Submitted") != "auto-generated" ||
			p.Header.Get("Message-Id") != "<"+r.ID+"@receiver.example>" {
			t.Errorf("headers %v, attachment %q", p.Header, p.Filename)
		}
		if d, err := mail.ParseDate(p.Header.Get("Date")); err != nil || !d.Equal(date) {
			t.Errorf("Date %q: %v", p.Header.Get("Date"), err)
		}
		reporttest.Validate(t, report.FormatRFC9990, p.XML)
	}
}

// A quoted local part keeps its quotes on the envelope, and the RCPT
// command carries nothing after the path; an address that could end the
// path early is refused before any connection (issue 16).
func TestSenderEnvelopeQuoting(t *testing.T) {
	ctx := context.Background()
	relay := smtptest.New(t, smtptest.Options{})
	c := SMTPConfig{Host: "127.0.0.1", Port: relay.Port(), StartTLS: StartTLSNone, Timeout: 10 * time.Second}
	if err := NewSender(c).Send(ctx, "r@receiver.example", `"john doe"@x.example`, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := relay.RcptLines(); len(got) != 1 || got[0] != `RCPT TO:<"john doe"@x.example>` {
		t.Errorf("RCPT commands %q", got)
	}
	for _, to := range []string{"a@x.example> NOTIFY=SUCCESS", "<a@x.example", "a@x.example\r\nRSET"} {
		if err := NewSender(c).Send(ctx, "r@receiver.example", to, []byte("x\r\n")); !errors.Is(err, ErrRejected) {
			t.Errorf("Send to %q = %v, want refused", to, err)
		}
	}
	if n := len(relay.RcptLines()); n != 1 {
		t.Errorf("%d RCPT commands, want only the first", n)
	}
}

func TestSender(t *testing.T) {
	ctx := context.Background()
	msg := []byte("Subject: x\r\n\r\n.leading dot\r\nbody\r\n")
	tlsAuth := smtptest.New(t, smtptest.Options{TLS: true, User: "u", Password: "p"})
	tlsAuth.Refuse("gone@x.example", "550 5.1.1 no such user")
	tlsAuth.Refuse("later@x.example", "452 4.2.2 mailbox full")
	plain := smtptest.New(t, smtptest.Options{})
	tests := []struct {
		name string
		srv  *smtptest.Server
		cfg  SMTPConfig
		to   string
		want string // "ok", "rejected" or "temporary"
	}{
		{"required, verified, AUTH", tlsAuth, SMTPConfig{StartTLS: StartTLSRequired, RootCAs: tlsAuth.RootCAs(), Username: "u", Password: "p"}, "a@x.example", "ok"},
		{"opportunistic, self-signed", tlsAuth, SMTPConfig{StartTLS: StartTLSOpportunistic, Username: "u", Password: "p"}, "a@x.example", "ok"},
		{"required, unknown CA", tlsAuth, SMTPConfig{StartTLS: StartTLSRequired, RootCAs: x509.NewCertPool(), Username: "u", Password: "p"}, "a@x.example", "temporary"},
		{"wrong password is not a verdict on the report", tlsAuth, SMTPConfig{StartTLS: StartTLSRequired, RootCAs: tlsAuth.RootCAs(), Username: "u", Password: "bad"}, "a@x.example", "temporary"},
		{"5xx recipient", tlsAuth, SMTPConfig{StartTLS: StartTLSOpportunistic, Username: "u", Password: "p"}, "gone@x.example", "rejected"},
		{"4xx recipient", tlsAuth, SMTPConfig{StartTLS: StartTLSOpportunistic, Username: "u", Password: "p"}, "later@x.example", "temporary"},
		{"no AUTH: MAIL refused with 530 is our setup, not the report", tlsAuth, SMTPConfig{StartTLS: StartTLSOpportunistic}, "a@x.example", "temporary"},
		{"required, STARTTLS not offered", plain, SMTPConfig{StartTLS: StartTLSRequired}, "a@x.example", "temporary"},
		{"plain relay", plain, SMTPConfig{StartTLS: StartTLSOpportunistic}, "a@x.example", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.Host, c.Port, c.Timeout = "127.0.0.1", tt.srv.Port(), 10*time.Second
			before := len(tt.srv.Messages())
			err := NewSender(c).Send(ctx, "r@receiver.example", tt.to, msg)
			got := "ok"
			if errors.Is(err, ErrRejected) {
				got = "rejected"
			} else if err != nil {
				got = "temporary"
			}
			if got != tt.want {
				t.Fatalf("Send = %v (%s), want %s", err, got, tt.want)
			}
			ms := tt.srv.Messages()
			if tt.want != "ok" {
				if len(ms) != before {
					t.Errorf("message accepted despite %v", err)
				}
				return
			}
			m := ms[len(ms)-1]
			if !bytes.Equal(m.Data, msg) || m.To != tt.to || m.From != "r@receiver.example" {
				t.Errorf("received %+v", m)
			}
			if tt.srv == tlsAuth && (!m.TLS || m.User != "u") {
				t.Errorf("tls=%v user=%q", m.TLS, m.User)
			}
		})
	}
}

func TestSenderCancelled(t *testing.T) {
	srv := smtptest.New(t, smtptest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewSender(SMTPConfig{Host: "127.0.0.1", Port: srv.Port()}).Send(ctx, "a@b.example", "c@d.example", []byte("x\r\n"))
	if err == nil || errors.Is(err, ErrRejected) {
		t.Errorf("Send with a cancelled context = %v, want a temporary error", err)
	}
}
