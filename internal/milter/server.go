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
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"

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
	servers  []*gomilter.Server
	conns    map[*trackedConn]struct{}
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
	return &Server{backend: backend, opts: opts, log: opts.Log, conns: map[*trackedConn]struct{}{},
		baseCtx: context.Background()}
}

// Listen opens a socket. A stale unix socket file (nothing listening) is
// removed first; a live one is an error, so two daemons never share it. A
// unix socket gets mode and, when group is not empty, that group, so that
// the MTA's user can connect.
func Listen(s config.Socket, mode fs.FileMode, group string) (net.Listener, error) {
	if s.Network == "unix" {
		if fi, err := os.Lstat(s.Address); err == nil {
			if fi.Mode()&fs.ModeSocket == 0 {
				return nil, fmt.Errorf("listen %s: exists and is not a socket", s)
			}
			if c, err := net.DialTimeout("unix", s.Address, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: another process is listening on it", s)
			}
			if err := os.Remove(s.Address); err != nil {
				return nil, fmt.Errorf("listen %s: removing stale socket: %w", s, err)
			}
		}
	}
	ln, err := net.Listen(s.Network, s.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	if s.Network == "unix" {
		if err := os.Chmod(s.Address, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: %w", s, err)
		}
		if group != "" {
			if err := chgrp(s.Address, group); err != nil {
				ln.Close()
				return nil, fmt.Errorf("listen %s: %w", s, err)
			}
		}
	}
	return ln, nil
}

// Serve accepts milter connections on ln until Shutdown. It returns nil
// after a Shutdown.
func (srv *Server) Serve(ln net.Listener) error {
	tl := &trackingListener{Listener: ln, srv: srv}
	gs := &gomilter.Server{
		NewMilter: func() gomilter.Milter {
			// Serve calls NewMilter right after Accept, in the same
			// goroutine, so the connection just accepted is ours.
			c := tl.pending.Swap(nil)
			s := &session{backend: srv.backend, log: srv.log, conn: c, baseCtx: srv.baseCtx}
			if c != nil {
				// A connection that dies mid-message (the MTA went
				// away, the idle timeout, a forced shutdown) releases
				// the message's lookups and DKIM goroutine.
				c.onClose = s.closed
			}
			return s
		},
		Actions: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		// Values arrive byte-exact, with their leading space (NOTES.md
		// trap 5): DKIM c=simple needs it.
		Protocol: gomilter.OptHeaderLeadingSpace,
	}
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		ln.Close()
		return nil
	}
	srv.servers = append(srv.servers, gs)
	srv.mu.Unlock()
	err := gs.Serve(tl)
	srv.mu.Lock()
	closing := srv.closing
	srv.mu.Unlock()
	if closing {
		return nil
	}
	return err
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
	for _, gs := range srv.servers {
		gs.Close()
	}
	srv.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var idle []*trackedConn
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
			rest := make([]*trackedConn, 0, len(srv.conns))
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

// trackingListener wraps accepted connections with deadlines and tracking.
type trackingListener struct {
	net.Listener
	srv     *Server
	pending atomic.Pointer[trackedConn]
}

func (l *trackingListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.srv.mu.Lock()
			closing := l.srv.closing
			l.srv.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// EMFILE, ECONNABORTED…: go-milter's Serve would return on
			// any error and the daemon would stop serving. Back off and
			// go on, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.srv.log.Warn("accept failed, retrying", "err", err.Error(), "delay", delay.String())
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc := &trackedConn{Conn: c, srv: l.srv}
		l.srv.mu.Lock()
		if l.srv.closing {
			l.srv.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		full := l.srv.sessions.Load() >= int64(l.srv.opts.MaxSessions)
		l.srv.conns[tc] = struct{}{}
		l.srv.wg.Add(1)
		if full {
			tc.refusing = true
			l.srv.refusing.Add(1)
		} else {
			l.srv.sessions.Add(1)
		}
		l.srv.mu.Unlock()
		if full {
			l.srv.refused.Add(1)
			// Refusing costs a goroutine for at most refuseTimeout; when
			// even the refusals pile up, just close.
			if l.srv.refusing.Load() > int64(l.srv.opts.MaxSessions) {
				tc.Close()
				continue
			}
			go refuse(tc)
			continue
		}
		l.pending.Store(tc)
		return tc, nil
	}
}

// refuse answers a connection beyond MaxSessions without go-milter: option
// negotiation as go-milter does it, then 't' (tempfail) to every command
// that expects a reply, until the MTA quits or refuseTimeout. Postfix then
// defers the SMTP session with a 4xx.
func refuse(c *trackedConn) {
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

// trackedConn sets read deadlines (go-milter sets none) and tells the
// server when it is closed. It follows the packet framing (4-byte length,
// then that many bytes): a connection may wait IdleTimeout for the first
// byte of a packet, and then has IdleTimeout for the rest of it, so a
// client trickling a byte at a time (slowloris) cannot hold it for longer.
type trackedConn struct {
	net.Conn
	srv      *Server
	state    atomic.Int32
	closed   atomic.Bool
	refusing bool   // answered by refuse, not counted in sessions
	onClose  func() // set before the connection is served

	// Framing, touched only by the one goroutine that reads.
	hdr  [4]byte
	hdrN int    // bytes of the length prefix read so far
	left uint32 // bytes of the packet body still to come
}

func (c *trackedConn) Read(b []byte) (int, error) {
	boundary := c.hdrN == 0 && c.left == 0
	if boundary {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout)); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	c.advance(b[:n])
	if boundary && n > 0 && (c.hdrN != 0 || c.left != 0) {
		// A packet has begun: the rest of it gets IdleTimeout from now.
		if derr := c.Conn.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout)); derr != nil && err == nil {
			err = derr
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.srv.log.Info("closing silent milter connection", "idle", c.srv.opts.IdleTimeout.String(),
			"mid_packet", c.hdrN != 0 || c.left != 0)
	}
	return n, err
}

// advance follows the framing over p, the bytes just read.
func (c *trackedConn) advance(p []byte) {
	for len(p) > 0 {
		if c.left > 0 {
			k := uint32(len(p))
			if k > c.left {
				k = c.left
			}
			c.left -= k
			p = p[k:]
			continue
		}
		c.hdr[c.hdrN] = p[0]
		c.hdrN++
		p = p[1:]
		if c.hdrN == 4 {
			c.hdrN, c.left = 0, binary.BigEndian.Uint32(c.hdr[:])
		}
	}
}

func (c *trackedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.srv.opts.IdleTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(b)
	// After the end-of-message reply went out, the message is done.
	c.state.CompareAndSwap(int32(stateEOMReply), int32(stateIdle))
	return n, err
}

func (c *trackedConn) Close() error {
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

func chgrp(path, group string) error {
	g, err := user.LookupGroup(group)
	if err != nil {
		if g, err = user.LookupGroupId(group); err != nil {
			return fmt.Errorf("socket_group %q: %w", group, err)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("socket_group %q: %w", group, err)
	}
	return os.Chown(path, -1, gid)
}
