package report_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/pkg/report"
)

// FuzzReadMail runs the whole parse a report mail takes (MIME → base64 →
// gzip/zip → XML → rows) on fuzzed mails, and the file reader on the same
// bytes, and checks: no panic; an error wraps one of the reader's
// sentinels and comes with no report; a report read is within the limits,
// with addresses that parse, counts that are not negative, and a report id
// and policy domain.
func FuzzReadMail(f *testing.F) {
	files, _ := filepath.Glob("testdata/samples/*")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil || len(b) > 64<<10 {
			continue
		}
		if strings.HasSuffix(name, ".eml") {
			f.Add(b)
			continue
		}
		f.Add(reportMail(b))
	}
	f.Add(reportMail(gz(tiny(2))))
	f.Add(tiny(1))
	lim := &report.Limits{MaxInput: 256 << 10, MaxXML: 1 << 20, MaxRows: 50, MaxReports: 4}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := report.ReadMail(bytes.NewReader(in), lim)
		if err != nil {
			checkErr(t, err, m != nil)
		} else {
			checkReports(t, m.Reports, lim)
		}
		rs, err := report.ReadFile(in, lim)
		if err != nil {
			checkErr(t, err, rs != nil)
		} else {
			checkReports(t, rs, lim)
		}
	})
}

func checkErr(t *testing.T, err error, got bool) {
	t.Helper()
	known := false
	for _, e := range []error{report.ErrMalformed, report.ErrTooLarge, report.ErrTooManyRows, report.ErrForbidden, report.ErrNoReport} {
		known = known || errors.Is(err, e)
	}
	if !known || got {
		t.Fatalf("error %v (known sentinel %v), result returned %v", err, known, got)
	}
}

func checkReports(t *testing.T, rs []*report.Report, lim *report.Limits) {
	t.Helper()
	if len(rs) == 0 || len(rs) > lim.MaxReports {
		t.Fatalf("%d reports", len(rs))
	}
	for _, r := range rs {
		if r.ID == "" || r.Policy.Domain == "" || r.OrgName == "" || len(r.Rows) > lim.MaxRows || r.End.Before(r.Begin) {
			t.Fatalf("report %+v", r)
		}
		for _, row := range r.Rows {
			if _, err := netip.ParseAddr(row.SourceIP); err != nil || row.Count < 0 {
				t.Fatalf("row %+v", row)
			}
		}
	}
}

// reportMail wraps an attachment in a report mail as reporters send it.
func reportMail(att []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: noreply@reporter.example\r\nTo: dmarc@example.org\r\n" +
		"Subject: Report Domain: example.org Submitter: reporter.example Report-ID: <1>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nThis is a DMARC aggregate report.\r\n" +
		"--b1\r\nContent-Type: application/gzip; name=\"r.xml.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(att)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b1--\r\n")
	return b.Bytes()
}
