package reportmail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrRejected: the relay refused the message for good (a 5xx reply). Any
// other send error is temporary: the report stays pending and is tried
// again.
var ErrRejected = errors.New("reportmail: relay rejected the message")

// StartTLS modes of SMTPConfig.
const (
	StartTLSNone          = "none"
	StartTLSOpportunistic = "opportunistic"
	StartTLSRequired      = "required"
)

// SMTPConfig is the relay that carries report mail.
type SMTPConfig struct {
	Host string
	Port int
	// StartTLS: StartTLSNone, StartTLSOpportunistic (when offered, without
	// checking the certificate, as MTAs do: RFC 7435) or StartTLSRequired
	// (the certificate is verified against RootCAs).
	StartTLS string
	RootCAs  *x509.CertPool // nil: the system roots
	// Username and Password: AUTH PLAIN, which net/smtp sends only over TLS
	// or to a loopback relay.
	Username, Password string
	HELO               string        // "" : the host name
	Timeout            time.Duration // whole transaction; 0: 2 minutes
}

// LoadCAFile reads PEM certificates for SMTPConfig.RootCAs.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reportmail: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reportmail: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// Sender hands messages to the relay, one SMTP transaction per message.
type Sender struct{ c SMTPConfig }

// NewSender returns a Sender for c.
func NewSender(c SMTPConfig) *Sender {
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.StartTLS == "" {
		c.StartTLS = StartTLSOpportunistic
	}
	return &Sender{c: c}
}

// Send delivers msg from the envelope sender from to one recipient. A 5xx
// reply gives an error wrapping ErrRejected; anything else that fails
// (connection, TLS, 4xx, timeout) is temporary.
func (s *Sender) Send(ctx context.Context, from, to string, msg []byte) (err error) {
	addr := net.JoinHostPort(s.c.Host, strconv.Itoa(s.c.Port))
	// The paths go between '<' and '>' as they are: an angle bracket or a
	// line break in them would end the path early and let what follows be
	// read as SMTP parameters (issue 16). report.Destinations never gives
	// such an address; this is the last line of defence.
	for _, a := range []string{from, to} {
		if strings.ContainsAny(a, "<>\r\n") {
			return fmt.Errorf("%w: address %q holds '<', '>' or a line break", ErrRejected, a)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("reportmail: relay %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// net/smtp has no context: cancelling closes the connection under it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, s.c.Host)
	if err != nil {
		return s.classify(addr, "greeting", err)
	}
	defer c.Close()
	if s.c.HELO != "" {
		if err := c.Hello(s.c.HELO); err != nil {
			return s.classify(addr, "EHLO", err)
		}
	}
	if s.c.StartTLS != StartTLSNone {
		if ok, _ := c.Extension("STARTTLS"); ok {
			tc := &tls.Config{ServerName: s.c.Host, RootCAs: s.c.RootCAs, MinVersion: tls.VersionTLS12}
			if s.c.StartTLS == StartTLSOpportunistic {
				tc.InsecureSkipVerify = true // RFC 7435 opportunistic security: encrypt, do not authenticate
			}
			if err := c.StartTLS(tc); err != nil {
				return s.classify(addr, "STARTTLS", err)
			}
		} else if s.c.StartTLS == StartTLSRequired {
			return fmt.Errorf("reportmail: relay %s does not offer STARTTLS (starttls = required)", addr)
		}
	}
	if s.c.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("reportmail: relay %s does not offer AUTH", addr)
		}
		if err := c.Auth(smtp.PlainAuth("", s.c.Username, s.c.Password, s.c.Host)); err != nil {
			return s.classify(addr, "AUTH", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return s.classify(addr, "MAIL FROM", err)
	}
	if err := c.Rcpt(to); err != nil {
		return s.classify(addr, "RCPT TO:<"+to+">", err)
	}
	w, err := c.Data()
	if err != nil {
		return s.classify(addr, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return s.classify(addr, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return s.classify(addr, "end of DATA", err)
	}
	_ = c.Quit() // the message is accepted; a failing QUIT changes nothing
	return nil
}

// classify tells a permanent refusal of this report or destination (a 5xx
// reply, RFC 5321 §4.2.1, to RCPT or DATA) from the rest. A 5xx to EHLO,
// AUTH or MAIL is about our own setup (credentials, sender address), not a
// verdict on the report: it stays temporary so that nothing is dropped
// while the postmaster fixes it.
func (s *Sender) classify(addr, step string, err error) error {
	var pe *textproto.Error
	verdict := strings.HasPrefix(step, "RCPT") || strings.Contains(step, "DATA")
	if errors.As(err, &pe) && pe.Code >= 500 && verdict {
		return fmt.Errorf("%w: %s: %s: %d %s", ErrRejected, addr, step, pe.Code, pe.Msg)
	}
	return fmt.Errorf("reportmail: relay %s: %s: %w", addr, step, err)
}
