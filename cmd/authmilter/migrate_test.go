package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
)

// TestMigrateCommand: `authmilter migrate -out` writes a file check-config
// accepts and the report to stdout; it never overwrites a file, and says
// so when given nothing to migrate.
func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "opendmarc.conf")
	hosts := filepath.Join(dir, "ignore.hosts")
	os.WriteFile(hosts, []byte("127.0.0.1\n10.0.0.0/8\n"), 0o644)
	os.WriteFile(conf, []byte("Socket inet:8893@localhost\nIgnoreHosts "+hosts+"\nRejectFailures true\nNoSuchOption 1\n"), 0o644)
	out := filepath.Join(dir, "authmilter.toml")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"migrate", "-opendmarc", conf, "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"Mapped:", "IgnoreHosts", "NoSuchOption: not an option of OpenDMARC", "smtpd_milters = inet:localhost:8893"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("check-config of the written file: %v", err)
	}
	if cfg.DMARC.Monitor || cfg.DMARC.TempError != "tempfail" || len(cfg.Policy.IgnoreHosts) != 2 {
		t.Errorf("dmarc %+v policy %+v", cfg.DMARC, cfg.Policy)
	}
	stderr.Reset()
	if code := run([]string{"migrate", "-opendmarc", conf, "-out", out}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "exists") {
		t.Errorf("second run over the file: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"migrate"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "nothing to migrate") {
		t.Errorf("no input: exit %d, %q", code, stderr.String())
	}
}

// TestServeRefusesWhatCannotWork (issue 19): the daemon refuses the file
// check-config refuses, before it listens, with the option and line.
func TestServeRefusesWhatCannotWork(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[milter]\nlisten = [\"inet:127.0.0.1:1\"]\n[dns]\nservers = [\"127.0.0.1:99999\"]\n"), 0o644)
	for _, args := range [][]string{{"check-config", bad}, {"serve", "-config", bad}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "line 4: dns.servers") {
			t.Errorf("%s: exit %d, %q", args[0], code, stderr.String())
		}
	}
}
