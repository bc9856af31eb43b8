package migrate

import (
	"os"
	"sort"
	"strings"
	"testing"
)

// TestDocTables: the migration tables of README.md and
// docs/operations.md are the ones generated from the mapping that migrate
// applies (go test -run TestDocTables -update rewrites them).
func TestDocTables(t *testing.T) {
	for _, f := range []struct {
		path   string
		blocks []string
	}{
		{"../../README.md", []string{"summary"}},
		{"../../docs/operations.md", []string{"opendkim", "opendmarc", "policyd-spf"}},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range f.blocks {
			if !strings.Contains(string(data), "<!-- migrate:"+b+" -->") {
				t.Errorf("%s has no generated block %q", f.path, b)
			}
		}
		got, err := UpdateDoc(string(data))
		if err != nil {
			t.Fatal(err)
		}
		if got == string(data) {
			continue
		}
		if *update {
			if err := os.WriteFile(f.path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s: the migration tables differ from internal/migrate's mapping; run go test ./internal/migrate -run TestDocTables -update", f.path)
	}
}

// TestEveryOptionListed: every option of opendkim.conf(5),
// opendmarc.conf(5) and policyd-spf.conf(5) is in the mapping, mapped or
// with the reason it is not. testdata/manual holds the option names of the
// manual pages (OpenDKIM 2.11.0, OpenDMARC 1.4.2, spf-engine 3.0.4: Debian
// 12 packages), one a line.
func TestEveryOptionListed(t *testing.T) {
	for _, tc := range []struct {
		tool *Tool
		file string
	}{{&OpenDKIM, "testdata/manual/opendkim.conf.options"}, {&OpenDMARC, "testdata/manual/opendmarc.conf.options"},
		{&PolicydSPF, "testdata/manual/policyd-spf.conf.options"}} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		manual := map[string]bool{}
		for _, n := range strings.Fields(string(data)) {
			manual[n] = true
			if tc.tool.find(n) == nil {
				t.Errorf("%s: option %s of the manual is not in the mapping", tc.tool.Name, n)
			}
		}
		var extra []string
		seen := map[string]bool{}
		for _, o := range tc.tool.Options {
			if seen[strings.ToLower(o.Name)] {
				t.Errorf("%s: %s is listed twice", tc.tool.Name, o.Name)
			}
			seen[strings.ToLower(o.Name)] = true
			if !manual[o.Name] {
				extra = append(extra, o.Name)
			}
			if o.Note == "" {
				t.Errorf("%s: %s has no note", tc.tool.Name, o.Name)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			t.Errorf("%s: options not in the manual: %v", tc.tool.Name, extra)
		}
	}
}
