// Package smtptest is a small SMTP server on 127.0.0.1 for tests: it
// receives mail (EHLO, STARTTLS with a self-signed certificate, AUTH PLAIN,
// MAIL, RCPT, DATA), keeps every message, and can be told to refuse
// recipients, so that report delivery is tested against a real SMTP
// conversation.
package smtptest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one accepted message.
type Message struct {
	From, To string
	Data     []byte // as received, dot-unstuffed, CRLF line ends
	TLS      bool
	User     string // the AUTH identity, "" without AUTH
}

// Options configure a Server.
type Options struct {
	TLS bool // offer STARTTLS (self-signed certificate for 127.0.0.1)
	// User and Password: when set, AUTH PLAIN is offered (after STARTTLS
	// when TLS is on) and MAIL is refused without it.
	User, Password string
	// OnQuit, when set, runs when a client sends QUIT, before the 221
	// reply: a test can kill the client there, after its message was
	// accepted and before it learns that the conversation ended.
	OnQuit func()
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	o      Options
	ln     net.Listener
	tlsCfg *tls.Config
	caPEM  []byte
	wg     sync.WaitGroup

	mu        sync.Mutex
	msgs      []Message
	rcpt      map[string]string // recipient → reply to RCPT
	rcptLines []string          // every RCPT command as received
	conns     map[net.Conn]bool
	closed    bool
}

// New starts a server on 127.0.0.1; t.Cleanup stops it.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{o: o, ln: ln, rcpt: map[string]string{}, conns: map[net.Conn]bool{}}
	if o.TLS {
		cert, caPEM, err := selfSigned()
		if err != nil {
			t.Fatal(err)
		}
		s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.caPEM = caPEM
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CAFile writes the certificate (its own CA) into dir and returns the path.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "smtptest-ca.pem")
	if err := os.WriteFile(p, s.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// RootCAs is a pool with the server's certificate.
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.caPEM)
	return p
}

// Refuse makes RCPT TO:<addr> answer reply (e.g. "550 5.1.1 no such user"
// or "451 4.3.0 try later"); "" accepts it again.
func (s *Server) Refuse(addr, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == "" {
		delete(s.rcpt, strings.ToLower(addr))
		return
	}
	s.rcpt[strings.ToLower(addr)] = reply
}

// RcptLines returns every RCPT command received, as sent (parameters
// included), in order.
func (s *Server) RcptLines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rcptLines)
}

// Messages returns a copy of what was accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Close stops the server and waits for its connections.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

type session struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	tls      bool
	user     string
	from     string
	to       []string
	hasFrom  bool
	greeting bool
}

func (ss *session) reply(lines ...string) {
	for _, l := range lines {
		ss.w.WriteString(l + "\r\n")
	}
	ss.w.Flush()
}

func (s *Server) session(c net.Conn) {
	ss := &session{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	ss.reply("220 smtptest ESMTP")
	for {
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			ss.greeting, ss.hasFrom, ss.to = true, false, nil
			lines := []string{"250-smtptest"}
			if s.tlsCfg != nil && !ss.tls {
				lines = append(lines, "250-STARTTLS")
			}
			if s.o.User != "" && (ss.tls || s.tlsCfg == nil) {
				lines = append(lines, "250-AUTH PLAIN")
			}
			lines = append(lines, "250 SIZE 10485760")
			ss.reply(lines...)
		case "STARTTLS":
			if s.tlsCfg == nil || ss.tls {
				ss.reply("502 5.5.1 not offered")
				continue
			}
			ss.reply("220 2.0.0 go ahead")
			tc := tls.Server(c, s.tlsCfg)
			if err := tc.Handshake(); err != nil {
				return
			}
			ss.c, ss.r, ss.w, ss.tls, ss.greeting = tc, bufio.NewReader(tc), bufio.NewWriter(tc), true, false
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if s.o.User == "" || !strings.EqualFold(mech, "PLAIN") || (s.tlsCfg != nil && !ss.tls) {
				ss.reply("504 5.5.4 not offered")
				continue
			}
			dec, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(dec), "\x00")
			if err != nil || len(parts) != 3 || parts[1] != s.o.User || parts[2] != s.o.Password {
				ss.reply("535 5.7.8 authentication failed")
				continue
			}
			ss.user = parts[1]
			ss.reply("235 2.7.0 ok")
		case "MAIL":
			if s.o.User != "" && ss.user == "" {
				ss.reply("530 5.7.0 authentication required")
				continue
			}
			ss.from, ss.hasFrom, ss.to = path(arg), true, nil
			ss.reply("250 2.1.0 ok")
		case "RCPT":
			if !ss.hasFrom {
				ss.reply("503 5.5.1 MAIL first")
				continue
			}
			to := path(arg)
			s.mu.Lock()
			s.rcptLines = append(s.rcptLines, line)
			r := s.rcpt[strings.ToLower(to)]
			s.mu.Unlock()
			if r != "" {
				ss.reply(r)
				continue
			}
			ss.to = append(ss.to, to)
			ss.reply("250 2.1.5 ok")
		case "DATA":
			if len(ss.to) == 0 {
				ss.reply("503 5.5.1 RCPT first")
				continue
			}
			ss.reply("354 go ahead")
			var data bytes.Buffer
			for {
				l, err := ss.r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			for _, to := range ss.to {
				s.msgs = append(s.msgs, Message{From: ss.from, To: to, Data: data.Bytes(), TLS: ss.tls, User: ss.user})
			}
			s.mu.Unlock()
			ss.hasFrom, ss.to = false, nil
			ss.reply("250 2.0.0 queued")
		case "RSET":
			ss.hasFrom, ss.to = false, nil
			ss.reply("250 2.0.0 ok")
		case "NOOP":
			ss.reply("250 2.0.0 ok")
		case "QUIT":
			if s.o.OnQuit != nil {
				s.o.OnQuit()
			}
			ss.reply("221 2.0.0 bye")
			return
		default:
			ss.reply("500 5.5.2 unknown command")
		}
	}
}

// path takes the address out of "FROM:<a@b> PARAMS" or "TO:<a@b>".
func path(arg string) string {
	_, v, _ := strings.Cut(arg, ":")
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '>'); strings.HasPrefix(v, "<") && i > 0 {
		return v[1:i]
	}
	return v
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

// Parsed is a report mail taken apart.
type Parsed struct {
	Header   mail.Header
	Filename string // the attachment's name
	XML      []byte // the attachment, gunzipped
}

// ParseReport reads a report mail: the one application/gzip attachment,
// base64-decoded and gunzipped.
func (m Message) ParseReport() (*Parsed, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil, err
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		return nil, fmt.Errorf("content type %q: %v", mt, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("no application/gzip part: %w", err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "application/gzip" {
			continue
		}
		_, dp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil {
			return nil, err
		}
		if cte := p.Header.Get("Content-Transfer-Encoding"); !strings.EqualFold(cte, "base64") {
			return nil, fmt.Errorf("attachment encoding %q", cte)
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			return nil, err
		}
		x, err := io.ReadAll(zr)
		if err != nil {
			return nil, err
		}
		return &Parsed{Header: msg.Header, Filename: dp["filename"], XML: x}, nil
	}
}
