// Package milter is the milter protocol adapter: it speaks to the MTA through
// github.com/emersion/go-milter, turns the callbacks of one SMTP connection
// into calls on a Backend, and applies the Verdict the backend returns. It
// knows nothing of SPF, DKIM or DMARC.
//
// The go-milter v0.5.0 traps it works around are listed in NOTES.md: every
// reply is RespContinue or a custom 'y' reply (any other response makes the
// library drop the connection state), Abort only resets the message, macros
// are copied at the stage they arrive, and header edits happen only at end
// of message.
package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Envelope is what the SMTP conversation said before the content.
type Envelope struct {
	ClientIP   netip.Addr // invalid for non-IP clients
	ClientHost string     // as the MTA names it; "[1.2.3.4]" when unknown
	HELO       string
	MailFrom   string // without angle brackets, "" for the null sender
	AuthUser   string // the {auth_authen} macro: set for authenticated clients
	MTAHost    string // the j macro: the MTA's own host name
}

// Backend evaluates messages. Begin is called at MAIL FROM; it returns nil
// for a message that is not to be checked (nothing is changed).
type Backend interface {
	Begin(ctx context.Context, env Envelope) Message
}

// Message receives one message's content and decides at its end.
type Message interface {
	Recipient(addr string)
	Header(name, value string)
	EndOfHeaders()
	Body(chunk []byte)
	// End returns the header edits and the reply. ctx bounds the wait.
	End(ctx context.Context, queueID string) Verdict
	Abort()
}

// Verdict is what to do at the end of a message.
type Verdict struct {
	// Delete lists existing header fields to remove, by name and 1-based
	// index among the fields of that name (as the milter protocol counts).
	Delete []HeaderRef
	// Insert lists fields to add at the very top, first one topmost. Values
	// are written with folds as CRLF or LF and no leading space.
	Insert []HeaderField
	// Quarantine, when not empty, asks the MTA to hold the message with
	// this reason.
	Quarantine string
	// Reply, when not empty, is a full SMTP reply ("550 5.7.1 text") for
	// the message; empty means accept.
	Reply string
}

// HeaderRef names one header field by name and 1-based index.
type HeaderRef struct {
	Name  string
	Index int
}

// HeaderField is a field to add.
type HeaderField struct {
	Name, Value string
}

// EndTimeout bounds how long the end of a message waits for the checks. It
// stays below Postfix's milter_content_timeout (300 s).
const EndTimeout = 120 * time.Second

// session implements go-milter's Milter for one MTA connection. Connection
// data survives from message to message; message data is reset by Abort.
type session struct {
	backend Backend
	log     *slog.Logger
	conn    *trackedConn // nil only if the library made us without a connection
	baseCtx context.Context

	clientIP   netip.Addr
	clientHost string
	mtaHost    string
	helo       string

	msg     Message
	queueID string
	// live is msg for the connection's close hook, which may run on
	// another goroutine (a forced shutdown).
	live atomic.Pointer[msgBox]
}

type msgBox struct{ m Message }

// setMsg makes m the message in flight (nil: none).
func (s *session) setMsg(m Message) {
	s.msg = m
	if m == nil {
		s.live.Store(nil)
	} else {
		s.live.Store(&msgBox{m})
	}
}

// closed runs when the connection is closed: a message still in flight is
// aborted, so its background lookups and DKIM goroutine end.
func (s *session) closed() {
	if b := s.live.Swap(nil); b != nil {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("internal error aborting a message", "panic", fmt.Sprint(v))
			}
		}()
		b.m.Abort()
	}
}

func (s *session) setState(st connState) {
	if s.conn != nil {
		s.conn.state.Store(int32(st))
	}
}

// guard turns a panic in the backend into a log line and an unchecked
// message: the MTA goes on, the connection stays up.
func (s *session) guard(stage string) {
	if v := recover(); v != nil {
		s.log.Error("internal error, message passed unchecked", "stage", stage, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		s.msg = nil
		s.closed() // release what the message holds
	}
}

func (s *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.clientHost = host
	if a, ok := netip.AddrFromSlice(addr); ok {
		s.clientIP = a.Unmap()
	}
	s.mtaHost = m.Macros["j"]
	return gomilter.RespContinue, nil
}

func (s *session) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.helo = name
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.guard("mail")
	s.abortMessage() // a MAIL without the Abort of the previous message
	env := Envelope{
		ClientIP: s.clientIP, ClientHost: s.clientHost, HELO: s.helo,
		MailFrom: from, AuthUser: m.Macros["{auth_authen}"], MTAHost: s.mtaHost,
	}
	s.setMsg(s.backend.Begin(s.baseCtx, env))
	if s.msg != nil {
		s.setState(stateMessage)
	}
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.guard("rcpt")
	if s.msg != nil {
		s.msg.Recipient(rcpt)
	}
	return gomilter.RespContinue, nil
}

func (s *session) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.guard("header")
	if id := m.Macros["i"]; id != "" {
		s.queueID = id
	}
	if s.msg != nil {
		s.msg.Header(name, value)
	}
	return gomilter.RespContinue, nil
}

func (s *session) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.guard("eoh")
	if id := m.Macros["i"]; id != "" {
		s.queueID = id
	}
	if s.msg != nil {
		s.msg.EndOfHeaders()
	}
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.guard("body")
	if s.msg != nil {
		s.msg.Body(chunk)
	}
	return gomilter.RespContinue, nil
}

// Body is the end of the message: every edit and the reply happen here.
func (s *session) Body(m *gomilter.Modifier) (resp gomilter.Response, err error) {
	resp = gomilter.RespContinue
	msg := s.msg
	s.msg = nil
	if msg == nil {
		return resp, nil
	}
	defer s.live.Store(nil) // after End: nothing left to abort
	defer s.guard("eom")
	// The next write is the final reply: after it the message is done.
	defer s.setState(stateEOMReply)
	if id := m.Macros["i"]; id != "" {
		s.queueID = id
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, EndTimeout)
	defer cancel()
	v := msg.End(ctx, s.queueID)
	return s.apply(v, m)
}

// apply sends the header edits and returns the reply. Write errors mean the
// MTA went away; they end the connection as the library does on any error.
func (s *session) apply(v Verdict, m *gomilter.Modifier) (gomilter.Response, error) {
	// Highest index first, so that earlier indexes stay valid.
	dels := append([]HeaderRef(nil), v.Delete...)
	for i := 1; i < len(dels); i++ {
		for j := i; j > 0 && dels[j].Index > dels[j-1].Index; j-- {
			dels[j], dels[j-1] = dels[j-1], dels[j]
		}
	}
	for _, d := range dels {
		if err := m.ChangeHeader(d.Index, d.Name, ""); err != nil {
			return nil, err
		}
	}
	// InsertHeader(0) lands at the very top, above the MTA's own Received:
	// insert the last field first. With SMFIP_HDR_LEADSPC negotiated the
	// value is written as is, so it carries its own leading space.
	for i := len(v.Insert) - 1; i >= 0; i-- {
		f := v.Insert[i]
		if err := m.InsertHeader(0, f.Name, " "+f.Value); err != nil {
			return nil, err
		}
	}
	if v.Quarantine != "" {
		if err := m.Quarantine(v.Quarantine); err != nil {
			return nil, err
		}
	}
	if v.Reply != "" {
		// A custom reply keeps the connection's state in go-milter, unlike
		// RespReject/RespTempFail (NOTES.md, go-milter trap 2).
		return gomilter.NewResponseStr('y', v.Reply), nil
	}
	return gomilter.RespContinue, nil
}

// Abort resets the message; Postfix sends it after every message.
func (s *session) Abort(m *gomilter.Modifier) error {
	defer s.guard("abort")
	s.abortMessage()
	return nil
}

func (s *session) abortMessage() {
	if s.msg != nil {
		s.msg.Abort()
		s.setMsg(nil)
	}
	s.queueID = ""
	s.setState(stateIdle)
}

var _ gomilter.Milter = (*session)(nil)
