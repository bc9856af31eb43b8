package milter_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/milter"
)

type noopBackend struct{}

type noopMessage struct{}

func (noopBackend) Begin(context.Context, milter.Envelope) milter.Message { return noopMessage{} }
func (noopMessage) Recipient(string)                                      {}
func (noopMessage) Header(string, string)                                 {}
func (noopMessage) EndOfHeaders()                                         {}
func (noopMessage) Body([]byte)                                           {}
func (noopMessage) Abort()                                                {}
func (noopMessage) End(context.Context, string) milter.Verdict {
	return milter.Verdict{Insert: []milter.HeaderField{{Name: "Authentication-Results", Value: "mx.rcpt.test;\r\n\tspf=pass smtp.mailfrom=a@sender.test"}}}
}

// BenchmarkProtocol is the milter protocol alone: one message per op as
// Postfix sends it (macros, 3 header fields, 2 body chunks, Abort) over
// loopback TCP to a backend that does nothing, with the options Postfix
// offers (NR flags: one round trip per message) or none (a reply per
// event, as go-milter's server needed).
func BenchmarkProtocol(b *testing.B) {
	for _, bc := range []struct {
		name     string
		protocol uint32
	}{{"postfix", 0x1fffff}, {"no-NR-flags", 0x100000}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := milter.NewServer(noopBackend{}, milter.Options{Log: slog.New(slog.DiscardHandler)})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln) //nolint:errcheck
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				srv.Shutdown(ctx) //nolint:errcheck
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(optnegWith(6, 0x1ff, bc.protocol)); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 17)); err != nil {
				b.Fatal(err)
			}
			msg := append(postfixMessage(false, "", "Q1"), pkt('A')...)
			// Replies per message: the inserted field and the final one,
			// plus a 'c' per event without NR flags.
			var replies int
			if bc.protocol&0x80 == 0 {
				replies = 8
			}
			first := append(postfixMessage(true, "", "Q1"), pkt('A')...)
			if _, err := c.Write(first); err != nil {
				b.Fatal(err)
			}
			if bc.protocol&0x80 == 0 {
				replies += 2 // connect and helo, first message only
			}
			rd := newReplyReader(c)
			if err := rd.skip(replies + 2); err != nil {
				b.Fatal(err)
			}
			if bc.protocol&0x80 == 0 {
				replies -= 2
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if bc.protocol&0x80 == 0 {
					// The MTA waits for each reply: write event by event.
					if err := rd.lockstep(c, msg); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if err := rd.skip(replies + 2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type replyReader struct {
	c   net.Conn
	hdr [4]byte
	buf []byte
}

func newReplyReader(c net.Conn) *replyReader { return &replyReader{c: c, buf: make([]byte, 4096)} }

func (r *replyReader) next() (byte, error) {
	if _, err := io.ReadFull(r.c, r.hdr[:]); err != nil {
		return 0, err
	}
	n := int(r.hdr[0])<<24 | int(r.hdr[1])<<16 | int(r.hdr[2])<<8 | int(r.hdr[3])
	if n > len(r.buf) {
		r.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r.c, r.buf[:n]); err != nil {
		return 0, err
	}
	return r.buf[0], nil
}

func (r *replyReader) skip(n int) error {
	for range n {
		if _, err := r.next(); err != nil {
			return err
		}
	}
	return nil
}

// lockstep writes the packets of msg one by one, reading a reply after
// each event that has one (all but macros and abort) and the end of
// message's two.
func (r *replyReader) lockstep(c net.Conn, msg []byte) error {
	for len(msg) > 0 {
		n := 4 + (int(msg[0])<<24 | int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		p := msg[:n]
		msg = msg[n:]
		if _, err := c.Write(p); err != nil {
			return err
		}
		switch p[4] {
		case 'D', 'A':
		case 'E':
			if err := r.skip(2); err != nil {
				return err
			}
		default:
			if err := r.skip(1); err != nil {
				return err
			}
		}
	}
	return nil
}
