// Package testmilter is test support, imported only by _test.go files. Its
// one job: run the real milter server (internal/milter) on a loopback port,
// with the real service, engine, policy and resolver behind it as serve
// builds them, and talk to it as Postfix does through go-milter's client.
package testmilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/archeck"
	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/engine"
)

// Logs is a log sink safe for concurrent writers. With Max > 0 it keeps
// only the latest writes: the buffer is emptied once it holds more than
// Max bytes.
type Logs struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.b.Len() > l.Max {
		l.b.Reset()
	}
	return l.b.Write(p)
}

// String returns everything kept so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns the last n bytes of s (all of s when shorter).
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Logger is a text logger writing to w from level up.
func Logger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Config is the default configuration with authserv-id id, asking only
// the DNS server at dnsAddr, once per query, waiting dnsTimeout.
func Config(id, dnsAddr string, dnsTimeout time.Duration) *config.Config {
	cfg := config.Default()
	cfg.AuthservID = id
	cfg.DNS.Servers = []string{dnsAddr}
	cfg.DNS.Timeout = config.Duration{Duration: dnsTimeout}
	cfg.DNS.Attempts = 1
	return cfg
}

// NewService builds the Service as serve does from cfg (which must
// validate), with service.New on the real resolver of cfg.DNS; editEngine,
// when not nil, changes the engine's options. It fails the test on any
// error.
func NewService(t testing.TB, cfg *config.Config, log *slog.Logger, editEngine func(*engine.Options)) *service.Service {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	res, err := resolver.New(service.ResolverConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(cfg, service.Deps{Resolver: res, Log: log, EditEngine: editEngine})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Server is a milter server on a loopback TCP port.
type Server struct {
	*milter.Server
	Addr string // 127.0.0.1:PORT
}

// Serve serves backend on a fresh 127.0.0.1 port until the test ends. At
// cleanup, Shutdown (bounded by 10 s) and Serve must both return nil; when
// the test failed, the tail of logs (if not nil) is logged.
func Serve(t testing.TB, backend milter.Backend, opts milter.Options, logs fmt.Stringer) *Server {
	t.Helper()
	s := &Server{Server: milter.NewServer(backend, opts)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() && logs != nil {
			t.Logf("milter log (tail):\n%s", Tail(logs.String(), 16000))
		}
	})
	return s
}

// Dial opens a go-milter client session (option negotiation done) as the
// MTA: the actions we use offered (add and change header, quarantine) and
// no protocol options (go-milter's default client asks for a protocol
// version its own server refuses, so the options are given explicitly).
// timeout bounds each
// read and write; 0 means none.
func Dial(network, addr string, timeout time.Duration) (*gomilter.ClientSession, error) {
	c := gomilter.NewClientWithOptions(network, addr, gomilter.ClientOptions{
		ReadTimeout: timeout, WriteTimeout: timeout,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	return c.Session()
}

// Message is one message as Postfix sends it. The connect stage (macros,
// CONNECT, HELO) is sent only when IP is set: Postfix does not repeat it
// for the next message on a connection.
type Message struct {
	ConnMacros []string // at connect, name/value pairs
	Host, IP   string   // the client; IP with a colon is IPv6
	HELO       string
	MailMacros []string // at MAIL FROM
	From       string   // MAIL FROM, without <>
	Rcpt       string   // RCPT TO, without <>; "" means rcpt@rcpt.test
	// HeaderMacros, when set, are sent before each header field (Postfix
	// sends the queue id "i" with the headers).
	HeaderMacros []string
	Headers      [][2]string // raw values, as Postfix sends them
	Body         [][]byte    // chunks
	NoEnd        bool        // stop after the body: no end of message
	NoAbort      bool        // no Abort after the end of message
}

// Result is what the MTA got back.
type Result struct {
	Mods   []gomilter.ModifyAction
	Action *gomilter.Action
}

// AR returns the value of the first Authentication-Results field inserted,
// or "".
func (r Result) AR() string {
	for _, m := range r.Mods {
		if m.Code == gomilter.ActInsertHeader && m.HeaderName == authres.HeaderName {
			return m.HeaderValue
		}
	}
	return ""
}

// Connect sends the connect stage as Postfix does: the connect macros
// (name/value pairs, none when empty), CONNECT from host at ip (IPv6 when
// ip has a colon), then HELO. Each must answer continue.
func Connect(s *gomilter.ClientSession, macros []string, host, ip, helo string) error {
	if len(macros) > 0 {
		if err := s.Macros(gomilter.CodeConn, macros...); err != nil {
			return fmt.Errorf("connect macros: %w", err)
		}
	}
	fam := gomilter.FamilyInet
	if strings.Contains(ip, ":") {
		fam = gomilter.FamilyInet6
	}
	return steps(
		func() (*gomilter.Action, error) { return s.Conn(host, fam, 25, ip) },
		func() (*gomilter.Action, error) { return s.Helo(helo) },
	)
}

// steps runs each step in turn; every one must answer continue.
func steps(fs ...func() (*gomilter.Action, error)) error {
	for i, f := range fs {
		a, err := f()
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if a.Code != gomilter.ActContinue {
			return &StepError{Step: i, Action: a}
		}
	}
	return nil
}

// StepError is a step before the end of message that did not answer
// continue.
type StepError struct {
	Step   int
	Action *gomilter.Action
}

func (e *StepError) Error() string { return fmt.Sprintf("step %d: action %c", e.Step, e.Action.Code) }

// Send sends m on s (the connect stage first when m.IP is set) and, unless
// m.NoAbort, ends with Abort as Postfix does after every message. Every
// step before the end of message must answer continue: one that does not
// ends the message with a *StepError, and the Result holds its action.
func Send(s *gomilter.ClientSession, m Message) (Result, error) {
	if m.IP != "" {
		if err := Connect(s, m.ConnMacros, m.Host, m.IP, m.HELO); err != nil {
			return stepResult(err)
		}
	}
	var fs []func() (*gomilter.Action, error)
	macros := func(code gomilter.Code, kv []string) {
		if len(kv) > 0 {
			fs = append(fs, func() (*gomilter.Action, error) {
				return &gomilter.Action{Code: gomilter.ActContinue}, s.Macros(code, kv...)
			})
		}
	}
	rcpt := m.Rcpt
	if rcpt == "" {
		rcpt = "rcpt@rcpt.test"
	}
	macros(gomilter.CodeMail, m.MailMacros)
	fs = append(fs,
		func() (*gomilter.Action, error) { return s.Mail("<"+m.From+">", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<"+rcpt+">", nil) })
	for _, h := range m.Headers {
		macros(gomilter.CodeHeader, m.HeaderMacros)
		fs = append(fs, func() (*gomilter.Action, error) { return s.HeaderField(h[0], h[1]) })
	}
	fs = append(fs, s.HeaderEnd)
	for _, b := range m.Body {
		fs = append(fs, func() (*gomilter.Action, error) { return s.BodyChunk(b) })
	}
	if err := steps(fs...); err != nil {
		return stepResult(err)
	}
	if m.NoEnd {
		return Result{}, nil
	}
	mods, act, err := s.End()
	if err != nil {
		return Result{}, fmt.Errorf("end of message: %w", err)
	}
	r := Result{Mods: mods, Action: act}
	// Every A-R we write must read the same in go-msgauth as in ours
	// (issue #15 item 8): checked on every message of every test.
	for _, mod := range mods {
		if mod.Code == gomilter.ActInsertHeader && mod.HeaderName == authres.HeaderName {
			if err := archeck.Check(mod.HeaderValue); err != nil {
				return r, fmt.Errorf("our Authentication-Results: %w", err)
			}
		}
	}
	if m.NoAbort {
		return r, nil
	}
	if err := s.Abort(); err != nil {
		return r, fmt.Errorf("abort: %w", err)
	}
	return r, nil
}

func stepResult(err error) (Result, error) {
	var se *StepError
	if errors.As(err, &se) {
		return Result{Action: se.Action}, err
	}
	return Result{}, err
}
