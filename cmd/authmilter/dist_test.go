package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The Docker image builds with the script CI runs (integration's
// TestContainer builds and runs the image itself), ships a configuration
// that is valid and reachable from another container, and its HEALTHCHECK
// runs a command that exists.
func TestDockerfile(t *testing.T) {
	df := readRepoFile(t, "Dockerfile")
	ci := readRepoFile(t, "scripts/test-all")
	files := readRepoFile(t, "scripts/image-files")
	if !regexp.MustCompile(`(?m)^RUN .*\./scripts/image-files /out$`).MatchString(df) ||
		!regexp.MustCompile(`(?m)^\./scripts/build "\$root/usr/local/bin/authmilter"$`).MatchString(files) ||
		!strings.Contains(ci, "./scripts/build ") {
		t.Error("the Dockerfile (through scripts/image-files) and scripts/test-all must both build with scripts/build")
	}
	for _, w := range []string{"USER 65532", `VOLUME ["/var/lib/authmilter"]`, "STATE_DIRECTORY=/var/lib/authmilter",
		"COPY dist/docker/authmilter.toml /etc/authmilter/authmilter.toml"} {
		if !strings.Contains(df, w) {
			t.Errorf("Dockerfile lacks %q", w)
		}
	}
	m := regexp.MustCompile(`(?m)CMD (\[.*"healthcheck".*\])\s*$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("no HEALTHCHECK CMD")
	}
	var argv []string
	if err := json.Unmarshal([]byte(m[1]), &argv); err != nil {
		t.Fatal(err)
	}
	// Same subcommand and flags, pointed at a socket nobody listens on.
	args := append(argv[1:], "-addr", "unix:"+filepath.Join(t.TempDir(), "none"))
	for i, a := range args {
		if a == "-config" {
			args[i+1] = filepath.Join("..", "..", "dist", "docker", "authmilter.toml")
		}
	}
	if code := run(args, io.Discard, io.Discard); code != 1 {
		t.Errorf("%v: exit %d, want 1 (no milter there)", args, code)
	}

	cfg, err := config.Load(filepath.Join("..", "..", "dist", "docker", "authmilter.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Milter.Listen) != 1 || cfg.Milter.Listen[0] != "inet:0.0.0.0:8893" {
		t.Errorf("image config listens on %v", cfg.Milter.Listen)
	}
}

// The compose example README shows is the file that was run, its
// authmilter configuration is valid and listens where Postfix's main.cf
// points.
func TestComposeExample(t *testing.T) {
	compose := readRepoFile(t, "dist/docker/compose/compose.yaml")
	body := compose[strings.Index(compose, "services:"):]
	if !strings.Contains(readRepoFile(t, "README.md"), "```yaml\n"+body+"```\n") {
		t.Error("README's compose example is not dist/docker/compose/compose.yaml (from services:)")
	}
	cfg, err := config.Load(filepath.Join("..", "..", "dist", "docker", "compose", "authmilter", "authmilter.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Milter.Listen) != 1 || cfg.Milter.Listen[0] != "inet:0.0.0.0:8893" {
		t.Errorf("compose example's authmilter listens on %v", cfg.Milter.Listen)
	}
	if mainCF := readRepoFile(t, "dist/docker/compose/postfix/main.cf"); !strings.Contains(mainCF, "\nsmtpd_milters = inet:authmilter:8893\n") {
		t.Error("compose example's main.cf does not point smtpd_milters at inet:authmilter:8893")
	}
}

func TestFreeBSDRcScript(t *testing.T) {
	path := filepath.Join("..", "..", "dist", "freebsd", "authmilter")
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	rc := readRepoFile(t, "dist/freebsd/authmilter")
	for _, w := range []string{". /etc/rc.subr", `rcvar="authmilter_enable"`, "authmilter_config:=", "authmilter_user:=",
		`command="/usr/sbin/daemon"`, "-p ${pidfile} -P ${supervisor_pidfile}", `sig_reload="HUP"`,
		`extra_commands="reload configtest"`, "check-config", "run_rc_command"} {
		if !strings.Contains(rc, w) {
			t.Errorf("rc.d script lacks %q", w)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("rc.d script not executable: %v", err)
	}
}

func TestSystemdUnit(t *testing.T) {
	u := readRepoFile(t, "dist/systemd/authmilter.service")
	for _, w := range []string{"ExecStart=/usr/local/bin/authmilter serve -config", "ExecReload=/bin/kill -HUP $MAINPID",
		"User=authmilter", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
		"StateDirectory=authmilter", "RuntimeDirectory=authmilter", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"} {
		if !strings.Contains(u, w) {
			t.Errorf("unit lacks %q", w)
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants the binaries to exist: point the unit at this
		// test's own executable.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(t.TempDir(), "authmilter.service")
		os.WriteFile(unit, []byte(strings.ReplaceAll(u, "/usr/local/bin/authmilter", self)), 0o644)
		if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}
