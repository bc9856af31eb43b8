package migrate

import (
	"flag"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) {
	// The seeds name the group postfix; whether this machine has it must
	// not change the golden files (TestSocketGroupMissing checks the other case).
	groupExists = func(string) bool { return true }
	os.Exit(m.Run())
}

// TestSocketGroupMissing: a socket_group the machine lacks is a problem
// of the written file.
func TestSocketGroupMissing(t *testing.T) {
	defer func(f func(string) bool) { groupExists = f }(groupExists)
	groupExists = func(string) bool { return false }
	p := check("[milter]\nsocket_group = \"postfix\"\n")
	if len(p) != 1 || !strings.Contains(p[0], `there is no group "postfix"`) {
		t.Errorf("problems %v", p)
	}
}

// seed is one installation of issue 19's seeds, under
// testdata/NAME/root (its files where the old server had them).
type seed struct {
	name string
	in   Inputs // paths relative to root
	// keyMode is the mode the key files get in the copy (git keeps 0644).
	keyMode fs.FileMode
}

var seeds = []seed{
	{"opendkim-keytable", Inputs{OpenDKIM: "/etc/opendkim.conf", MainCF: "/etc/postfix/main.cf"}, 0o640},
	{"arch-single", Inputs{OpenDKIM: "/etc/opendkim.conf"}, 0o600},
	{"opendmarc-ignore", Inputs{OpenDMARC: "/usr/local/etc/mail/opendmarc.conf"}, 0o600},
	{"policyd-spf-perl", Inputs{MasterCF: "/etc/postfix/master.cf", MainCF: "/etc/postfix/main.cf"}, 0o600},
	{"debian-trio", Inputs{OpenDKIM: "/etc/opendkim.conf", OpenDMARC: "/etc/opendmarc.conf",
		PolicydSPF: "/etc/postfix-policyd-spf-python/policyd-spf.conf", MainCF: "/etc/postfix/main.cf", MasterCF: "/etc/postfix/master.cf"}, 0o600},
}

// copyRoot copies testdata/NAME/root into a temporary directory and sets
// the key files' mode, so that the checks do not depend on the umask of
// the checkout.
func copyRoot(t *testing.T, name string, keyMode fs.FileMode) string {
	t.Helper()
	src := filepath.Join("testdata", name, "root")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(p, ".private") {
			mode = keyMode
		}
		if err := os.WriteFile(out, data, mode); err != nil {
			return err
		}
		return os.Chmod(out, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// runSeed migrates a seed as `authmilter migrate -root` would, as the
// current user.
func runSeed(t *testing.T, s seed) (*Result, string) {
	t.Helper()
	root := copyRoot(t, s.name, s.keyMode)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	in := s.in
	for _, p := range []*string{&in.OpenDKIM, &in.OpenDMARC, &in.PolicydSPF, &in.MainCF, &in.MasterCF} {
		if *p != "" {
			*p = filepath.Join(root, *p)
		}
	}
	in.Root, in.User = root, u.Username
	res, err := Run(in)
	if err != nil {
		t.Fatal(err)
	}
	// The report names the inputs by their place on the old server.
	res.Report = strings.ReplaceAll(res.Report, root, "")
	res.Report = strings.ReplaceAll(res.Report, "\""+u.Username+"\"", "\"USER\"")
	return res, root
}

// TestSeeds: migrate's output for each seed configuration of issue 19 is
// the committed golden file (go test -run TestSeeds -update rewrites
// them), and the TOML it writes passes the daemon's own checks.
func TestSeeds(t *testing.T) {
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			res, _ := runSeed(t, s)
			for _, g := range []struct{ file, got string }{
				{"authmilter.toml", res.TOML}, {"report.txt", res.Report},
			} {
				path := filepath.Join("testdata", s.name, g.file)
				if *update {
					if err := os.WriteFile(path, []byte(g.got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if string(want) != g.got {
					t.Errorf("%s differs from the golden file (-update rewrites it):\n%s", path, g.got)
				}
			}
			if p := check(res.TOML); len(p) > 0 {
				t.Errorf("the TOML does not pass the checks: %v", p)
			}
			// The daemon's own parser: only the key files (they are under
			// the copy, not at the path written) and the group of this
			// machine may differ.
			if _, err := config.Parse([]byte(res.TOML)); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.Contains(line, "signing.keys") && !strings.Contains(line, "milter.socket_group") {
						t.Errorf("config.Parse: %s", line)
					}
				}
			}
		})
	}
}

// TestSeedOutcomes states, per seed, the settings the issue asks for, so
// that a golden file rewritten with a wrong mapping still fails.
func TestSeedOutcomes(t *testing.T) {
	want := map[string][]string{
		"opendkim-keytable": {
			"[signing]\n", "enabled = true\n",
			`internal_hosts = ["127.0.0.1", "::1", "localhost", "192.0.2.25", "mail.hogehoge.com", ".hogehoge.com", "hogehoge.com"]`,
			`external_ignore = ["127.0.0.1"`,
			`pattern = "hogehoge.com"`, `keys = ["hoge._domainkey.hogehoge.com"]`,
			`file = "/etc/opendkim/keys/hogehoge.com/hoge.private"`, `listen = ["inet:localhost:8891"]`,
			"[dmarc]\n# from (all inputs): no OpenDMARC configuration was given\nenabled = false",
		},
		"arch-single": {`domain = "example.com"`, `selector = "myselector"`, `canonicalization = "relaxed/simple"`,
			`internal_hosts = ["127.0.0.1"]`, `pattern = "example.com"`},
		"opendmarc-ignore": {`listen = ["unix:/var/run/authmilter/authmilter.sock"]`, `socket_group = "postfix"`,
			`ignore_hosts = ["localhost", "::1", "2001:db8::/32", "127.0.0.0/8", "192.168.0.0/24"]`,
			`ignore_mail_from = ["example.com"]`, `ignore_from_domains = ["example.com"]`, "monitor = true", `quarantine = "header"`,
			"skip_authenticated = false"},
		"policyd-spf-perl": {`fail_action = "reject"`, "received_spf_header = true"},
		"debian-trio": {`listen = ["unix:/var/spool/postfix/authmilter/authmilter.sock"]`, `internal_hosts = ["192.0.2.0/24", "127.0.0.1"]`,
			"monitor = false", `temperror = "tempfail"`, `quarantine = "hold"`, `from = "postmaster@example.org"`, `fail_action = "reject"`},
	}
	notWant := map[string][]string{
		"opendkim-keytable": {"ignore_hosts"}, // InternalHosts signs; it must not skip
	}
	reportWant := map[string][]string{
		"opendkim-keytable": {"mode 0640 is readable by group or others", "smtpd_milters = inet:127.0.0.1:8891", "SendReports"},
		"policyd-spf-perl": {`remove the service "policy" (master.cf lines 10-11)`,
			"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination", "remove policy_time_limit = 3600"},
		"opendmarc-ignore": {"moves from /var/run/opendmarc/dmarc.sock to /var/run/authmilter/authmilter.sock", "RuntimeDirectory"},
		"debian-trio": {"smtpd_milters = unix:/authmilter/authmilter.sock, inet:127.0.0.1:11332", "10.9.0.0/16 was not checked by one tool",
			`remove the service "policyd-spf"`, "passes authmilter check-config"},
	}
	for _, s := range seeds {
		res, _ := runSeed(t, s)
		for _, w := range want[s.name] {
			if !strings.Contains(res.TOML, w) {
				t.Errorf("%s: TOML lacks %q", s.name, w)
			}
		}
		for _, w := range notWant[s.name] {
			if strings.Contains(res.TOML, w) {
				t.Errorf("%s: TOML has %q", s.name, w)
			}
		}
		for _, w := range reportWant[s.name] {
			if !strings.Contains(res.Report, w) {
				t.Errorf("%s: report lacks %q\n%s", s.name, w, res.Report)
			}
		}
	}
}

// TestKeyFileChecks: a key file is checked against the user authmilter
// will run as: mode, owner, format, existence.
func TestKeyFileChecks(t *testing.T) {
	if _, err := user.Lookup("nobody"); err != nil {
		t.Fatalf("no user nobody to check against: %v", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if me.Username == "nobody" {
		t.Fatal("run as a user other than nobody")
	}
	dir := t.TempDir()
	key, err := os.ReadFile("testdata/arch-single/root/etc/opendkim/myselector.private")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	tests := []struct {
		file, user string
		want       []string
	}{
		{write("ok.key", key, 0o600), me.Username, nil},
		{write("open.key", key, 0o644), me.Username, []string{"mode 0644 is readable by group or others"}},
		{write("mine.key", key, 0o600), "nobody", []string{"owned by " + me.Username + ": authmilter runs as nobody and cannot read it (chown nobody"}},
		{write("junk.key", []byte("not a key\n"), 0o600), me.Username, []string{"dkimsign"}},
		{filepath.Join(dir, "missing.key"), me.Username, []string{"cannot be read: no such file or directory"}},
		{write("ghost.key", key, 0o600), "no-such-user-19", []string{`user "no-such-user-19" does not exist`}},
	}
	for _, tc := range tests {
		r := &run{in: Inputs{User: tc.user}}
		got := r.keyCheck(tc.file)
		if len(tc.want) == 0 && len(got) != 0 {
			t.Errorf("%s: %v, want ok", tc.file, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(strings.Join(got, "\n"), w) {
				t.Errorf("%s as %s: %v, want %q", filepath.Base(tc.file), tc.user, got, w)
			}
		}
	}
}
