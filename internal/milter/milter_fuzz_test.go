package milter_test

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/testmilter"
)

// fuzzCommands are the milter commands an op byte picks from: every
// SMFIC_* code of protocol version 6, plus a few that are not commands.
const fuzzCommands = "OCHMRLNBEADQTUKXZ\x00\xff"

// decodeOps turns fuzz input into the byte stream an MTA would write.
// Each op is one byte, then a length byte, then that many payload bytes
// (fewer if the input ends: the packet is then truncated on the wire):
//
//	op < 0x80: a well-framed packet, command fuzzCommands[op%len], the
//	           payload as its data; for C, L, D the payload is split at
//	           NULs as the real packets are, so mutations stay meaningful
//	op >= 0x80: the payload written raw, framing and all
func decodeOps(data []byte) []byte {
	var out []byte
	for len(data) >= 2 {
		op, n := data[0], int(data[1])
		data = data[2:]
		truncated := n > len(data)
		if truncated {
			n = len(data)
		}
		payload := data[:n]
		data = data[n:]
		if op >= 0x80 {
			out = append(out, payload...)
			continue
		}
		body := append([]byte{fuzzCommands[int(op)%len(fuzzCommands)]}, payload...)
		length := len(body)
		if truncated { // announce more than is sent
			length += int(op)%7 + 1
		}
		out = binary.BigEndian.AppendUint32(out, uint32(length))
		out = append(out, body...)
	}
	return out
}

// encodeOps is decodeOps' inverse for streams of well-framed packets,
// for seeds.
func encodeOps(streams ...[]byte) []byte {
	var packets [][]byte
	for _, s := range streams {
		for len(s) >= 5 {
			n := 4 + int(binary.BigEndian.Uint32(s))
			packets = append(packets, s[:n])
			s = s[n:]
		}
	}
	var out []byte
	for _, p := range packets {
		body := p[4:]
		if len(body)-1 <= 255 {
			out = append(out, byte(strings.IndexByte(fuzzCommands, body[0])), byte(len(body)-1))
			out = append(out, body[1:]...)
			continue
		}
		for len(p) > 0 { // too long for one op: raw, in pieces
			k := min(255, len(p))
			out = append(out, 0x80, byte(k))
			out = append(out, p[:k]...)
			p = p[k:]
		}
	}
	return out
}

// FuzzMilterSession writes random, truncated and out-of-order packet
// sequences to the real server over a real connection. Whatever comes, the
// server answers with well-formed packets or closes, never hangs, never
// panics, and serves the next message normally. Seeds:
// testdata/fuzz/FuzzMilterSession.
func FuzzMilterSession(f *testing.F) {
	r := newRig(f, signedZone(f), rigOptions{idle: 2 * time.Second, budget: 3 * time.Second})
	st := rawStages(f)
	f.Add(encodeOps(st...))
	// 0 OPTNEG, 1 CONNECT, 2 HELO, 3 MAIL, 4 RCPT, 5 header fields, 6 EOH,
	// 7-8 body, 9 EOM, 10 ABORT, 11 QUIT.
	f.Add(encodeOps(st[0], st[1], st[3], st[9], st[10], st[3], st[5], st[9]))
	f.Add(encodeOps(st[0], st[6], st[2], st[7], st[9], st[11]))
	f.Add(encodeOps(optneg(), pkt('C', cstr("h"), "6", "\x00\x19", cstr("2001:db8::1")), pkt('M', cstr("<>")), pkt('E')))
	f.Add([]byte{0x80, 4, 0, 0, 0, 0})
	f.Add([]byte{0x80, 5, 0xff, 0xff, 0xff, 0xff, 'B'})
	f.Fuzz(func(t *testing.T, data []byte) {
		stream := decodeOps(data)
		mark1, mark2 := len(libLog.String()), len(r.logs.String())
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(stream)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			done <- err
		}()
		codes, ended, err := readReplies(c, 30*time.Second)
		if err != nil {
			t.Fatalf("malformed reply: %v (replies %q)", err, codes)
		}
		if !ended {
			t.Fatalf("no close within 30 s after the MTA's EOF (replies %q)", codes)
		}
		<-done // a write error only means the server closed first
		for _, code := range codes {
			if !strings.ContainsRune("Ocahitmqy", rune(code)) {
				t.Fatalf("unexpected reply code %q in %q", code, codes)
			}
		}
		for _, l := range []struct {
			s    string
			mark int
		}{{libLog.String(), mark1}, {r.logs.String(), mark2}} {
			if len(l.s) >= l.mark && strings.Contains(l.s[l.mark:], "panic") {
				t.Fatalf("panic logged:\n%s", testmilter.Tail(l.s[l.mark:], 4000))
			}
		}
		r.sendOne(t, stdMessage("sender.test"))
	})
}

// The seed encoding round-trips, so the seeds mean what they say.
func TestFuzzOpsEncoding(t *testing.T) {
	st := rawStages(t)
	var want []byte
	for _, p := range st {
		want = append(want, p...)
	}
	if got := decodeOps(encodeOps(st...)); string(got) != string(want) {
		t.Fatalf("decodeOps(encodeOps(stages)) differs:\n got %q\nwant %q", got, want)
	}
}
