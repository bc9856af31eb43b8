package milter

import (
	"context"
	"errors"
	"fmt"
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
}

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
			return &session{backend: srv.backend, log: srv.log, conn: c, baseCtx: srv.baseCtx}
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
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, srv: l.srv}
	l.srv.mu.Lock()
	if l.srv.closing {
		l.srv.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.srv.conns[tc] = struct{}{}
	l.srv.wg.Add(1)
	l.srv.mu.Unlock()
	l.srv.sessions.Add(1)
	l.pending.Store(tc)
	return tc, nil
}

// trackedConn sets a read deadline before every read (go-milter sets none)
// and tells the server when it is closed.
type trackedConn struct {
	net.Conn
	srv    *Server
	state  atomic.Int32
	closed atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.srv.log.Info("closing silent milter connection", "idle", c.srv.opts.IdleTimeout.String())
	}
	return n, err
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
		c.srv.sessions.Add(-1)
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
