package report_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// sample is one file of testdata/samples (real reports collected by
// parsedmarc; testdata/samples/README.md) with what its README says a
// reader must do, and the totals counted in the file.
type sample struct {
	file     string
	err      error  // the refusal, or nil
	id       string // report_id
	domain   string // policy_published/domain
	rows     int
	messages int
	format   report.Format
}

var samples = []sample{
	{file: "!example.com!1538204542!1538463818.xml", id: "example.com:1538463741", domain: "example.com", rows: 1, messages: 1},
	{file: "!large-example.com!1711897200!1711983600.xml", id: "example.com:1711897200", domain: "example.com", rows: 2286, messages: 2286},
	{file: "Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml", id: "949348866075514174", domain: "borschow.com", rows: 1, messages: 1},
	{file: "addisonfoods.com!example.com!1536105600!1536191999.xml", id: "3ceb5548498640beaeb47327e202b0b9", domain: "example.com", rows: 1, messages: 1},
	{file: "changed-input.xml", id: "11038226378739404135", domain: "example.com", rows: 20, messages: 3047},
	{file: "empty_reason.xml", id: "20240125141224705995", domain: "example.com", rows: 1, messages: 2},
	{file: "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip", id: "2940", domain: "example.com", rows: 1, messages: 1},
	{file: "example.net!example.com!1529366400!1529452799.xml", id: "b043f0e264cf4ea995e93765242f6dfb", domain: "example.com", rows: 1, messages: 1},
	{file: "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz", id: "102675056", domain: "indemed.com", rows: 1, messages: 1},
	// An unclosed <xs:schema ...> start tag before <feedback>: the report
	// itself is complete and well-formed; accepted.
	{file: "ikea.com!example.de!1538690400!1538776800.xml", id: "aggr_report_2018_10_05_5bc7e9b4f3e8a", domain: "example.de", rows: 1, messages: 1},
	{file: "invalid_utf_8.xml", err: report.ErrMalformed},
	{file: "invalid_xml.xml", err: report.ErrMalformed},
	{file: "nice-input.xml", id: "11038226378739404135", domain: "example.com", rows: 20, messages: 3047},
	{file: "nice-input.xml.gz", id: "11038226378739404135", domain: "example.com", rows: 20, messages: 3047},
	{file: "nice-input.xml.zip", id: "11038226378739404135", domain: "example.com", rows: 20, messages: 3047},
	{file: "old_draft_from_wiki.xml", id: "9391651994964116463", domain: "example.com", rows: 1, messages: 2},
	{file: "report_with_upper_cased_pass.xml", id: "aggr_report_example.com_20191202_1638", domain: "example.com", rows: 1, messages: 1},
	{file: "rfc9990-sample.xml", id: "3v98abbp8ya9n3va8yr8oa3ya", domain: "example.com", rows: 1, messages: 123, format: report.FormatRFC9990},
	{file: "usssa.com!example.com!1538784000!1538870399.xml", id: "8953b4d4a4ee4218b6ac0e2cb2667ee1", domain: "example.com", rows: 2, messages: 2},
	{file: "veeam.com!example.com!1530133200!1530219600.xml", id: "sonexushealth.com:1530233361", domain: "example.com", rows: 1, messages: 1},
}

func readSample(t testing.TB, name string) ([]*report.Report, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".eml") {
		m, err := report.ReadMail(bytes.NewReader(b), nil)
		if err != nil {
			return nil, err
		}
		return m.Reports, nil
	}
	return report.ReadFile(b, nil)
}

// TestReadSamples reads every real-world sample and checks its totals.
func TestReadSamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/samples/*")
	seen := map[string]bool{}
	for _, s := range samples {
		seen[s.file] = true
		t.Run(s.file, func(t *testing.T) {
			rs, err := readSample(t, s.file)
			if s.err != nil {
				if !errors.Is(err, s.err) || rs != nil {
					t.Fatalf("got %v, %v; want error %v and nothing", rs, err, s.err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("%d reports, want 1", len(rs))
			}
			r := rs[0]
			if r.ID != s.id || r.Policy.Domain != s.domain || len(r.Rows) != s.rows || r.Messages() != s.messages {
				t.Errorf("id %q domain %q rows %d messages %d; want %q %q %d %d",
					r.ID, r.Policy.Domain, len(r.Rows), r.Messages(), s.id, s.domain, s.rows, s.messages)
			}
			want := s.format
			if want == "" {
				want = report.FormatRFC7489
			}
			if r.Format != want {
				t.Errorf("format %q, want %q", r.Format, want)
			}
		})
	}
	for _, f := range files {
		if b := filepath.Base(f); !seen[b] && b != "LICENSE" && b != "README.md" {
			t.Errorf("sample %s has no entry in the table", b)
		}
	}
}

// TestReadDeviations: what the accepted deviations read as.
func TestReadDeviations(t *testing.T) {
	rs, err := readSample(t, "report_with_upper_cased_pass.xml")
	if err != nil {
		t.Fatal(err)
	}
	row := rs[0].Rows[0]
	if row.Disposition != "none" || row.DKIMAligned != "pass" || row.SPFAligned != "pass" ||
		row.DKIM[0].Result != "pass" || row.SPF[0].Result != "pass" || rs[0].OrgName != "example.com" {
		t.Errorf("upper-cased Pass: %+v org %q", row, rs[0].OrgName)
	}
	rs, err = readSample(t, "empty_reason.xml")
	if err != nil {
		t.Fatal(err)
	}
	if o := rs[0].Rows[0].Overrides; len(o) != 0 {
		t.Errorf("empty reason: overrides %+v, want none", o)
	}
	rs, err = readSample(t, "!example.com!1538204542!1538463818.xml")
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].OrgName != "accurateplastics.com" {
		t.Errorf("empty org_name: got %q, want the email's domain", rs[0].OrgName)
	}
	rs, err = readSample(t, "rfc9990-sample.xml")
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Policy.NP != "none" || r.Policy.DiscoveryMethod != "treewalk" || r.Policy.Testing != "n" || r.Policy.Pct != -1 ||
		r.Rows[0].Disposition != "pass" || r.Rows[0].DKIM[0].Selector != "abc123" || r.Generator == "" {
		t.Errorf("rfc9990 sample: %+v", r)
	}
	if !r.Begin.Equal(time.Unix(302832000, 0)) || !r.End.Equal(time.Unix(302918400, 0)) {
		t.Errorf("date range %v – %v", r.Begin, r.End)
	}
}

// TestReadMailSubject: the RFC 9990 §3.5.2 Subject of the sample mail.
func TestReadMailSubject(t *testing.T) {
	b, err := os.ReadFile("testdata/samples/Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := report.ReadMail(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.SubjectDomain != "borschow.com" || m.Submitter != "google.com" || m.SubjectID != "949348866075514174" ||
		m.From != "noreply-dmarc-support@google.com" {
		t.Errorf("got %+v", m)
	}
}

const tinyReport = `<?xml version="1.0" encoding="UTF-8"?>
<feedback><report_metadata><org_name>r.example</org_name><email>a@r.example</email><report_id>1</report_id>
<date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>
<policy_published><domain>example.org</domain><p>none</p></policy_published>
ROWS</feedback>`

const tinyRow = `<record><row><source_ip>192.0.2.1</source_ip><count>1</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers><header_from>example.org</header_from></identifiers><auth_results><spf><domain>example.org</domain><result>pass</result></spf></auth_results></record>`

func tiny(rows int) []byte {
	return []byte(strings.Replace(tinyReport, "ROWS", strings.Repeat(tinyRow, rows), 1))
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for n, b := range files {
		f, err := w.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(b)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func manyEntries(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		m[strings.Repeat("d", i%7)+string(rune('a'+i%26))+strconv.Itoa(i)] = nil
	}
	return m
}

// TestReadRefuses: hostile and broken input is refused with the right
// error, and nothing is returned.
func TestReadRefuses(t *testing.T) {
	small := &report.Limits{MaxInput: 1 << 20, MaxXML: 1 << 20, MaxRows: 10, MaxReports: 2}
	zeros := bytes.Repeat([]byte{' '}, 8<<20) // 8 MiB: gzip makes ~8 KiB of it
	bomb := append(tiny(1), zeros...)
	sub := func(old, new string) []byte { return bytes.Replace(tiny(1), []byte(old), []byte(new), 1) }
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"gzip bomb", gz(bomb), report.ErrTooLarge},
		{"zip bomb", zipOf(t, map[string][]byte{"a.xml": bomb}), report.ErrTooLarge},
		{"zip of many", zipOf(t, map[string][]byte{"a.xml": tiny(1), "b.xml": tiny(1), "c.xml": tiny(1)}), report.ErrTooLarge},
		{"zip of many empty entries", zipOf(t, manyEntries(100)), report.ErrTooLarge},
		{"zip in zip", zipOf(t, map[string][]byte{"a.zip": zipOf(t, map[string][]byte{"a.xml": tiny(1)})}), report.ErrMalformed},
		{"input too large", bytes.Repeat([]byte("<"), 2<<20), report.ErrTooLarge},
		{"too many rows", tiny(11), report.ErrTooManyRows},
		{"external entity", append([]byte(`<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY x SYSTEM "file:///etc/passwd">]>`), tiny(1)[38:]...), report.ErrForbidden},
		{"undeclared entity", sub("r.example</org_name>", "&x;</org_name>"), report.ErrMalformed},
		{"invalid UTF-8", sub("r.example</org_name>", "r\xff</org_name>"), report.ErrMalformed},
		{"bad source_ip", sub("192.0.2.1", "192.0.2.300"), report.ErrMalformed},
		{"bad count", sub("<count>1", "<count>-1"), report.ErrMalformed},
		{"unknown disposition", sub("<disposition>none", "<disposition>delete"), report.ErrMalformed},
		{"empty alignment", sub("<dkim>pass</dkim>", "<dkim></dkim>"), report.ErrMalformed},
		{"no report id", sub("<report_id>1</report_id>", ""), report.ErrMalformed},
		{"no policy domain", sub("<domain>example.org</domain><p>", "<p>"), report.ErrMalformed},
		{"dates reversed", sub("<begin>1700000000", "<begin>1800000000"), report.ErrMalformed},
		{"two feedback", append(tiny(1), tiny(1)[38:]...), report.ErrMalformed},
		{"not xml", []byte("hello"), report.ErrMalformed},
		{"truncated gzip", gz(tiny(1))[:30], report.ErrMalformed},
		{"other encoding", sub(`encoding="UTF-8"`, `encoding="EBCDIC"`), report.ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, err := report.ReadFile(c.in, small)
			if !errors.Is(err, c.want) || rs != nil {
				t.Fatalf("got %d reports, %v; want %v", len(rs), err, c.want)
			}
		})
	}
}

// TestReadRoundTrip: what the writer writes, the reader reads back the
// same, in both formats.
func TestReadRoundTrip(t *testing.T) {
	p := report.PolicyPublished{Domain: "example.org", ADKIM: "r", ASPF: "s", P: "reject", SP: "quarantine", NP: "none",
		Testing: "n", DiscoveryMethod: "treewalk", FO: "1", Pct: -1,
		RUA: []report.URI{{Address: "mailto:d@example.org"}}}
	recs := []report.Entry{}
	for i, ip := range []string{"192.0.2.1", "2001:db8::1", "192.0.2.1"} {
		recs = append(recs, report.Entry{ID: string(rune('a' + i)), Record: report.Record{
			Time: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), SourceIP: ip, HeaderFrom: "example.org", EnvelopeFrom: "bounce.example.org",
			SPF:    []report.SPFResult{{Domain: "bounce.example.org", Scope: "mfrom", Result: "softfail"}},
			DKIM:   []report.DKIMResult{{Domain: "example.org", Selector: "s1", Result: "pass"}},
			Policy: p, Disposition: "pass", DKIMAligned: "pass", SPFAligned: "fail", DMARCResult: "pass",
			Overrides: []report.Override{{Type: "local_policy", Comment: "x"}}}})
	}
	built, _, err := report.Build(recs, report.Options{Receiver: "mx.example.net", Email: "dmarc@example.net", Generator: "g"})
	if err != nil || len(built) != 1 {
		t.Fatal(built, err)
	}
	want := built[0]
	for _, f := range []report.Format{report.FormatRFC9990, report.FormatRFC7489} {
		x, err := want.XML(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := report.ReadXML(x, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", f, err, x)
		}
		if got.ID != want.ID || got.OrgName != want.OrgName || !got.Begin.Equal(want.Begin) || !got.End.Equal(want.End) ||
			got.Messages() != 3 || len(got.Rows) != len(want.Rows) || got.Format != f {
			t.Errorf("%s: got %+v\nwant %+v", f, got, want)
		}
		if f == report.FormatRFC9990 {
			got.Format, got.Receiver, got.EntryIDs, got.Policy.RUA = "", want.Receiver, want.EntryIDs, want.Policy.RUA
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rfc9990 round trip:\n got %+v\nwant %+v", got, want)
			}
		}
	}
}

// TestReadAgreesWithXmllint is the differential check: on every sample
// (decompressed) and on the crafted refusals, our verdict on
// well-formedness is xmllint's (libxml2, an independent parser). The one
// difference is deliberate: a complete <feedback> inside an unclosed
// wrapper is read, and xmllint then agrees that the <feedback> element
// alone is well-formed.
func TestReadAgreesWithXmllint(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("xmllint (Debian libxml2-utils) is required under CI")
		}
		t.Skip("xmllint not installed")
	}
	wellFormed := func(b []byte) bool {
		cmd := exec.Command(xmllint, "--noout", "--nonet", "-")
		cmd.Stdin = bytes.NewReader(b)
		return cmd.Run() == nil
	}
	docs := map[string][]byte{}
	for _, s := range samples {
		if strings.HasSuffix(s.file, ".eml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata", "samples", s.file))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(s.file, ".gz"):
			zr, _ := gzip.NewReader(bytes.NewReader(b))
			var x bytes.Buffer
			x.ReadFrom(zr)
			b = x.Bytes()
		case strings.HasSuffix(s.file, ".zip"):
			zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
			f, _ := zr.File[0].Open()
			var x bytes.Buffer
			x.ReadFrom(f)
			b = x.Bytes()
		}
		docs[s.file] = b
	}
	docs["undeclared entity"] = bytes.Replace(tiny(1), []byte("r.example</org_name>"), []byte("&x;</org_name>"), 1)
	docs["unclosed"] = tiny(1)[:len(tiny(1))-5]
	docs["bad attribute"] = bytes.Replace(tiny(1), []byte("<feedback>"), []byte("<feedback a=1>"), 1)
	docs["valid"] = tiny(3)
	for name, b := range docs {
		_, err := report.ReadXML(b, nil)
		ours := !errors.Is(err, report.ErrMalformed)
		theirs := wellFormed(b)
		if name == "ikea.com!example.de!1538690400!1538776800.xml" {
			i := bytes.Index(b, []byte("<feedback>"))
			if theirs || !ours || !wellFormed(b[i:]) {
				t.Errorf("%s: xmllint %v on the file, %v on <feedback>; ours %v (%v)", name, theirs, wellFormed(b[i:]), ours, err)
			}
			continue
		}
		if ours != theirs {
			t.Errorf("%s: xmllint well-formed=%v, ReadXML accepted=%v (%v)", name, theirs, ours, err)
		}
	}
}

// TestReadMailForms: report mails in the other forms reporters use: the
// whole body is the attachment (no multipart), XML inline as
// quoted-printable text/xml, a zip labelled application/octet-stream
// inside a nested multipart, and a mail with no report at all.
func TestReadMailForms(t *testing.T) {
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	head := "From: dmarc@reporter.test\r\nSubject: Report Domain: example.org Submitter: reporter.test Report-ID: 1\r\nMIME-Version: 1.0\r\n"
	qp := strings.ReplaceAll(string(tiny(2)), "=", "=3D")
	for _, c := range []struct {
		name string
		mail string
		rows int
		err  error
	}{
		{"single part gzip", head + "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(gz(tiny(3))) + "\r\n", 3, nil},
		{"inline quoted-printable XML", head + "Content-Type: text/xml; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp, 2, nil},
		{"nested zip as octet-stream", head + "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n" +
			"--a\r\nContent-Type: application/octet-stream; name=r.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(zipOf(t, map[string][]byte{"r.xml": tiny(4)})) + "\r\n--a--\r\n", 4, nil},
		{"no report", head + "Content-Type: text/plain\r\n\r\nJust text.\r\n", 0, report.ErrNoReport},
		{"broken attachment", head + "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(gz(tiny(3))[:20]) + "\r\n", 0, report.ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := report.ReadMail(strings.NewReader(c.mail), nil)
			if c.err != nil {
				if !errors.Is(err, c.err) || m != nil {
					t.Fatalf("got %v, %v; want %v", m, err, c.err)
				}
				return
			}
			if err != nil || len(m.Reports) != 1 || len(m.Reports[0].Rows) != c.rows || m.SubjectID != "1" {
				t.Fatalf("got %+v, %v", m, err)
			}
		})
	}
}
