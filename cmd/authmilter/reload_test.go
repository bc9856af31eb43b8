package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/testmilter"
)

const reloadZone = `
sender.test.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.sender.test.   300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"
`

// daemonProc is the real binary running `serve`.
type daemonProc struct {
	*proc
	cfgPath string
	milter  string // 127.0.0.1:PORT
	metrics string // 127.0.0.1:PORT
}

// startDaemon writes cfg (a format string taking the milter port, the
// metrics port, the DNS server and a state directory, in that order as
// %[1]d %[2]d %[3]s %[4]s) and starts the binary on it.
func startDaemon(t *testing.T, bin string, dns *dnstest.Server, cfg string) *daemonProc {
	t.Helper()
	dir := t.TempDir()
	d := &daemonProc{cfgPath: filepath.Join(dir, "am.toml")}
	mport, hport := freePort(t), freePort(t)
	d.milter, d.metrics = fmt.Sprintf("127.0.0.1:%d", mport), fmt.Sprintf("127.0.0.1:%d", hport)
	if err := os.WriteFile(d.cfgPath, []byte(fmt.Sprintf(cfg, mport, hport, dns.Addr(), filepath.Join(dir, "state"))), 0o600); err != nil {
		t.Fatal(err)
	}
	d.proc = startProc(t, bin, "serve", "-config", d.cfgPath)
	d.waitLog("authmilter started", 1)
	return d
}

func (d *daemonProc) write(cfg string) {
	d.t.Helper()
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// waitLog waits until the log holds n lines containing s.
func (d *daemonProc) waitLog(s string, n int) {
	d.t.Helper()
	d.waitUntil(fmt.Sprintf("had %d× %q in the log", n, s), func() bool { return strings.Count(d.logs.String(), s) >= n })
}

// stop ends the daemon with SIGTERM and checks it exits 0.
func (d *daemonProc) stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	if err := d.wait(); err != nil {
		d.t.Errorf("exit: %v", err)
	}
}

func (d *daemonProc) get(path string) (int, string) {
	d.t.Helper()
	resp, err := http.Get("http://" + d.metrics + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one series of /metrics (0 when absent).
func (d *daemonProc) metric(series string) float64 {
	d.t.Helper()
	_, body := d.get("/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				d.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// milterConn is one MTA connection from 192.0.2.1, HELO done.
func (d *daemonProc) milterConn() *gomilter.ClientSession {
	d.t.Helper()
	s := dial(d.t, "tcp", d.milter)
	d.t.Cleanup(func() { s.Close() })
	if err := testmilter.Connect(s, nil, "mx.sender.test", "192.0.2.1", "mx.sender.test"); err != nil {
		d.t.Fatal(err)
	}
	return s
}

// beginMessage sends a message up to its body; endMessage finishes it and
// returns the Authentication-Results we got ("" for none).
func beginMessage(t *testing.T, s *gomilter.ClientSession) {
	t.Helper()
	m := senderMessage("", "sender.test", "rcpt.test")
	m.NoEnd = true
	if _, err := testmilter.Send(s, m); err != nil {
		t.Fatal(err)
	}
}

func endMessage(t *testing.T, s *gomilter.ClientSession) string {
	t.Helper()
	mods, _, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	return testmilter.Result{Mods: mods}.AR()
}

const reloadConfig = `authserv_id = "mx.rcpt.test"
[milter]
listen = ["inet:%[1]d@127.0.0.1"]
[dns]
servers = ["%[3]s"]
timeout = "2s"
attempts = 1
[store]
dir = "%[4]s"
[metrics]
listen = "127.0.0.1:%[2]d"
`

// SIGHUP with a changed ignore list and log level: the message in flight
// (begun before) is checked with the configuration it began with; the
// next message on the same connection, and on a new one, sees the new
// list; the connection is never dropped; debug lines appear.
func TestServeReload(t *testing.T) {
	bin := buildBinary(t)
	dns := dnstest.New(t, reloadZone)
	base := reloadConfig + "[log]\nlevel = \"info\"\n[policy]\nignore_hosts = [\"127.0.0.0/8\"]\n"
	d := startDaemon(t, bin, dns, base)

	if code, body := d.get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := d.get("/readyz"); code != 200 || body != "milter: ok\nstore: ok\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}

	s := d.milterConn()
	beginMessage(t, s) // MAIL FROM was under the first configuration

	cfg, _ := os.ReadFile(d.cfgPath)
	d.write(strings.Replace(strings.Replace(string(cfg), `["127.0.0.0/8"]`, `["127.0.0.0/8", "192.0.2.0/24"]`, 1),
		`level = "info"`, `level = "debug"`, 1))
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", 1)
	all := d.logs.String()
	reloadLine := all[strings.LastIndex(all[:strings.Index(all, "configuration reloaded")], "\n")+1:]
	reloadLine = reloadLine[:strings.IndexByte(reloadLine, '\n')]
	beforeReload := all[:strings.Index(all, reloadLine)]

	ar := endMessage(t, s)
	if !strings.Contains(ar, "spf=pass") || !strings.Contains(ar, "dmarc=pass") {
		t.Errorf("message in flight: A-R %q, want it checked under the old configuration", ar)
	}
	// The next message on the same connection: the client is ignored now.
	beginMessage(t, s)
	if ar := endMessage(t, s); ar != "" {
		t.Errorf("next message on the same connection: A-R %q, want none (ignored)", ar)
	}
	s2 := d.milterConn()
	beginMessage(t, s2)
	if ar := endMessage(t, s2); ar != "" {
		t.Errorf("new connection: A-R %q, want none (ignored)", ar)
	}

	if strings.Contains(beforeReload, "level=DEBUG") {
		t.Errorf("debug lines at level info")
	}
	d.waitLog("level=DEBUG msg=\"not checked\"", 2)
	if !strings.Contains(reloadLine, `changed=log.level,policy.ignore_hosts`) {
		t.Errorf("reload line does not name the changes")
	}
	if got := d.metric(`authmilter_config_reloads_total{result="ok"}`); got != 1 {
		t.Errorf("reloads ok = %v", got)
	}
	if got := d.metric(`authmilter_messages_total{action="accept",disposition="pass"}`); got != 1 {
		t.Errorf("checked messages = %v, want 1", got)
	}
	if got := d.metric(`authmilter_messages_not_checked_total{reason="ignored_host"}`); got != 2 {
		t.Errorf("not checked = %v, want 2", got)
	}
	if got := d.metric(`authmilter_store_records_committed_total`); got != 1 {
		t.Errorf("records committed = %v, want 1", got)
	}
	d.stop()
	if strings.Contains(d.logs.String(), "level=ERROR") || strings.Contains(d.logs.String(), "level=WARN") {
		t.Errorf("errors or warnings in the log")
	}
}

// SIGHUP with a broken file keeps the running configuration and logs every
// error; a later good file with restart-only changes is applied except
// for those, which a warning names.
func TestServeReloadRefused(t *testing.T) {
	bin := buildBinary(t)
	dns := dnstest.New(t, reloadZone)
	d := startDaemon(t, bin, dns, reloadConfig)
	good, _ := os.ReadFile(d.cfgPath)

	// Broken: an unknown option and a bad value, and the client ignored
	// (which must not take effect).
	d.write(string(good) + "[policy]\nignore_hosts = [\"192.0.2.0/24\"]\nbogus = 1\n[dmarc]\nmode = \"rfc1\"\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("reload refused", 1)
	log := d.logs.String()
	for _, w := range []string{"level=ERROR", "policy.bogus: unknown option", "running configuration is kept",
		"; line "} { // both problems, in one clean line (issue 19)
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q", w)
		}
	}
	if strings.Contains(log, ":; ") {
		t.Errorf("the reload error keeps check-config's heading: %s", log)
	}
	s := d.milterConn()
	beginMessage(t, s)
	if ar := endMessage(t, s); !strings.Contains(ar, "dmarc=pass") {
		t.Errorf("after a refused reload: A-R %q, want the message checked", ar)
	}
	if got := d.metric(`authmilter_config_reloads_total{result="failed"}`); got != 1 {
		t.Errorf("failed reloads = %v", got)
	}

	// A file that does not parse at all.
	d.write("authserv_id = \"unterminated\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("reload refused", 2)

	// Good again, with settings that need a restart: a second socket, the
	// store directory, the metrics listener.
	extra := freePort(t)
	changed := strings.Replace(string(good), `listen = ["inet:`, fmt.Sprintf(`listen = ["inet:%d@127.0.0.1", "inet:`, extra), 1)
	changed = strings.Replace(changed, `dir = "`, `dir = "/nonexistent`, 1)
	changed = strings.Replace(changed, `listen = "127.0.0.1:`, `listen = "127.0.0.2:`, 1)
	changed += "[spf]\nreceived_spf_header = true\n"
	d.write(changed)
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", 1)
	log = d.logs.String()
	if !strings.Contains(log, `level=WARN msg="changed settings need a restart`) ||
		!strings.Contains(log, "settings=milter.listen,store.dir,metrics.listen") {
		t.Errorf("no warning naming the restart-only settings")
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", extra)); err == nil {
		c.Close()
		t.Errorf("a socket added by a reload was opened")
	}
	// The reloadable change took effect; the metrics listener did not move.
	beginMessage(t, s)
	mods, _, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	s.Abort()
	found := false
	for _, m := range mods {
		found = found || m.HeaderName == "Received-SPF"
	}
	if !found {
		t.Errorf("received_spf_header not applied by the reload")
	}
	if got := d.metric(`authmilter_config_reloads_total{result="ok"}`); got != 1 {
		t.Errorf("ok reloads = %v", got)
	}
	// A second reload of the same file: the file still differs from what
	// runs, so the warning comes again; nothing else changed.
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", 2)
	if n := strings.Count(d.logs.String(), "settings=milter.listen,store.dir,metrics.listen"); n != 2 {
		t.Errorf("restart warning %d times, want 2", n)
	}
	if !strings.Contains(d.logs.String(), `changed="" log_level=info`) {
		t.Errorf("second reload reports changes")
	}
	d.stop()
}

// Passwords and DSNs never reach the log: start (PostgreSQL down, so the
// store and the report scheduler log their connection errors), a message,
// a reload that changes both secrets, a refused reload, shutdown. Debug
// level, so that everything that can be logged is.
func TestServeLogsNoSecrets(t *testing.T) {
	bin := buildBinary(t)
	dns := dnstest.New(t, reloadZone)
	pgPort := freePort(t) // nothing listens there
	secrets := []string{"dsn-Secret-1", "smtp-Secret-1", "dsn-Secret-2", "smtp-Secret-2"}
	cfg := fmt.Sprintf(`authserv_id = "mx.rcpt.test"
[milter]
listen = ["inet:%%[1]d@127.0.0.1"]
[dns]
servers = ["%%[3]s"]
[log]
level = "debug"
[metrics]
listen = "127.0.0.1:%%[2]d"
[store]
dir = "%%[4]s"
backend = "postgres"
postgres_dsn = "postgres://am:%[1]s@127.0.0.1:%[3]d/authmilter?sslmode=disable"
write_timeout = "200ms"
[report]
enabled = true
from = "dmarc@rcpt.test"
[report.smtp]
host = "127.0.0.1"
port = %[3]d
username = "reporter"
password = "%[2]s"
`, secrets[0], secrets[1], pgPort)
	d := startDaemon(t, bin, dns, cfg)
	if code, body := d.get("/readyz"); code != 200 || body != "milter: ok\nstore: spooling (database down)\n" {
		t.Errorf("/readyz with the database down: %d %q", code, body)
	}
	s := d.milterConn()
	beginMessage(t, s)
	if ar := endMessage(t, s); ar == "" {
		t.Errorf("no A-R")
	}
	if got := d.metric(`authmilter_store_records_spooled_total`); got != 1 {
		t.Errorf("records spooled = %v, want 1", got)
	}
	if got := d.metric(`authmilter_store_down`); got != 1 {
		t.Errorf("store_down = %v", got)
	}

	running, _ := os.ReadFile(d.cfgPath)
	d.write(strings.NewReplacer(secrets[0], secrets[2], secrets[1], secrets[3]).Replace(string(running)))
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", 1)
	if !strings.Contains(d.logs.String(), "settings=store.postgres_dsn,report.smtp.password") {
		t.Errorf("restart warning does not name the changed secrets")
	}
	// Broken twice over: a secret on a line with a syntax error.
	d.write(string(running) + "[metrics]\nbogus = \"" + secrets[2] + "\"\n" + "password = \"" + secrets[3] + "\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("reload refused", 1)
	d.stop()

	log := d.logs.String()
	if !strings.Contains(log, "level=DEBUG") || !strings.Contains(log, "PostgreSQL unavailable") {
		t.Errorf("the test did not exercise what it should: no debug lines or no store error")
	}
	for _, sec := range append(secrets, "postgres://") {
		if strings.Contains(log, sec) {
			t.Errorf("the log holds %q", sec)
		}
	}
}
