// Package reporttest validates aggregate report XML against the published
// schemas (pkg/report/testdata) with xmllint, for tests of any package.
package reporttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/authmilter/authmilter/pkg/report"
)

// Schema returns the path of the XSD that validates format f. The RFC 7489
// one is the Appendix C schema with the two edits it needs to compile
// (testdata/README.md).
func Schema(t testing.TB, f report.Format) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("reporttest: cannot locate the testdata directory")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "testdata")
	if f == report.FormatRFC7489 {
		return filepath.Join(dir, "rfc7489-rua-nons.xsd")
	}
	return filepath.Join(dir, "dmarc-2.0.xsd")
}

// Xmllint returns the xmllint path. Without it the test is skipped, except
// under CI=true where it fails: CI must validate every report.
func Xmllint(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("xmllint not found (Debian package libxml2-utils); CI must validate reports")
		}
		t.Skip("xmllint not found (install libxml2-utils)")
	}
	return p
}

// Check runs xmllint --schema on data and returns its error and output.
func Check(t testing.TB, f report.Format, data []byte) (string, error) {
	t.Helper()
	bin := Xmllint(t)
	file := filepath.Join(t.TempDir(), "report.xml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--noout", "--nonet", "--schema", Schema(t, f), file).CombinedOutput()
	return string(out), err
}

// Validate fails the test unless data is valid against the schema of f.
func Validate(t testing.TB, f report.Format, data []byte) {
	t.Helper()
	if out, err := Check(t, f, data); err != nil {
		t.Fatalf("report does not validate against %s: %v\n%s\n%s", filepath.Base(Schema(t, f)), err, out, data)
	}
}
