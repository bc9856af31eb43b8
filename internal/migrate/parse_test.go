package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SigningTable keys, as OpenDKIM reads them (opendkim.conf(5),
// SigningTable): a refile matches wildcards against the whole From
// address, other tables look up the address, then the domain and its
// parents with a leading dot.
func TestSigningPattern(t *testing.T) {
	for _, tc := range []struct {
		key   string
		regex bool
		want  string // "" when refused
	}{
		{"*@hogehoge.com", true, "hogehoge.com"},
		{"*@*.example.com", true, "*.example.com"},
		{"*@Example.COM", true, "example.com"},
		{"*", true, "*"},
		{"*@*", true, "*"},
		{"alice@example.com", true, ""}, // per sender
		{"example.com", true, ""},       // a refile key is an address pattern
		{"example.com", false, "example.com"},
		{".example.com", false, ".example.com"},
		{"@example.com", false, "example.com"},
		{"bob@example.com", false, ""},
	} {
		got, err := signingPattern(tc.key, tc.regex)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q (refile %v): %q, want refused", tc.key, tc.regex, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q (refile %v): %q, %v; want %q", tc.key, tc.regex, got, err, tc.want)
		}
	}
}

// Host-list entries of PeerList/InternalHosts/IgnoreHosts in our form.
func TestHostEntry(t *testing.T) {
	for _, tc := range []struct {
		in      string
		regex   bool
		want    string // "" when refused
		changed bool
	}{
		{"127.0.0.1", false, "127.0.0.1", false},
		{"::1", false, "::1", false},
		{"[2001:db8::1]", false, "2001:db8::1", false},
		{"192.168.0.0/24", false, "192.168.0.0/24", false},
		{"localhost", false, "localhost", false},
		{".example.com", false, ".example.com", false},
		{"*.example.com", true, ".example.com", true},
		{"*.example.com", false, "", false}, // a wildcard outside a refile is a literal name
		{"mail*.example.com", true, "", false},
		{"!10.0.0.1", false, "", false},
		{"10.0.0.0/33", false, "", false},
	} {
		got, changed, err := hostEntry(tc.in, tc.regex)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: %q, want refused", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want || (changed != "") != tc.changed {
			t.Errorf("%q: %q %q %v, want %q changed=%v", tc.in, got, changed, err, tc.want, tc.changed)
		}
	}
}

// Plain (not refile) tables, a comma-separated InternalHosts, relative
// paths under BaseDirectory, several keys for one pattern with
// MultipleSignatures, a key written into the table and an LDAP data set.
func TestPlainTables(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := os.ReadFile("testdata/arch-single/root/etc/opendkim/myselector.private")
	write("etc/opendkim/keys/rsa.private", string(key))
	write("etc/opendkim/keys/ed.private", string(key))
	write("etc/opendkim/key.table", "rsa example.org:r2026:./keys/rsa.private\ned example.org:e2026:./keys/ed.private\nbare example.org:b:keys/rsa.private\ninline example.net:x:MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n")
	write("etc/opendkim/signing.table", "example.org rsa\nexample.org ed\n.example.org rsa\nbob@example.org rsa\n")
	write("etc/opendkim.conf", "BaseDirectory /etc/opendkim\nMode sv\nMultipleSignatures yes\nKeyTable file:key.table\n"+
		"SigningTable /etc/opendkim/signing.table\nInternalHosts 10.0.0.0/8, 192.0.2.1\nPeerList ldap://ldap.example.org/dc=x\n")
	res, err := Run(Inputs{OpenDKIM: filepath.Join(root, "etc/opendkim.conf"), Root: root, User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`internal_hosts = ["10.0.0.0/8", "192.0.2.1"]`,
		"pattern = \"example.org\"\nkeys = [\"rsa\", \"ed\"]",
		"pattern = \".example.org\"\nkeys = [\"rsa\"]",
		`file = "/etc/opendkim/keys/rsa.private"`,
	} {
		if !strings.Contains(res.TOML, want) {
			t.Errorf("TOML lacks %q:\n%s", want, res.TOML)
		}
	}
	for _, want := range []string{
		"key inline: the key is written into the table itself",
		"key bare: the key is written into the table itself", // no "./": OpenDKIM reads it as key data
		`"bob@example.org": per-sender entries are not migrated`,
		"data sets of type ldap: are not read",
	} {
		if !strings.Contains(res.Report, want) {
			t.Errorf("report lacks %q:\n%s", want, res.Report)
		}
	}
}

// Debian's postfix-policyd-spf-perl (2.011) reads exemption files: the
// addresses become ignore_hosts candidates, the domains are reported.
func TestPerlExemptions(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/postfix"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/postfix/exempt_spf_addresses"), []byte("192.0.2.0/24\n# a comment\n2001:db8::/32\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/postfix/exempt_spf_domains"), []byte("partner.example\n"), 0o644)
	res, err := Run(Inputs{PolicydSPFPerl: true, Root: root, User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.TOML, `ignore_hosts = ["127.0.0.0/8", "::ffff:127.0.0.0/104", "::1", "192.0.2.0/24", "2001:db8::/32"]`) {
		t.Errorf("TOML:\n%s", res.TOML)
	}
	for _, want := range []string{"HELO fail: 550", "1 envelope-sender domains exempt from SPF"} {
		if !strings.Contains(res.Report, want) {
			t.Errorf("report lacks %q:\n%s", want, res.Report)
		}
	}
}
