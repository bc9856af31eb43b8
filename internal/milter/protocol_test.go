package milter_test

// Protocol tests: raw packets as Postfix writes them against the server,
// with a backend that records what the adapter passes on and returns a
// fixed verdict, so the exact bytes on the wire can be checked.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/testmilter"
)

type recBackend struct {
	mu      sync.Mutex
	events  []string
	verdict milter.Verdict
	release chan struct{} // when set, End waits for it
	inEnd   chan struct{} // when set, End signals it on entry
}

func (b *recBackend) add(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, fmt.Sprintf(format, args...))
}

func (b *recBackend) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.events
	b.events = nil
	return e
}

func (b *recBackend) Begin(_ context.Context, env milter.Envelope) milter.Message {
	b.add("begin from=%q ip=%v host=%q helo=%q auth=%q mta=%q", env.MailFrom, env.ClientIP, env.ClientHost, env.HELO, env.AuthUser, env.MTAHost)
	return &recMessage{b: b}
}

type recMessage struct {
	b    *recBackend
	body bytes.Buffer
}

func (m *recMessage) Recipient(a string)        { m.b.add("rcpt %q", a) }
func (m *recMessage) Header(name, value string) { m.b.add("header %q %q", name, value) }
func (m *recMessage) EndOfHeaders()             { m.b.add("eoh") }
func (m *recMessage) Body(chunk []byte)         { m.body.Write(chunk) }
func (m *recMessage) Abort()                    { m.b.add("abort") }
func (m *recMessage) End(ctx context.Context, queueID string) milter.Verdict {
	m.b.add("end queue=%q body=%q", queueID, m.body.String())
	if m.b.inEnd != nil {
		m.b.inEnd <- struct{}{}
	}
	if m.b.release != nil {
		<-m.b.release
	}
	return m.b.verdict
}

// protoRig serves b on a loopback port.
type protoRig struct {
	srv  *testmilter.Server
	addr string
	logs *testmilter.Logs
}

func newProtoRig(t *testing.T, b milter.Backend) *protoRig {
	t.Helper()
	r := &protoRig{logs: &testmilter.Logs{Max: 4 << 20}}
	r.srv = testmilter.Serve(t, b, milter.Options{IdleTimeout: 10 * time.Second, Log: testmilter.Logger(r.logs, slog.LevelDebug)}, r.logs)
	r.addr = r.srv.Addr
	return r
}

func (r *protoRig) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

type packet struct {
	code byte
	data string
}

func (p packet) String() string { return fmt.Sprintf("%c %q", p.code, p.data) }

func readPacket(t *testing.T, c net.Conn) packet {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<20 {
		t.Fatalf("reply length %d", n)
	}
	d := make([]byte, n)
	if _, err := io.ReadFull(c, d); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	return packet{d[0], string(d[1:])}
}

// readUntilFinal reads packets up to and including an accept/reject reply.
func readUntilFinal(t *testing.T, c net.Conn) []packet {
	t.Helper()
	var ps []packet
	for {
		p := readPacket(t, c)
		ps = append(ps, p)
		if strings.IndexByte("acdrty", p.code) >= 0 {
			return ps
		}
	}
}

func optnegWith(version, actions, protocol uint32) []byte {
	d := binary.BigEndian.AppendUint32(nil, version)
	d = binary.BigEndian.AppendUint32(d, actions)
	d = binary.BigEndian.AppendUint32(d, protocol)
	return pkt('O', string(d))
}

func u32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }

// Option negotiation: version 6 or less, and of what we want what the MTA
// offers.
func TestOptionNegotiation(t *testing.T) {
	r := newProtoRig(t, &recBackend{})
	const want = 0x001C_F380 // LEADSPC, NR_BODY, NR_EOH, NR_RCPT..NR_CONN, NODATA, NOUNKNOWN, NR_HDR
	tests := []struct {
		name                  string
		version, act, proto   uint32
		wVersion, wAct, wProt uint32
	}{
		{"Postfix 3.7", 6, 0x1ff, 0x1fffff, 6, 0x31, want},
		{"newer MTA", 7, 0x1ff, 0x1fffff, 6, 0x31, want},
		{"version 2 MTA", 2, 0x3f, 0x7f, 2, 0x31, 0},
		{"version 4 offering DATA and unknown skips", 4, 0x3f, 0x3ff, 4, 0x31, 0x300},
		{"only add headers, only leading space", 6, 0x01, 0x100000, 6, 0x01, 0x100000},
		{"no NR flags offered", 6, 0x1ff, 0x100300, 6, 0x31, 0x100300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.dial(t)
			if _, err := c.Write(optnegWith(tt.version, tt.act, tt.proto)); err != nil {
				t.Fatal(err)
			}
			p := readPacket(t, c)
			want := packet{'O', u32(tt.wVersion) + u32(tt.wAct) + u32(tt.wProt)}
			if tt.wVersion >= 6 {
				// Version 6 asks for the MAIL-stage macros it uses
				// (SMFIM_ENVFROM = 2), {mail_addr} first (issue #15 item 5).
				want.data += u32(2) + "{mail_addr} {auth_authen} {auth_type} {auth_author}\x00"
			}
			if p != want {
				t.Errorf("reply %v, want %v", p, want)
			}
		})
	}
	t.Run("short OPTNEG closes", func(t *testing.T) {
		c := r.dial(t)
		if _, err := c.Write(pkt('O', u32(6))); err != nil {
			t.Fatal(err)
		}
		codes, ended, err := readReplies(c, 20*time.Second)
		if err != nil || !ended || len(codes) != 0 {
			t.Errorf("replies %q ended=%v err=%v; want a close without reply", codes, ended, err)
		}
	})
}

// postfixMessage is one message as Postfix 3.7 sends it (observed with a
// logging milter: the macros of each stage, the queue id "i" first with the
// headers, values byte-exact with SMFIP_HDR_LEADSPC, Abort after every
// message), with the connect stage when first.
func postfixMessage(first bool, auth, queueID string) []byte {
	var b []byte
	if first {
		b = append(b, pkt('D', "C", cstr("j"), cstr("mx.rcpt.test"), cstr("{daemon_name}"), cstr("mx.rcpt.test"))...)
		b = append(b, pkt('C', cstr("[192.0.2.7]"), "4", "\x89\xae", cstr("192.0.2.7"))...)
		b = append(b, pkt('D', "H")...)
		b = append(b, pkt('H', cstr("helo.sender.test"))...)
	}
	mm := []string{"M"}
	if auth != "" {
		mm = append(mm, cstr("{auth_type}"), cstr("PLAIN"), cstr("{auth_authen}"), cstr(auth))
	}
	mm = append(mm, cstr("{mail_addr}"), cstr("a@sender.test"))
	b = append(b, pkt('D', mm...)...)
	b = append(b, pkt('M', cstr("<a@sender.test>"), cstr("SIZE=300"), cstr("BODY=8BITMIME"))...)
	b = append(b, pkt('D', "R", cstr("{rcpt_addr}"), cstr("x@rcpt.test"))...)
	b = append(b, pkt('R', cstr("<X@rcpt.test>"), cstr("NOTIFY=NEVER"))...)
	for _, f := range [][2]string{{"From", " A <a@sender.test>"}, {"X-Folded", " one\n\ttwo"}, {"X-Empty", ""}} {
		b = append(b, pkt('D', "L", cstr("i"), cstr(queueID))...)
		b = append(b, pkt('L', cstr(f[0]), cstr(f[1]))...)
	}
	b = append(b, pkt('D', "N", cstr("i"), cstr(queueID))...)
	b = append(b, pkt('N')...)
	for _, chunk := range []string{"line 1\r\nli", "ne 2\r\n"} {
		b = append(b, pkt('D', "B", cstr("i"), cstr(queueID))...)
		b = append(b, pkt('B', chunk)...)
	}
	b = append(b, pkt('D', "E", cstr("i"), cstr(queueID))...)
	return append(b, pkt('E')...)
}

// With the NR flags negotiated the MTA writes a whole message without
// waiting, and the only answer is at end of message: the edits, in the
// order the MTA applies them, with LF folds and a leading space, then the
// reply. The backend sees what the SMTP session said.
func TestPostfixSessionNoReplyFlags(t *testing.T) {
	b := &recBackend{verdict: milter.Verdict{
		Delete:     []milter.HeaderRef{{Name: "Authentication-Results", Index: 1}, {Name: "Authentication-Results", Index: 3}},
		Insert:     []milter.HeaderField{{Name: "Authentication-Results", Value: "mx.rcpt.test;\r\n\tspf=pass"}, {Name: "X-Second", Value: "two"}},
		Quarantine: "held",
		Reply:      "550-5.7.1 first\r\n550 5.7.1 100%% sure",
	}}
	r := newProtoRig(t, b)
	c := r.dial(t)
	if _, err := c.Write(optneg()); err != nil {
		t.Fatal(err)
	}
	if p := readPacket(t, c); p.code != 'O' {
		t.Fatalf("OPTNEG reply %v", p)
	}
	if _, err := c.Write(postfixMessage(true, "alice", "Q1")); err != nil {
		t.Fatal(err)
	}
	got := readUntilFinal(t, c)
	want := []packet{
		{'m', u32(3) + cstr("Authentication-Results") + "\x00"},
		{'m', u32(1) + cstr("Authentication-Results") + "\x00"},
		{'i', u32(0) + cstr("X-Second") + cstr(" two")},
		{'i', u32(0) + cstr("Authentication-Results") + cstr(" mx.rcpt.test;\n\tspf=pass")},
		{'q', cstr("held")},
		{'y', cstr("550-5.7.1 first\r\n550 5.7.1 100%% sure")},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("end-of-message packets\n got %v\nwant %v", got, want)
	}
	wantEvents := []string{
		`begin from="a@sender.test" ip=192.0.2.7 host="[192.0.2.7]" helo="helo.sender.test" auth="alice" mta="mx.rcpt.test"`,
		`rcpt "X@rcpt.test"`,
		`header "From" " A <a@sender.test>"`,
		`header "X-Folded" " one\r\n\ttwo"`, // the wire's bare "\n" fold made CRLF (FieldValue)
		`header "X-Empty" ""`,
		`eoh`,
		`end queue="Q1" body="line 1\r\nline 2\r\n"`,
	}
	if ev := b.take(); strings.Join(ev, "\n") != strings.Join(wantEvents, "\n") {
		t.Errorf("backend saw\n%s\nwant\n%s", strings.Join(ev, "\n"), strings.Join(wantEvents, "\n"))
	}

	// The next message on the connection: Abort, then no auth macro. The
	// connection data stays, the auth user and queue id do not.
	b.mu.Lock()
	b.verdict = milter.Verdict{}
	b.mu.Unlock()
	if _, err := c.Write(append(pkt('A'), postfixMessage(false, "", "Q2")...)); err != nil {
		t.Fatal(err)
	}
	if got := readUntilFinal(t, c); fmt.Sprint(got) != fmt.Sprint([]packet{{'c', ""}}) {
		t.Errorf("second message: %v, want one continue", got)
	}
	ev := b.take()
	if len(ev) < 2 || ev[0] != `begin from="a@sender.test" ip=192.0.2.7 host="[192.0.2.7]" helo="helo.sender.test" auth="" mta="mx.rcpt.test"` ||
		ev[len(ev)-1] != `end queue="Q2" body="line 1\r\nline 2\r\n"` {
		t.Errorf("second message, backend saw:\n%s", strings.Join(ev, "\n"))
	}
	// Quit closes.
	if _, err := c.Write(append(pkt('A'), pkt('Q')...)); err != nil {
		t.Fatal(err)
	}
	if codes, ended, err := readReplies(c, 20*time.Second); err != nil || !ended || len(codes) != 0 {
		t.Errorf("after QUIT: replies %q ended=%v err=%v", codes, ended, err)
	}
}

// An MTA that offers no NR flags gets a reply to every event but macros
// and abort; DATA and unknown commands too, when it sends them.
func TestRepliesWithoutNoReplyFlags(t *testing.T) {
	r := newProtoRig(t, &recBackend{})
	c := r.dial(t)
	stream := optnegWith(6, 0x1ff, 0x100000)
	stream = append(stream, postfixMessage(true, "", "Q1")...)
	// optneg, connect, helo, mail, rcpt, 3 headers, eoh, 2 body chunks, eom
	const want = "Occcccccccc" + "c"
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	var codes []byte
	for len(codes) < len(want) {
		codes = append(codes, readPacket(t, c).code)
	}
	if string(codes) != want {
		t.Errorf("replies %q, want %q", codes, want)
	}
	if _, err := c.Write(append(append(pkt('A'), pkt('T')...), pkt('U', cstr("FOOBAR"))...)); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"DATA", "unknown"} {
		if p := readPacket(t, c); p.code != 'c' {
			t.Errorf("%s: reply %v, want continue", cmd, p)
		}
	}
}

// QUIT_NC ends the SMTP session but not the connection: the next session
// negotiates again and knows nothing of the previous client.
func TestQuitNewConnection(t *testing.T) {
	b := &recBackend{}
	r := newProtoRig(t, b)
	c := r.dial(t)
	stream := optneg()
	stream = append(stream, postfixMessage(true, "alice", "Q1")...)
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	readPacket(t, c) // OPTNEG
	readUntilFinal(t, c)
	b.take()
	stream = append(pkt('A'), pkt('K')...)
	stream = append(stream, optneg()...)
	stream = append(stream, pkt('M', cstr("<>"))...)
	stream = append(stream, pkt('E')...)
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	if p := readPacket(t, c); p.code != 'O' {
		t.Fatalf("second OPTNEG reply %v", p)
	}
	readUntilFinal(t, c)
	ev := b.take()
	if len(ev) == 0 || ev[0] != `begin from="" ip=invalid IP host="" helo="" auth="" mta=""` {
		t.Errorf("after QUIT_NC the backend saw:\n%s", strings.Join(ev, "\n"))
	}
}

// An unknown command closes the connection with a log line; a malformed
// CONNECT too. The server goes on.
func TestProtocolErrorsClose(t *testing.T) {
	r := newProtoRig(t, &recBackend{})
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"unknown command", append(optneg(), pkt('Z', "x")...)},
		{"CONNECT without family", append(optneg(), pkt('C', cstr("host"))...)},
		{"CONNECT without port", append(optneg(), pkt('C', cstr("host"), "4")...)},
		{"packet too long", append(optneg(), 0, 0x20, 0, 0, 'B')},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(r.logs.String())
			c := r.dial(t)
			if _, err := c.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			codes, ended, err := readReplies(c, 20*time.Second)
			if err != nil || !ended || string(codes) != "O" {
				t.Errorf("replies %q ended=%v err=%v; want OPTNEG's, then a close", codes, ended, err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(r.logs.String()[before:], "milter protocol error") {
				if time.Now().After(deadline) {
					t.Fatalf("no log line; log:\n%s", r.logs.String()[before:])
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// Modifications the MTA did not allow are not sent: it would drop the
// connection.
func TestActionsNotGranted(t *testing.T) {
	b := &recBackend{verdict: milter.Verdict{
		Delete:     []milter.HeaderRef{{Name: "Authentication-Results", Index: 1}},
		Insert:     []milter.HeaderField{{Name: "Authentication-Results", Value: "x; none"}},
		Quarantine: "held",
	}}
	r := newProtoRig(t, b)
	for _, tt := range []struct {
		actions uint32
		want    string
	}{
		{0x01, "ic"},
		{0x10, "mc"},
		{0x20, "qc"},
		{0x00, "c"},
		{0x31, "miqc"},
	} {
		c := r.dial(t)
		stream := optnegWith(6, tt.actions, 0x1fffff)
		stream = append(stream, postfixMessage(true, "", "Q1")...)
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		readPacket(t, c)
		var codes []byte
		for _, p := range readUntilFinal(t, c) {
			codes = append(codes, p.code)
		}
		if string(codes) != tt.want {
			t.Errorf("actions %#x: packets %q, want %q", tt.actions, codes, tt.want)
		}
	}
}

// Shutdown waits for a message in flight: its end-of-message reply still
// reaches the MTA, then the connection is closed.
func TestShutdownWaitsForMessage(t *testing.T) {
	b := &recBackend{release: make(chan struct{}), inEnd: make(chan struct{}, 1),
		verdict: milter.Verdict{Reply: "550 5.7.1 no"}}
	r := newProtoRig(t, b)
	c := r.dial(t)
	if _, err := c.Write(append(optneg(), postfixMessage(true, "", "Q1")...)); err != nil {
		t.Fatal(err)
	}
	readPacket(t, c)
	<-b.inEnd
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- r.srv.Shutdown(ctx)
	}()
	close(b.release)
	if p := readUntilFinal(t, c); fmt.Sprint(p) != fmt.Sprint([]packet{{'y', cstr("550 5.7.1 no")}}) {
		t.Errorf("reply %v", p)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if codes, ended, err := readReplies(c, 20*time.Second); err != nil || !ended || len(codes) != 0 {
		t.Errorf("after shutdown: replies %q ended=%v err=%v", codes, ended, err)
	}
}
