package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Milter protocol constants (Sendmail's libmilter mfdef.h; the protocol is
// described in go-milter's milter-protocol.txt).
const (
	protoVersion = 6 // what Postfix 3.7 offers

	// Actions Postfix offers (SMFIF_*): all of 0x1ff.
	postfixActions = 0x1ff
	// Protocol steps Postfix offers (SMFIP_*): everything up to
	// SMFIP_HDR_LEADSPC.
	postfixProtocol = 0x1fffff

	pNoConnect = 1 << 0
	pNoHelo    = 1 << 1
	pNoMail    = 1 << 2
	pNoRcpt    = 1 << 3
	pNoBody    = 1 << 4
	pNoHdrs    = 1 << 5
	pNoEOH     = 1 << 6
	pNRHdr     = 1 << 7
	pNoUnknown = 1 << 8
	pNoData    = 1 << 9
	pSkip      = 1 << 10
	pNRConn    = 1 << 12
	pNRHelo    = 1 << 13
	pNRMail    = 1 << 14
	pNRRcpt    = 1 << 15
	pNRData    = 1 << 16
	pNREOH     = 1 << 18
	pNRBody    = 1 << 19
	pLeadSpace = 1 << 20

	// maxBodyChunk is the largest body packet Postfix sends (§2.6 of the
	// Postfix recipe: chunks of at most 65535 bytes, cut anywhere).
	maxBodyChunk = 65535
	// maxPacket bounds what we read from a milter.
	maxPacket = 16 << 20
)

// Macro stages as numbered in an OPTNEG symbol list (SMFIM_*).
const (
	stageConnect = iota
	stageHelo
	stageMail
	stageRcpt
	stageData
	stageEOM
	stageEOH
	numStages
)

// defaultMacros are Postfix 3.7's default milter_*_macros. Postfix sends
// only the ones that have a value; a milter may replace a stage's list with
// its OPTNEG symbol list.
var defaultMacros = [numStages][]string{
	stageConnect: {"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
	stageHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	stageMail:    {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	stageRcpt:    {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	stageData:    {"i"},
	stageEOM:     {"i"},
	stageEOH:     {"i"},
}

// errProtocol marks a milter that broke the protocol.
var errProtocol = errors.New("milter protocol error")

// reply is a milter's answer to one event.
type reply struct {
	code byte   // a c d r t y s
	text string // for 'y': "550 5.7.1 ..."
}

// modification is one end-of-message action ('h', 'i', 'm', 'q', ...).
type modification struct {
	code  byte
	index uint32
	name  string
	value string
}

// mconn is one connection to one milter, speaking as Postfix's milter8.c
// does: version 6 offered, the milter's protocol flags honoured (skipped
// events, events without replies, SMFIP_SKIP, leading space), its macro
// lists used.
type mconn struct {
	name    string
	c       net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration

	version  uint32
	actions  uint32
	protocol uint32
	macros   [numStages][]string

	buf  []byte // packet being built
	rbuf []byte // packet being read

	drop *dropper // when set, may end the connection before a packet (-drop)
}

// errDropped marks a connection that milterload closed on purpose (-drop),
// as an MTA does when its client goes away.
var errDropped = errors.New("connection dropped on purpose")

// dropper closes an SMTP connection's milter connections at its n-th
// packet: just before it (everything before it written, nothing after) or,
// with after set, just after it is written, without waiting for the reply
// (a client gone while the milter works on the event, end of message
// included).
type dropper struct {
	left  int
	after bool
	conns []*mconn
	done  bool
}

// next counts one packet about to be written: drop says the connection is
// closed (or must be once the packet is written, when write is also true).
func (d *dropper) next() (drop, write bool) {
	if d.done {
		return true, false
	}
	if d.left--; d.left > 0 {
		return false, true
	}
	d.done = true
	if d.after {
		return true, true
	}
	d.closeAll()
	return true, false
}

func (d *dropper) closeAll() {
	for _, m := range d.conns {
		_ = m.bw.Flush()
		m.c.Close()
	}
}

// dial connects to a milter and negotiates options.
// A non-nil drop may close it on purpose, from the first packet on.
func dial(name, network, addr string, timeout time.Duration, drop *dropper) (*mconn, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m := &mconn{name: name, c: c, br: bufio.NewReaderSize(c, 8192), bw: bufio.NewWriterSize(c, 8192),
		timeout: timeout, macros: defaultMacros, drop: drop}
	if drop != nil {
		drop.conns = append(drop.conns, m)
	}
	if err := m.negotiate(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: negotiate: %w", name, err)
	}
	return m, nil
}

func (m *mconn) negotiate() error {
	p := m.start('O')
	p = binary.BigEndian.AppendUint32(p, protoVersion)
	p = binary.BigEndian.AppendUint32(p, postfixActions)
	p = binary.BigEndian.AppendUint32(p, postfixProtocol)
	m.buf = p
	if err := m.send(); err != nil {
		return err
	}
	if err := m.flush(); err != nil {
		return err
	}
	code, data, err := m.read()
	if err != nil {
		return err
	}
	if code != 'O' || len(data) < 12 {
		return fmt.Errorf("%w: OPTNEG reply %q", errProtocol, code)
	}
	m.version = binary.BigEndian.Uint32(data)
	m.actions = binary.BigEndian.Uint32(data[4:])
	m.protocol = binary.BigEndian.Uint32(data[8:])
	if m.version < 2 || m.version > protoVersion {
		return fmt.Errorf("%w: milter protocol version %d", errProtocol, m.version)
	}
	if m.version < 4 {
		// DATA and unknown-command events came with version 4 (go-milter's
		// server answers version 2 whatever is offered, and gets neither).
		m.protocol |= pNoData | pNoUnknown
	}
	// Symbol lists: (uint32 stage, "name name ...\0") pairs.
	rest := data[12:]
	for len(rest) >= 5 {
		stage := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		end := indexNUL(rest)
		if end < 0 {
			return fmt.Errorf("%w: unterminated symbol list", errProtocol)
		}
		if stage < numStages {
			var names []string
			for _, n := range strings.Fields(string(rest[:end])) {
				if len(n) > 1 && n[0] != '{' {
					n = "{" + n + "}" // Postfix adds the braces
				}
				names = append(names, n)
			}
			m.macros[stage] = names
		}
		rest = rest[end+1:]
	}
	return nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// start begins a packet with code; the length is filled in by send.
func (m *mconn) start(code byte) []byte {
	return append(m.buf[:0], 0, 0, 0, 0, code)
}

func appendCString(p []byte, s string) []byte {
	p = append(p, s...)
	return append(p, 0)
}

// send writes the packet in m.buf (buffered; flushed before any read).
func (m *mconn) send() error {
	drop, write := false, true
	if m.drop != nil {
		drop, write = m.drop.next()
	}
	if !write {
		return errDropped
	}
	binary.BigEndian.PutUint32(m.buf, uint32(len(m.buf)-4))
	_, err := m.bw.Write(m.buf)
	if drop {
		m.drop.closeAll()
		return errDropped
	}
	return err
}

func (m *mconn) flush() error {
	if m.drop != nil && m.drop.done {
		return errDropped
	}
	if m.bw.Buffered() == 0 {
		return nil
	}
	if err := m.c.SetWriteDeadline(time.Now().Add(m.timeout)); err != nil {
		return err
	}
	return m.bw.Flush()
}

// read reads one packet; data is valid until the next read.
func (m *mconn) read() (byte, []byte, error) {
	if err := m.c.SetReadDeadline(time.Now().Add(m.timeout)); err != nil {
		return 0, nil, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(m.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxPacket {
		return 0, nil, fmt.Errorf("%w: packet length %d", errProtocol, n)
	}
	if cap(m.rbuf) < int(n) {
		m.rbuf = make([]byte, n)
	}
	p := m.rbuf[:n]
	if _, err := io.ReadFull(m.br, p); err != nil {
		return 0, nil, err
	}
	return p[0], p[1:], nil
}

// sendMacros sends the 'D' packet for an event: the stage's macros that
// have a value. Postfix sends the packet even when it is empty.
func (m *mconn) sendMacros(event byte, stage int, vals map[string]string) error {
	p := m.start('D')
	p = append(p, event)
	for _, name := range m.macros[stage] {
		if v, ok := vals[name]; ok {
			p = appendCString(p, name)
			p = appendCString(p, v)
		}
	}
	m.buf = p
	return m.send()
}

// event sends one event packet (built by fill) and, unless the milter
// asked for no reply (noReply), waits for the reply. mods collects
// modifications, which are only legal at end of message.
func (m *mconn) event(code byte, noReply bool, fill func([]byte) []byte, mods *[]modification) (reply, error) {
	p := m.start(code)
	if fill != nil {
		p = fill(p)
	}
	m.buf = p
	if err := m.send(); err != nil {
		return reply{}, fmt.Errorf("%s: send %q: %w", m.name, code, err)
	}
	if noReply {
		return reply{code: 'c'}, nil
	}
	if err := m.flush(); err != nil {
		return reply{}, fmt.Errorf("%s: send %q: %w", m.name, code, err)
	}
	for {
		rc, data, err := m.read()
		if err != nil {
			return reply{}, fmt.Errorf("%s: reply to %q: %w", m.name, code, err)
		}
		switch rc {
		case 'p': // progress
			continue
		case 'a', 'c', 'd', 'r', 't', 's':
			return reply{code: rc}, nil
		case 'y':
			return reply{code: rc, text: strings.TrimRight(string(data), "\x00")}, nil
		case 'h', 'i', 'm', 'q', '+', '-', '2', 'b', 'e', 'f':
			if code != 'E' || mods == nil {
				return reply{}, fmt.Errorf("%s: %w: modification %q outside end of message", m.name, errProtocol, rc)
			}
			mod, err := parseMod(rc, data)
			if err != nil {
				return reply{}, fmt.Errorf("%s: %w", m.name, err)
			}
			*mods = append(*mods, mod)
		default:
			return reply{}, fmt.Errorf("%s: %w: reply code %q to %q", m.name, errProtocol, rc, code)
		}
	}
}

// parseMod decodes a modification packet's data.
func parseMod(code byte, data []byte) (modification, error) {
	mod := modification{code: code}
	cstrings := func(b []byte) []string {
		var out []string
		for len(b) > 0 {
			i := indexNUL(b)
			if i < 0 {
				out = append(out, string(b))
				break
			}
			out = append(out, string(b[:i]))
			b = b[i+1:]
		}
		return out
	}
	switch code {
	case 'i', 'm':
		if len(data) < 4 {
			return mod, fmt.Errorf("%w: short %q packet", errProtocol, code)
		}
		mod.index = binary.BigEndian.Uint32(data)
		data = data[4:]
		fallthrough
	case 'h':
		s := cstrings(data)
		if len(s) < 2 {
			return mod, fmt.Errorf("%w: %q packet without name and value", errProtocol, code)
		}
		mod.name, mod.value = s[0], s[1]
	case 'q':
		if s := cstrings(data); len(s) > 0 {
			mod.value = s[0]
		}
	}
	return mod, nil
}

// abort sends 'A' (no reply); quit sends 'Q' and closes.
func (m *mconn) abort() error {
	m.buf = m.start('A')
	return m.send()
}

func (m *mconn) quit() {
	m.buf = m.start('Q')
	if m.send() == nil {
		_ = m.flush()
	}
	m.c.Close()
}

func (m *mconn) close() { m.c.Close() }
