package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runMilter starts authmilter with cfg for the life of t. At cleanup it must
// still be running and must exit 0 on SIGTERM; if t failed, its log is shown.
func runMilter(t *testing.T, name string, cfg milterConfig) *milterProc {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	m, err := startMilter(milterBin, dir, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m.running() {
			if err := m.stop(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("authmilter %s log (tail):\n%s", name, tail(m.log.String(), 6000))
		}
	})
	return m
}

// tail returns at most the last n bytes of s, from a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// deliver sends msg (which carries X-Test-Id: id) and returns the delivered copy.
func deliver(t *testing.T, addr string, cl client, from string, msg []byte, id string) *delivered {
	t.Helper()
	if _, err := sendOne(addr, cl, from, []string{"rcpt@rcpt.test"}, msg); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	d, err := pf.waitDelivered(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// wantAR returns our one A-R field, which must be the top field.
func wantAR(t *testing.T, d *delivered) authResults {
	t.Helper()
	ar, err := d.ourAR()
	if err != nil {
		t.Fatalf("%v\nheader:\n%s", err, d.headerText())
	}
	return ar
}

// wantResult checks that ar has exactly one method result carrying prop
// (e.g. "smtp.mailfrom"), with value propVal (case-insensitive; "" = any)
// and result want.
func wantResult(t *testing.T, ar authResults, method, prop, propVal, want string) arResult {
	t.Helper()
	rs := ar.find(method, prop)
	if len(rs) != 1 {
		t.Fatalf("%d %s results with %s, want 1 in:\n%s", len(rs), method, prop, ar.Raw)
	}
	r := rs[0]
	if r.Result != want {
		t.Errorf("%s=%s, want %s=%s in:\n%s", method, r.Result, method, want, ar.Raw)
	}
	if propVal != "" && !strings.EqualFold(r.Props[prop], propVal) {
		t.Errorf("%s %s=%q, want %q in:\n%s", method, prop, r.Props[prop], propVal, ar.Raw)
	}
	return r
}

// wantSMTPError checks err is an SMTP reply with code whose text starts
// with prefix.
func wantSMTPError(t *testing.T, err error, code int, prefix string) *smtpError {
	t.Helper()
	var se *smtpError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want SMTP %d %s", err, code, prefix)
	}
	if se.Code != code || !strings.HasPrefix(se.Msg, prefix) {
		t.Fatalf("got %s, want %d %s", se, code, prefix)
	}
	return se
}

// fixture reads a committed test message.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// reportTomorrow stops the milter m (so that its store is closed), runs
// `authmilter report` on its configuration as if it were tomorrow (the
// period is closed) and returns the directory of the report files and the
// command's standard output.
func reportTomorrow(t *testing.T, m *milterProc, dir string, cfg milterConfig) (out, stdout string) {
	t.Helper()
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "reports")
	os.Mkdir(out, 0o755)
	cfgPath := filepath.Join(dir, "report.toml")
	if err := writeFile(cfgPath, cfg.toml()); err != nil {
		t.Fatal(err)
	}
	tomorrow := time.Now().UTC().Add(26 * time.Hour).Format(time.RFC3339)
	cmd := exec.Command(milterBin, "report", "-config", cfgPath, "-out", out, "-now", tomorrow)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("authmilter report: %v\n%s%s", err, so.String(), tail(se.String(), 3000))
	}
	return out, so.String()
}
