package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authmilter/authmilter/internal/config"
)

// connState tells Shutdown whether a connection may be closed now.
type connState int32

const (
	stateIdle     connState = iota // between messages: may be closed
	stateMessage                   // a message is in flight: wait
	stateEOMReply                  // the end-of-message reply is being written: wait for it
)

// Options configure the server.
type Options struct {
	IdleTimeout time.Duration // a connection silent this long is closed
	SocketMode  fs.FileMode   // for unix sockets
	Log         *slog.Logger
	// MaxSessions bounds the milter connections served at once (default
	// DefaultMaxSessions). A connection beyond it is answered, not left
	// hanging: option negotiation, then a tempfail reply to every command,
	// so the MTA defers the SMTP client (RFC 5321 §4.2.1, 4yz) and retries.
	MaxSessions int
}

// DefaultMaxSessions is Options.MaxSessions when zero: well above the
// smtpd process count of a default Postfix (100), below what the fd limit
// of a default systemd unit (1024 soft) would reach first.
const DefaultMaxSessions = 500

// refuseTimeout bounds the life of a connection refused for MaxSessions.
const refuseTimeout = 30 * time.Second

// Server serves the milter protocol on any number of sockets.
type Server struct {
	backend Backend
	opts    Options
	log     *slog.Logger
	baseCtx context.Context

	mu       sync.Mutex
	lns      []net.Listener
	conns    map[*conn]struct{}
	closing  bool
	wg       sync.WaitGroup
	sessions atomic.Int64
	refusing atomic.Int64 // connections being refused for MaxSessions
	refused  atomic.Int64 // connections refused so far
}

// NewServer returns a server that hands messages to backend.
func NewServer(backend Backend, opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.SocketMode == 0 {
		opts.SocketMode = 0o660
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	return &Server{backend: backend, opts: opts, log: opts.Log, conns: map[*conn]struct{}{},
		baseCtx: context.Background()}
}

// Listen opens a socket. A stale unix socket file (nothing listening) is
// removed first; a live one is an error, so two daemons never share it. A
// unix socket gets mode and, when group is not empty, that group, so that
// the MTA's user can connect: set up where no other user can reach it and
// renamed into place (listenUnix), in a directory no other user may write
// (checkSocketDir).
func Listen(s config.Socket, mode fs.FileMode, group string) (net.Listener, error) {
	if s.Network == "unix" {
		return listenUnix(s, mode, group)
	}
	ln, err := net.Listen(s.Network, s.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	return ln, nil
}

// Serve accepts milter connections on ln until Shutdown, each served by
// its own goroutine. It returns nil after a Shutdown.
func (srv *Server) Serve(ln net.Listener) error {
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		ln.Close()
		return nil
	}
	srv.lns = append(srv.lns, ln)
	srv.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if srv.isClosing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE, ECONNABORTED…: back off and go on, as net/http
			// does, rather than stop serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			srv.log.Warn("accept failed, retrying", "err", err.Error(), "delay", delay.String())
			time.Sleep(delay)
			continue
		}
		delay = 0
		srv.accepted(nc)
	}
}

func (srv *Server) isClosing() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closing
}

// accepted registers a new connection and starts serving it, or refusing
// it beyond MaxSessions.
func (srv *Server) accepted(nc net.Conn) {
	c := &conn{Conn: nc, srv: srv}
	var s *session
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		nc.Close()
		return
	}
	full := srv.sessions.Load() >= int64(srv.opts.MaxSessions)
	if full {
		c.refusing = true
		srv.refusing.Add(1)
	} else {
		// A connection that dies mid-message (the MTA went away, the
		// idle timeout, a forced shutdown) releases the message's
		// lookups and DKIM goroutine.
		s = newSession(srv, c)
		c.onClose = s.closed
		srv.sessions.Add(1)
	}
	srv.conns[c] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	if full {
		srv.refused.Add(1)
		// Refusing costs a goroutine for at most refuseTimeout; when
		// even the refusals pile up, just close.
		if srv.refusing.Load() > int64(srv.opts.MaxSessions) {
			c.Close()
			return
		}
		go refuse(c)
		return
	}
	go srv.serveConn(c, s)
}

// serveConn serves one connection; a panic ends only this connection.
func (srv *Server) serveConn(c *conn, s *session) {
	defer c.Close()
	defer func() {
		if v := recover(); v != nil {
			srv.log.Error("internal error, milter connection closed", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	s.serve()
}

// Sessions returns the number of open milter connections.
func (srv *Server) Sessions() int64 { return srv.sessions.Load() }

// Refused returns how many connections were refused for MaxSessions.
func (srv *Server) Refused() int64 { return srv.refused.Load() }

// Shutdown stops accepting, closes idle connections at once and the others
// as soon as their message is done, and returns when all are closed or ctx
// ends (then the rest are closed; Postfix applies milter_default_action).
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	for _, ln := range srv.lns {
		ln.Close()
	}
	srv.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var idle []*conn
		srv.mu.Lock()
		n := 0
		for c := range srv.conns {
			if connState(c.state.Load()) == stateIdle {
				idle = append(idle, c)
			} else {
				n++
			}
		}
		srv.mu.Unlock()
		for _, c := range idle { // Close takes srv.mu itself
			c.Close()
		}
		if n == 0 {
			srv.wg.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			srv.mu.Lock()
			rest := make([]*conn, 0, len(srv.conns))
			for c := range srv.conns {
				rest = append(rest, c)
			}
			srv.mu.Unlock()
			for _, c := range rest {
				c.Close()
			}
			srv.wg.Wait()
			return fmt.Errorf("shutdown: %d messages still in flight were cut off: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

// refuse answers a connection beyond MaxSessions: option negotiation as
// protocol version 2 with nothing asked for, then 't' (tempfail) to every command
// that expects a reply, until the MTA quits or refuseTimeout. Postfix then
// defers the SMTP session with a 4xx.
func refuse(c *conn) {
	defer c.Close()
	c.srv.log.Warn("too many milter sessions, answering tempfail", "max_sessions", c.srv.opts.MaxSessions)
	if err := c.Conn.SetDeadline(time.Now().Add(refuseTimeout)); err != nil {
		return
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > 1<<16 {
			return // not something an MTA sends before CONNECT
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.Conn, data); err != nil {
			return
		}
		var reply []byte
		switch data[0] {
		case 'O': // SMFIC_OPTNEG: version 2, no actions, no protocol flags
			reply = []byte{'O', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}
		case 'D', 'A': // macros, abort: no reply
		case 'Q': // quit
			return
		case 'C', 'H', 'M', 'R', 'T', 'L', 'N', 'E', 'B', 'U':
			reply = []byte{'t'}
		default:
			return
		}
		if reply == nil {
			continue
		}
		pkt := binary.BigEndian.AppendUint32(nil, uint32(len(reply)))
		if _, err := c.Conn.Write(append(pkt, reply...)); err != nil {
			return
		}
	}
}

// conn is one accepted milter connection; the server tracks it for
// Shutdown.
type conn struct {
	net.Conn
	srv      *Server
	state    atomic.Int32 // a connState
	closed   atomic.Bool
	refusing bool   // answered by refuse, not counted in sessions
	onClose  func() // set before the connection is served
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		if c.refusing {
			c.srv.refusing.Add(-1)
		} else {
			c.srv.sessions.Add(-1)
		}
		if c.onClose != nil {
			c.onClose()
		}
		c.srv.wg.Done()
	}
	return err
}
