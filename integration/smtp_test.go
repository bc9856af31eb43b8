package integration

import (
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
)

// client is who the SMTP client claims to be, set with XCLIENT (Postfix
// XCLIENT_README) and the EHLO sent after it, which is the HELO the milter
// sees.
type client struct {
	IP    string // client address; IPv6 addresses are sent as IPV6:addr
	Name  string // client hostname; "" sends [UNAVAILABLE]
	HELO  string
	Login string // non-empty: XCLIENT LOGIN=, i.e. an authenticated client
}

// smtpError is a non-success SMTP reply, with the command it answered.
type smtpError struct {
	Stage string // XCLIENT, EHLO, MAIL, RCPT, DATA, EOM
	Code  int
	Msg   string
}

func (e *smtpError) Error() string { return fmt.Sprintf("%s: %d %s", e.Stage, e.Code, e.Msg) }

func asSMTPError(stage string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtpError{Stage: stage, Code: te.Code, Msg: te.Msg}
	}
	return fmt.Errorf("%s: %w", stage, err)
}

// session is one SMTP connection after XCLIENT and EHLO.
type session struct {
	c *smtp.Client
}

// dial connects to addr, sends EHLO, XCLIENT for cl and EHLO cl.HELO.
func dial(addr string, cl client) (*session, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	// A hung milter or Postfix must fail the test, not hang it.
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "mx.rcpt.test")
	if err != nil {
		conn.Close()
		return nil, asSMTPError("GREETING", err)
	}
	s := &session{c: c}
	if err := c.Hello("harness.local"); err != nil {
		s.close()
		return nil, asSMTPError("EHLO", err)
	}
	if ok, _ := c.Extension("XCLIENT"); !ok {
		s.close()
		return nil, errors.New("XCLIENT not offered; smtpd_authorized_xclient_hosts?")
	}
	ip := cl.IP
	if strings.Contains(ip, ":") {
		ip = "IPV6:" + ip
	}
	name := cl.Name
	if name == "" {
		name = "[UNAVAILABLE]"
	}
	cmd := fmt.Sprintf("XCLIENT ADDR=%s NAME=%s REVERSE_NAME=%s", ip, name, name)
	if cl.Login != "" {
		cmd += " LOGIN=" + cl.Login
	}
	if _, _, err := s.cmd(220, "XCLIENT", "%s", cmd); err != nil {
		s.close()
		return nil, err
	}
	// net/smtp allows Hello once; the EHLO after XCLIENT goes by hand.
	if _, _, err := s.cmd(250, "EHLO", "EHLO %s", cl.HELO); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) cmd(expect int, stage, format string, args ...any) (int, string, error) {
	id, err := s.c.Text.Cmd(format, args...)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", stage, err)
	}
	s.c.Text.StartResponse(id)
	defer s.c.Text.EndResponse(id)
	code, msg, err := s.c.Text.ReadResponse(expect)
	if err != nil {
		return code, msg, asSMTPError(stage, err)
	}
	return code, msg, nil
}

// send runs one mail transaction and returns the queue id from the final
// 250 reply. After a failed transaction the session is reset (RSET) so the
// next message can follow on the same connection.
func (s *session) send(from string, to []string, msg []byte) (string, error) {
	queueID, err := s.transaction(from, to, msg)
	if err != nil {
		s.cmd(250, "RSET", "RSET")
	}
	return queueID, err
}

func (s *session) transaction(from string, to []string, msg []byte) (string, error) {
	if err := s.c.Mail(from); err != nil {
		return "", asSMTPError("MAIL", err)
	}
	for _, r := range to {
		if err := s.c.Rcpt(r); err != nil {
			return "", asSMTPError("RCPT", err)
		}
	}
	// DATA by hand: net/smtp drops the final reply text, which carries the
	// queue id ("250 2.0.0 Ok: queued as 4F1C2984036").
	if _, _, err := s.cmd(354, "DATA", "DATA"); err != nil {
		return "", err
	}
	w := s.c.Text.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	_, text, err := s.c.Text.ReadResponse(250)
	if err != nil {
		return "", asSMTPError("EOM", err)
	}
	const marker = "queued as "
	i := strings.LastIndex(text, marker)
	if i < 0 {
		return "", fmt.Errorf("EOM: no queue id in %q", text)
	}
	return strings.TrimSpace(text[i+len(marker):]), nil
}

func (s *session) close() {
	s.c.Quit()
	s.c.Close()
}

// sendOne connects, sends one message and quits.
func sendOne(addr string, cl client, from string, to []string, msg []byte) (string, error) {
	s, err := dial(addr, cl)
	if err != nil {
		return "", err
	}
	defer s.close()
	return s.send(from, to, msg)
}
