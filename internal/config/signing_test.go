package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/dkimsign"
)

func TestParseCanonicalization(t *testing.T) {
	tests := []struct {
		in, h, b string
		ok       bool
	}{
		{"relaxed/relaxed", "relaxed", "relaxed", true},
		{"simple/simple", "simple", "simple", true},
		{"Relaxed/Simple", "relaxed", "simple", true},
		{"simple/relaxed", "simple", "relaxed", true},
		{"relaxed", "relaxed", "simple", true}, // RFC 6376 §3.5 c=
		{"simple", "simple", "simple", true},
		{"", "", "", false},
		{"relaxed/", "", "", false},
		{"nofws/relaxed", "", "", false},
		{"relaxed/relaxed/relaxed", "", "", false},
	}
	for _, tc := range tests {
		h, b, err := ParseCanonicalization(tc.in)
		if (err == nil) != tc.ok || h != tc.h || b != tc.b {
			t.Errorf("ParseCanonicalization(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.in, h, b, err, tc.h, tc.b, tc.ok)
		}
	}
}

// writeKey writes an Ed25519 private key with mode and returns its path.
func writeKey(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data, err := dkimsign.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return p
}

func TestValidateSigning(t *testing.T) {
	dir := t.TempDir()
	good := writeKey(t, dir, "good.key", 0o600)
	readable := writeKey(t, dir, "readable.key", 0o644)
	groupKey := writeKey(t, dir, "group.key", 0o640)
	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func() Signing {
		s := defaultSigning()
		s.Enabled = true
		s.Keys = []SigningKey{{Name: "ed", Domain: "example.com", Selector: "s2026", File: good},
			{Name: "from", Domain: "%", Selector: "s2026", File: good}}
		s.Rules = []SigningRule{{Pattern: ".example.com", Keys: []string{"ed"}}, {Pattern: "*", Keys: []string{"from"}}}
		return s
	}
	milterListen := []string{"inet:127.0.0.1:8893"}
	tests := []struct {
		name string
		edit func(*Signing)
		key  string // "" for no error
		msg  string
	}{
		{"defaults (off)", func(s *Signing) { *s = defaultSigning() }, "", ""},
		{"valid", func(*Signing) {}, "", ""},
		{"off with keys not read", func(s *Signing) { s.Enabled = false; s.Keys[0].File = "/nonexistent/key" }, "", ""},
		{"listen while off", func(s *Signing) { s.Enabled = false; s.Listen = []string{"inet:127.0.0.1:8894"} }, "signing.listen", "need enabled = true"},
		{"listen", func(s *Signing) { s.Listen = []string{"inet:127.0.0.1:8894", "unix:/run/authmilter/sign.sock"} }, "", ""},
		{"listen bad", func(s *Signing) { s.Listen = []string{"tcp"} }, "signing.listen", "socket"},
		{"listen also verifies", func(s *Signing) { s.Listen = []string{"inet:8893@127.0.0.1"} }, "signing.listen", "either signs or verifies"},
		{"listen twice", func(s *Signing) { s.Listen = []string{"/run/s.sock", "unix:/run/s.sock"} }, "signing.listen", "listed twice"},
		{"internal host bad", func(s *Signing) { s.InternalHosts = []string{"10.0.0.0/33"} }, "signing.internal_hosts", "not an IP address"},
		{"canonicalization bad", func(s *Signing) { s.Canonicalization = "nofws" }, "signing.canonicalization", "not relaxed/relaxed"},
		{"expire negative", func(s *Signing) { s.Expire = Duration{-time.Hour} }, "signing.expire", "negative"},
		{"expire short", func(s *Signing) { s.Expire = Duration{10 * time.Minute} }, "signing.expire", "at least 1h"},
		{"expire", func(s *Signing) { s.Expire = Duration{7 * 24 * time.Hour} }, "", ""},
		{"headers without From", func(s *Signing) { s.Headers = []string{"Subject", "To"} }, "signing.headers", "must include From"},
		{"oversign unsigned", func(s *Signing) { s.Oversign = []string{"X-Foo"} }, "signing.headers", `"X-Foo" is not a signed field`},
		{"no oversigning", func(s *Signing) { s.Oversign = []string{} }, "", ""},
		{"key name missing", func(s *Signing) { s.Keys[0].Name = "" }, "signing.keys[1].name", "required"},
		{"key name twice", func(s *Signing) { s.Keys[1].Name = "ed" }, "signing.keys[2].name", `"ed" is used twice`},
		{"key domain bad", func(s *Signing) { s.Keys[0].Domain = "exa mple.com" }, "signing.keys[1].domain", "not a domain name"},
		{"key domain empty", func(s *Signing) { s.Keys[0].Domain = "" }, "signing.keys[1].domain", "not a domain name"},
		{"selector bad", func(s *Signing) { s.Keys[0].Selector = "-s" }, "signing.keys[1].selector", "RFC 6376 §3.1"},
		{"file missing", func(s *Signing) { s.Keys[0].File = "" }, "signing.keys[1].file", "required"},
		{"file relative", func(s *Signing) { s.Keys[0].File = "keys/ed.key" }, "signing.keys[1].file", "absolute path"},
		{"file absent", func(s *Signing) { s.Keys[0].File = filepath.Join(dir, "absent.key") }, "signing.keys[1].file", "absent.key"},
		{"file world readable", func(s *Signing) { s.Keys[0].File = readable }, "signing.keys[1].file", readable + " has mode 0644"},
		{"file group readable", func(s *Signing) { s.Keys[0].File = groupKey }, "signing.keys[1].file", groupKey + " has mode 0640"},
		{"file not a key", func(s *Signing) { s.Keys[0].File = garbage }, "signing.keys[1].file", "garbage.key"},
		{"rule without pattern", func(s *Signing) { s.Rules[0].Pattern = " " }, "signing.rules[1].pattern", "required"},
		{"rule without keys", func(s *Signing) { s.Rules[0].Keys = nil }, "signing.rules[1].keys", "names no key"},
		{"rule unknown key", func(s *Signing) { s.Rules[1].Keys = []string{"from", "rsa"} }, "signing.rules[2].keys", `no key named "rsa"`},
		{"no rules", func(s *Signing) { s.Rules = nil }, "signing.rules", "no rule"},
		{"bad pattern", func(s *Signing) { s.Rules[0].Pattern = "exa mple.com" }, "signing.rules", "pattern"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.edit(&s)
			es := validateSigning(s, milterListen)
			if tc.key == "" {
				if len(es) > 0 {
					t.Fatalf("unexpected errors: %v", es)
				}
				return
			}
			for _, e := range es {
				if e.Key == tc.key && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no error %s: …%s…; got %v", tc.key, tc.msg, es)
		})
	}
}

func TestSignOptions(t *testing.T) {
	s := defaultSigning()
	o := s.SignOptions()
	if o.HeaderCanonicalization != "relaxed" || o.BodyCanonicalization != "relaxed" || o.Headers != nil ||
		len(o.Oversign) != 1 || o.Oversign[0] != "From" || o.Expire != 0 {
		t.Errorf("defaults: %+v", o)
	}
	s.Canonicalization, s.Headers, s.Oversign, s.Expire = "simple", []string{"From", "Subject"}, []string{}, Duration{48 * time.Hour}
	o = s.SignOptions()
	if o.HeaderCanonicalization != "simple" || o.BodyCanonicalization != "simple" || len(o.Headers) != 2 ||
		len(o.Oversign) != 1 || o.Oversign[0] != "" || o.Expire != 48*time.Hour {
		t.Errorf("custom: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseSigning(t *testing.T) {
	key := writeKey(t, t.TempDir(), "ed.key", 0o600)
	tables := `
[signing]
enabled = true
listen = ["unix:/run/authmilter/sign.sock"]
canonicalization = "simple/relaxed"
expire = "168h"

[[signing.keys]]
name = "ed"
domain = "example.com"
selector = "s1"
file = "` + key + `"

[[signing.rules]]
pattern = ".example.com"
keys = ["ed"]
`
	c, err := Parse([]byte(tables))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Signing
	if !s.Enabled || len(s.Listen) != 1 || s.Canonicalization != "simple/relaxed" || s.Expire.Duration != 168*time.Hour ||
		len(s.Keys) != 1 || s.Keys[0] != (SigningKey{Name: "ed", Domain: "example.com", Selector: "s1", File: key}) ||
		len(s.Rules) != 1 || s.Rules[0].Pattern != ".example.com" || len(s.Rules[0].Keys) != 1 ||
		!s.SignAuthenticated || len(s.InternalHosts) != 2 {
		t.Errorf("parsed %+v", s)
	}
	if _, err := s.Table(); err != nil {
		t.Error(err)
	}

	inline := `[signing]
enabled = true
keys = [{ name = "ed", domain = "%", selector = "s1", file = "` + key + `" }]
rules = [{ pattern = "*", keys = ["ed"] }]
`
	if c, err := Parse([]byte(inline)); err != nil {
		t.Errorf("inline tables: %v", err)
	} else if c.Signing.Keys[0].Domain != "%" {
		t.Errorf("inline tables: %+v", c.Signing.Keys)
	}

	// A typo inside an array of tables is an unknown option, not ignored.
	_, err = Parse([]byte(strings.Replace(tables, "file =", "fiel =", 1)))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("typo: got %v", err)
	}
	found := false
	for _, e := range es {
		found = found || (e.Key == "signing.keys.fiel" && e.Msg == "unknown option" && e.Line > 0)
	}
	if !found {
		t.Errorf("typo: no unknown option signing.keys.fiel with a line in %v", es)
	}

	// An unsafe key file refuses the whole configuration, naming the file.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte(tables))
	if err == nil || !strings.Contains(err.Error(), "signing.keys[1].file") || !strings.Contains(err.Error(), key) {
		t.Errorf("world-readable key: got %v", err)
	}
}
