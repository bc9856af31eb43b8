package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzConfigParse: no input panics; an error is always an Errors list in
// which every entry names its key or its line, so that a postmaster can
// find it; a configuration that parses passes Validate. Seeds:
// testdata/fuzz/FuzzConfigParse and config.example.toml.
func FuzzConfigParse(f *testing.F) {
	if ex, err := os.ReadFile("../../config.example.toml"); err == nil {
		f.Add(ex)
	}
	for _, s := range []string{
		"[dns]\ntimeout = \"1s\"\n",
		"[milter]\nlisten = [\"unix:/run/x.sock\", \"inet:[::1]:8893\"]\nmax_headers = 5\n",
		"authserv_id = \"mx.example\"\n[dmarc]\nmode = \"rfc7489\"\nmulti_from = \"nope\"\n",
		"[[dns]]\n", "a.b.c = 1\n", "[dns\n", "x = \"\\u0000\"\n", "[policy]\nignore_hosts = [\"999.1.1.1/33\", \"\"]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error of type %T, want Errors: %v", err, err)
			}
			if len(es) == 0 {
				t.Fatal("empty Errors")
			}
			for _, e := range es {
				if e.Key == "" && e.Line == 0 {
					t.Fatalf("error with neither key nor line: %q (input %q)", e.Error(), data)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil config and nil error")
		}
		if es := c.Validate(); len(es) > 0 {
			t.Fatalf("Parse accepted what Validate refuses: %v", es)
		}
	})
}
