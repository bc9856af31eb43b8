package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/testmilter"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[dns]\ntimeout = \"soon\"\n[milter]\nlisten = [\"inet:1.2.3.4\"]\nbogus = 1\n"), 0o600)
	tests := []struct {
		args []string
		code int
		out  []string
	}{
		{[]string{"check-config", "../../config.example.toml"}, 0, []string{"ok"}},
		{[]string{"check-config", bad}, 1, []string{"line 5: milter.bogus: unknown option"}},
		{[]string{"check-config", filepath.Join(dir, "missing.toml")}, 1, []string{"no such file"}},
		{[]string{"check-config"}, 2, []string{"usage"}},
		{[]string{"version"}, 0, []string{"authmilter"}},
		{[]string{"frobnicate"}, 2, []string{"unknown command"}},
		{[]string{"serve", "-config", bad}, 1, []string{"milter.bogus"}},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		all := out.String() + errb.String()
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d; output %s", tt.args, code, tt.code, all)
		}
		for _, w := range tt.out {
			if !strings.Contains(all, w) {
				t.Errorf("%v: output lacks %q: %s", tt.args, w, all)
			}
		}
	}
	// Every error of a file is reported, not only the first.
	os.WriteFile(bad, []byte("[dns]\nattempts = 0\ntimeout = \"0s\"\n[dmarc]\nmode = \"x\"\n"), 0o600)
	var errb bytes.Buffer
	run([]string{"check-config", bad}, &bytes.Buffer{}, &errb)
	for _, w := range []string{"line 2: dns.attempts", "line 3: dns.timeout", "line 5: dmarc.mode"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("lacks %q: %s", w, errb.String())
		}
	}
}

// buildBinary builds the command once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "authmilter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// SIGTERM with a message in flight: the message gets its reply, the
// process exits 0; a stale unix socket file is replaced at start and
// removed at exit.
func TestServeSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	dns := dnstest.New(t, `sender.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	dns.Drop("_dmarc.sender.test.") // the message waits on this lookup
	dir := t.TempDir()
	sock := filepath.Join(dir, "am.sock")
	// A stale socket: bound, then its listener gone.
	if l, err := net.Listen("unix", sock); err == nil {
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	port := freePort(t)
	cfg := filepath.Join(dir, "am.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`authserv_id = "mx.rcpt.test"
[milter]
listen = ["inet:%d@127.0.0.1", "local:%s"]
shutdown_timeout = "20s"
[dns]
servers = ["%s"]
timeout = "1500ms"
attempts = 1
[store]
dir = "%s"
`, port, sock, dns.Addr(), filepath.Join(dir, "store"))), 0o600)

	p := startProc(t, bin, "serve", "-config", cfg)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p.waitListening(addr)
	// The TCP socket accepts as soon as it is bound, before the unix one
	// exists: wait for the line written once every socket is open.
	p.waitUntil("started", func() bool { return strings.Contains(p.logs.String(), "authmilter started") })
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("unix socket: %v %v", fi, err)
	}
	// The unix socket serves too.
	su := dial(t, "unix", sock)
	su.Close()

	s := dial(t, "tcp", addr)
	done := make(chan string, 1)
	go func() {
		r, err := testmilter.Send(s, senderMessage("192.0.2.1", "sender.test", "rcpt.test"))
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		if ar := r.AR(); ar != "" {
			done <- fmt.Sprintf("%c %s", r.Action.Code, ar)
			return
		}
		done <- "no header"
	}()
	time.Sleep(300 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	got := <-done
	// Finished, not dropped: its DMARC lookup is left to time out, so it
	// ends in temperror and the default 451 (dmarc.temperror = "tempfail").
	if !strings.HasPrefix(got, "y ") || !strings.Contains(got, "dmarc=temperror") {
		t.Errorf("message in flight got %q", got)
	}
	if err := p.wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, p.logs.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	if !strings.Contains(p.logs.String(), "shutting down") || !strings.Contains(p.logs.String(), "stopped") {
		t.Errorf("log: %s", p.logs.String())
	}
}

func dial(t *testing.T, network, addr string) *gomilter.ClientSession {
	t.Helper()
	s, err := testmilter.Dial(network, addr, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// senderMessage is one short message from a@domain at ip (HELO
// mx.domain) to b@rcptDomain, ended without Abort.
func senderMessage(ip, domain, rcptDomain string, extra ...[2]string) testmilter.Message {
	return testmilter.Message{Host: "mx." + domain, IP: ip, HELO: "mx." + domain, From: "a@" + domain, Rcpt: "b@" + rcptDomain,
		Headers: append([][2]string{{"From", " a@" + domain}}, extra...), Body: [][]byte{[]byte("hello\r\n")}, NoAbort: true}
}
