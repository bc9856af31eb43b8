package store

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pgProxy is a TCP proxy on loopback in front of PostgreSQL that the test
// can cut, the way a stopped server or a broken network does.
type pgProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  string // "up", "stopped" (connections closed, new ones refused), "unreachable" (nothing answers)
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, mode: "up"}
	t.Cleanup(func() {
		ln.Close()
		p.set("stopped")
	})
	go p.serve()
	return p
}

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		switch mode {
		case "stopped":
			c.Close()
			continue
		case "unreachable":
			p.track(c)
			go io.Copy(io.Discard, c) // hold it open, answer nothing
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.track(c, up)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe forwards src to dst until either ends; while the proxy is
// "unreachable" it swallows the bytes instead, keeping both ends open.
func (p *pgProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		frozen := p.mode == "unreachable"
		p.mu.Unlock()
		if frozen {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *pgProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, cs...)
	p.mu.Unlock()
}

// set changes the mode; every connection open so far is cut.
func (p *pgProxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	if mode == "unreachable" {
		return // the pipes swallow everything from now on: clients hang
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// The outage test: PostgreSQL goes away in the middle of a run of
// concurrent sessions. Every Put still returns (within the bounded wait,
// with its records in the spool); once the server is back every record
// arrives, none twice.
func TestPostgresOutage(t *testing.T) {
	for _, mode := range []string{"stopped", "unreachable"} {
		t.Run(mode, func(t *testing.T) {
			dsn := pgDSN(t)
			u, _ := url.Parse(dsn)
			px := newProxy(t, u.Host)
			u.Host = px.ln.Addr().String()
			s := open(t, Options{Backend: Postgres, PostgresDSN: u.String(), SpoolDir: t.TempDir(),
				WriteTimeout: 300 * time.Millisecond, RetryInterval: 100 * time.Millisecond})

			const n, sessions = 600, 8
			var next, acked atomic.Int64
			var maxWait atomic.Int64
			outage, restore := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			for range sessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= n {
							return
						}
						start := time.Now()
						if err := s.Put(context.Background(), rec("o.test", time.Now(), qid(int(i)))); err != nil {
							t.Errorf("Put %d: %v", i, err)
						}
						if d := int64(time.Since(start)); d > maxWait.Load() {
							maxWait.Store(d)
						}
						switch acked.Add(1) {
						case n / 4:
							close(outage)
						case 3 * n / 4:
							close(restore)
						}
					}
				}()
			}
			<-outage
			px.set(mode)
			<-restore // half of the run went through the outage
			spooled := s.Stats().Spooled
			px.set("up")
			wg.Wait()
			if spooled == 0 {
				t.Errorf("the outage did not reach the store: %+v", s.Stats())
			}
			waitDrained(t, s)
			got := queueIDs(t, s)
			for i := range n {
				if got[qid(i)] != 1 {
					t.Errorf("%s: %d rows", qid(i), got[qid(i)])
				}
			}
			t.Logf("stats %+v; longest Put %v (write_timeout 300ms)", s.Stats(), time.Duration(maxWait.Load()))
		})
	}
}
