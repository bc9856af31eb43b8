package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildMilter builds ./cmd/authmilter of this checkout into dir.
func buildMilter(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the authmilter module")
	}
	bin := filepath.Join(dir, "authmilter")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/authmilter")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/authmilter: %w\n%s", err, out)
	}
	return bin, nil
}

// milterConfig is the part of the authmilter configuration the cases vary.
type milterConfig struct {
	Listen            []string // e.g. "inet:127.0.0.1:PORT", "unix:/path"
	DNS               string   // "127.0.0.1:PORT" of the test DNS server
	SkipAuthenticated bool
	Quarantine        string // "hold" | "header"
	Monitor           bool
	Temperror         string // "accept" | "tempfail"; "" leaves the default (tempfail)
	StoreDir          string // the SQLite record store; startMilter sets one under its dir
	// Extra is TOML appended as is: sections the fields above do not
	// cover (signing_test.go's [signing] with its key tables).
	Extra string
	// Raw, when set, is the whole file (migrate_test.go's migrated
	// configurations); Listen must still name its sockets.
	Raw string
}

// defaultConfig is the configuration most cases run with.
func defaultConfig(dns string, listen ...string) milterConfig {
	return milterConfig{Listen: listen, DNS: dns, SkipAuthenticated: true, Quarantine: "hold"}
}

func (c milterConfig) toml() string {
	if c.Raw != "" {
		return c.Raw
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var listen []string
	for _, l := range c.Listen {
		listen = append(listen, q(l))
	}
	return `authserv_id = "` + authservID + `"

[milter]
listen = [` + strings.Join(listen, ", ") + `]
# smtpd connects as user postfix; the milter runs as root in the suite.
socket_mode = "0666"
shutdown_timeout = "5s"

[dns]
servers = [` + q(c.DNS) + `]
timeout = "1s"
attempts = 1

[log]
level = "debug"

[policy]
ignore_hosts = []
skip_authenticated = ` + fmt.Sprint(c.SkipAuthenticated) + `

[dmarc]
quarantine = ` + q(c.Quarantine) + `
monitor = ` + fmt.Sprint(c.Monitor) + `
` + tomlLine("temperror", c.Temperror) + `

[store]
dir = ` + q(c.StoreDir) + `
` + c.Extra
}

// tomlLine writes key = "value", or nothing for an empty value (the
// daemon's default applies).
func tomlLine(key, value string) string {
	if value == "" {
		return ""
	}
	return fmt.Sprintf("%s = %q", key, value)
}

// milterProc is one running authmilter serve.
type milterProc struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // exit status, valid after done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMilter writes cfg to dir/name.toml and runs authmilter serve with it,
// waiting until every listen address accepts connections.
func startMilter(bin, dir, name string, cfg milterConfig) (*milterProc, error) {
	path := filepath.Join(dir, name+".toml")
	if cfg.StoreDir == "" { // never the system's /var/lib/authmilter
		cfg.StoreDir = filepath.Join(dir, name+"-store")
	}
	if err := os.WriteFile(path, []byte(cfg.toml()), 0o644); err != nil {
		return nil, err
	}
	m := &milterProc{name: name, log: &syncBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(bin, "serve", "-config", path)
	m.cmd.Stdout = m.log
	m.cmd.Stderr = m.log
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start authmilter: %w", err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for _, l := range cfg.Listen {
		network, addr := "tcp", strings.TrimPrefix(l, "inet:")
		if p, ok := strings.CutPrefix(l, "unix:"); ok {
			network, addr = "unix", p
		}
		for {
			c, err := net.DialTimeout(network, addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-m.done:
				return nil, fmt.Errorf("authmilter %s exited at start: %v\nconfig:\n%s\nlog:\n%s", name, m.err, cfg.toml(), m.log)
			default:
			}
			if time.Now().After(deadline) {
				m.kill()
				return nil, fmt.Errorf("authmilter %s does not listen on %s after 15s: %w\nlog:\n%s", name, l, err, m.log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return m, nil
}

// stop sends SIGTERM and waits for the process; the contract is a clean
// exit 0 after draining.
func (m *milterProc) stop() error {
	select {
	case <-m.done:
		return fmt.Errorf("authmilter %s had already exited: %v", m.name, m.err)
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-m.done:
		if m.err != nil {
			return fmt.Errorf("authmilter %s after SIGTERM: %w", m.name, m.err)
		}
		return nil
	case <-time.After(20 * time.Second):
		m.kill()
		return fmt.Errorf("authmilter %s did not exit within 20s of SIGTERM; killed", m.name)
	}
}

// kill ends the process without ceremony (cleanup after a failure).
func (m *milterProc) kill() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Kill()
	<-m.done
}

// running reports whether the process is still alive.
func (m *milterProc) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}
