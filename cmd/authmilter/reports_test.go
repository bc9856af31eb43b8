package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportsImportAndSummary runs `reports import` on the real-world
// samples (twice: the second stores nothing) and from stdin, and checks the
// numbers `reports summary` prints.
func TestReportsImportAndSummary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.toml")
	os.WriteFile(cfg, []byte("[store]\ndir = \""+dir+"\"\n[incoming_reports]\ndomains = [\"example.com\", \"borschow.com\"]\n"), 0o600)
	var out, errb bytes.Buffer
	if rc := run([]string{"reports", "import", "-config", cfg, "../../pkg/report/testdata/samples"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	// indemed.com and example.de are not ours here.
	if want := "stored 14 (2338 rows, 8516 messages), duplicates 2, not our domains 2, over the sender cap 0, unreadable 4\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
	out.Reset()
	run([]string{"reports", "import", "-config", cfg, "../../pkg/report/testdata/samples"}, &out, &errb)
	if !strings.HasPrefix(out.String(), "stored 0 (0 rows, 0 messages), duplicates 16,") {
		t.Fatalf("second import: %q", out.String())
	}
	out.Reset()
	b, _ := os.ReadFile("../../pkg/report/testdata/samples/rfc9990-sample.xml")
	stdinOf = bytes.NewReader(bytes.Replace(b, []byte("3v98abbp8ya9n3va8yr8oa3ya"), []byte("fromstdin"), 1))
	defer func() { stdinOf = os.Stdin }()
	if rc := run([]string{"reports", "import", "-config", cfg, "-"}, &out, &errb); rc != 0 || !strings.HasPrefix(out.String(), "stored 1 (1 rows, 123 messages)") {
		t.Fatalf("stdin: rc %d %q", rc, out.String())
	}
	out.Reset()
	if rc := run([]string{"reports", "summary", "-config", cfg, "-since", "1970-01-01", "-domain", "example.com"}, &out, &errb); rc != 0 {
		t.Fatalf("summary rc %d: %s", rc, errb.String())
	}
	s := out.String()
	for _, want := range []string{
		"example.com       14      8638",            // 12 reports, 8392 messages since 2000; the RFC 9990 sample (1979) and its copy from stdin, 123 each
		"google.com        1      3047      100.0%", // its borschow.com report is not for -domain example.com
		"209.85.220.69      4506      100.0%",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "borschow.com") {
		t.Errorf("-domain example.com shows borschow.com:\n%s", s)
	}
	if _, err := parseSince("7d", time.Now()); err != nil {
		t.Error(err)
	}
	if rc := run([]string{"reports", "summary", "-since", "yesterday"}, &out, &errb); rc != 2 {
		t.Errorf("bad -since: rc %d", rc)
	}
}
