package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/dnstest"
)

// The crash test drives messages through the real daemon (authmilter
// serve, built from cmd/authmilter), kills it with SIGKILL at a random
// moment, starts it again, and checks that every message whose
// end-of-message reply the MTA received has exactly one row.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func daemonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "authmilter-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "authmilter")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/authmilter").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

const crashZone = `
sender.test.        300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.sender.test. 300 IN TXT "v=DMARC1; p=none; rua=mailto:rua@sender.test"
`

// daemon is one running authmilter serve.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	logs *bytes.Buffer
}

func startDaemon(t *testing.T, cfgPath, addr string) *daemon {
	t.Helper()
	d := &daemon{addr: addr, logs: &bytes.Buffer{}}
	d.cmd = exec.Command(daemonBinary(t), "serve", "-config", cfgPath)
	d.cmd.Stderr = &syncWriter{w: d.logs}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
	waitFor(t, "milter port "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return d
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// session sends messages on one milter connection as Postfix does, while
// next gives queue ids and the daemon answers; acked gets each queue id
// whose end-of-message reply arrived.
func session(addr string, next func() (string, bool), acked func(string)) error {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 20 * time.Second, WriteTimeout: 5 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Conn("mx.sender.test", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
		return err
	}
	if _, err := s.Helo("mx.sender.test"); err != nil {
		return err
	}
	for {
		q, ok := next()
		if !ok {
			return nil
		}
		steps := []func() error{
			func() error { _, err := s.Mail("<a@sender.test>", nil); return err },
			func() error { _, err := s.Rcpt("<b@rcpt.test>", nil); return err },
			func() error { return s.Macros(gomilter.CodeHeader, "i", q) },
			func() error { _, err := s.HeaderField("From", " a@sender.test"); return err },
			func() error { _, err := s.HeaderEnd(); return err },
			func() error { _, err := s.BodyChunk([]byte("hello\r\n")); return err },
		}
		for _, st := range steps {
			if err := st(); err != nil {
				return err
			}
		}
		if _, _, err := s.End(); err != nil {
			return err
		}
		acked(q) // the MTA has its reply: the record must exist
		if err := s.Abort(); err != nil {
			return err
		}
	}
}

func TestCrash(t *testing.T) {
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			o := bc.opts(t) // skips (or fails under CI) without PostgreSQL
			dns := dnstest.New(t, crashZone)
			dir := t.TempDir()
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			storeCfg := fmt.Sprintf("backend = \"sqlite\"\ndir = %q\n", dir)
			if o.Backend == Postgres {
				storeCfg = fmt.Sprintf("backend = \"postgres\"\ndir = %q\npostgres_dsn = %q\n", dir, o.PostgresDSN)
			}
			cfgPath := filepath.Join(dir, "am.toml")
			os.WriteFile(cfgPath, []byte(fmt.Sprintf(`authserv_id = "mx.rcpt.test"
[milter]
listen = ["inet:%d@127.0.0.1"]
[dns]
servers = [%q]
timeout = "1s"
attempts = 1
[store]
%s`, port, dns.Addr(), storeCfg)), 0o600)

			seed := time.Now().UnixNano()
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			killAt := int64(100 + rng.IntN(400))
			t.Logf("seed %d: kill -9 after %d acknowledged messages", seed, killAt)

			d := startDaemon(t, cfgPath, addr)
			var mu sync.Mutex
			ackedSet := map[string]bool{}
			var sent, nacked atomic.Int64
			killed := make(chan struct{})
			var killOnce sync.Once
			next := func() (string, bool) {
				select {
				case <-killed:
					return "", false
				default:
				}
				return fmt.Sprintf("C%06d", sent.Add(1)), true
			}
			acked := func(q string) {
				mu.Lock()
				ackedSet[q] = true
				mu.Unlock()
				if nacked.Add(1) == killAt {
					killOnce.Do(func() {
						d.cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
			}
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					session(addr, next, acked) // ends with an error when the daemon dies
				}()
			}
			wg.Wait()
			d.cmd.Wait()
			select {
			case <-killed:
			default:
				t.Fatalf("the daemon was never killed; log:\n%s", d.logs.String())
			}

			// Start again: it replays any spool, and serves mail.
			d2 := startDaemon(t, cfgPath, addr)
			more := 0
			err := session(addr, func() (string, bool) {
				more++
				return fmt.Sprintf("D%06d", more), more <= 10
			}, func(q string) {
				mu.Lock()
				ackedSet[q] = true
				mu.Unlock()
			})
			if err != nil {
				t.Fatalf("after restart: %v\n%s", err, d2.logs.String())
			}
			d2.cmd.Process.Signal(syscall.SIGTERM)
			if err := d2.cmd.Wait(); err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, d2.logs.String())
			}

			// Read what the daemon left, from its own files (a spool file
			// it had no time to replay is replayed now).
			o.SQLitePath, o.SpoolDir = filepath.Join(dir, "records.db"), dir
			s := open(t, o)
			waitDrained(t, s)
			got := queueIDs(t, s)
			// What the daemon recorded for one message.
			rows, err := s.Rows(context.Background(), Query{PolicyDomain: "sender.test"})
			if err != nil || len(rows) == 0 {
				t.Fatalf("rows: %d, %v", len(rows), err)
			}
			r := rows[0].Record
			if r.Reporter != "mx.rcpt.test" || r.SourceIP != "192.0.2.1" || r.HeaderFrom != "sender.test" ||
				r.EnvelopeFrom != "sender.test" || len(r.EnvelopeTo) != 1 || r.EnvelopeTo[0] != "rcpt.test" ||
				r.DMARCResult != "pass" || r.SPFAligned != "pass" || r.Disposition != "pass" ||
				len(r.SPF) != 1 || r.SPF[0].Result != "pass" || r.Policy.P != "none" ||
				len(r.Policy.RUA) != 1 || r.Policy.RUA[0].Address != "mailto:rua@sender.test" {
				t.Errorf("recorded: %+v", r)
			}
			for q := range ackedSet {
				if got[q] != 1 {
					t.Errorf("acknowledged message %s has %d rows", q, got[q])
				}
			}
			for q, n := range got {
				if n != 1 {
					t.Errorf("message %s has %d rows", q, n)
				}
			}
			t.Logf("%d messages sent, %d acknowledged before the kill, %d rows", sent.Load(), len(ackedSet)-10, len(got))
			if t.Failed() {
				t.Logf("daemon log:\n%s\n---\n%s", d.logs.String(), d2.logs.String())
			}
		})
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
