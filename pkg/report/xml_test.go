package report_test

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
)

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// richReport covers what the two schemas treat differently: IPv6, the
// "pass" disposition, RFC 9990-only and RFC 7489-only override reasons, the
// null sender, a row without SPF, np/testing, many DKIM results.
func richReport(t *testing.T) *report.Report {
	t.Helper()
	p := report.PolicyPublished{Domain: "example.com", DiscoveryMethod: "treewalk", ADKIM: "s", ASPF: "r",
		P: "reject", SP: "quarantine", NP: "reject", Testing: "y", Pct: -1, FO: "1",
		RUA: []report.URI{{Address: "mailto:dmarc@example.com"}}}
	base := report.Record{Time: day.Add(time.Hour), SourceIP: "192.0.2.1", HeaderFrom: "example.com",
		EnvelopeFrom: "example.com", EnvelopeTo: []string{"receiver.example"},
		SPF:    []report.SPFResult{{Domain: "example.com", Scope: "mfrom", Result: "pass"}},
		DKIM:   []report.DKIMResult{{Domain: "example.com", Selector: "sel", Result: "pass"}},
		Policy: p, Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass", DMARCResult: "pass"}
	v6 := base
	v6.SourceIP = "2001:db8::25"
	v6.Disposition, v6.DKIMAligned, v6.SPFAligned, v6.DMARCResult = "quarantine", "fail", "fail", "fail"
	v6.Overrides = []report.Override{{Type: "policy_test_mode", Comment: "t=y"}}
	v6.SPF = []report.SPFResult{{Domain: "example.com", Scope: "mfrom", Result: "softfail"}}
	null := base
	null.SourceIP = "198.51.100.7"
	null.EnvelopeFrom, null.SPF = "", nil
	null.Disposition, null.SPFAligned, null.DMARCResult = "none", "fail", "fail"
	null.Overrides = []report.Override{{Type: "sampled_out"}, {Type: "trusted_forwarder", Comment: "a & <b>"}}
	null.DKIM = nil
	for i := 0; i < 120; i++ {
		null.DKIM = append(null.DKIM, report.DKIMResult{Domain: fmt.Sprintf("d%d.example", i), Selector: "s", Result: "fail"})
	}
	es := []report.Entry{{ID: "1", Record: base}, {ID: "2", Record: base}, {ID: "3", Record: v6}, {ID: "4", Record: null}}
	reps, skipped, err := report.Build(es, report.Options{Receiver: "receiver.example", OrgName: "Receiver & Co",
		Email: "dmarc-noreply@receiver.example", ExtraContactInfo: "https://receiver.example/dmarc",
		Generator: "authmilter test"})
	if err != nil || len(skipped) != 0 || len(reps) != 1 {
		t.Fatalf("Build = %d reports, skipped %v, %v", len(reps), skipped, err)
	}
	return reps[0]
}

func TestXMLValidatesAgainstSchemas(t *testing.T) {
	r := richReport(t)
	for _, f := range []report.Format{report.FormatRFC9990, report.FormatRFC7489} {
		t.Run(string(f), func(t *testing.T) {
			data, err := r.XML(f)
			if err != nil {
				t.Fatal(err)
			}
			reporttest.Validate(t, f, data)
			s := string(data)
			for _, want := range map[report.Format][]string{
				report.FormatRFC9990: {`<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">`, "<generator>authmilter test</generator>",
					"<discovery_method>treewalk</discovery_method>", "<np>reject</np>", "<testing>y</testing>",
					"<disposition>pass</disposition>", "<selector>sel</selector>", "<source_ip>2001:db8::25</source_ip>",
					"<type>policy_test_mode</type>", "<type>other</type>", "<envelope_from></envelope_from>",
					"<org_name>Receiver &amp; Co</org_name>", "<begin>1772323200</begin>", "<end>1772409599</end>"},
				report.FormatRFC7489: {"<feedback>", "<pct>100</pct>", "<source_ip>2001:db8:0:0:0:0:0:25</source_ip>",
					"<type>sampled_out</type>", "<scope>mfrom</scope>"},
			}[f] {
				if !strings.Contains(s, want) {
					t.Errorf("%s output lacks %s", f, want)
				}
			}
			if f == report.FormatRFC7489 && strings.Contains(s, "<disposition>pass</disposition>") {
				t.Error("RFC 7489 output has disposition pass")
			}
			if n := strings.Count(s, "<dkim>\n"); n != 1+report.MaxDKIMPerRow+1 {
				t.Errorf("%d dkim results, want %d", n, 2+report.MaxDKIMPerRow)
			}
			// The counts read back from the XML equal the messages built.
			var fb struct {
				Records []struct {
					Count int `xml:"row>count"`
				} `xml:"record"`
			}
			if err := xml.Unmarshal(data, &fb); err != nil {
				t.Fatal(err)
			}
			sum := 0
			for _, rec := range fb.Records {
				sum += rec.Count
			}
			if sum != 4 || len(fb.Records) != 3 {
				t.Errorf("XML has %d records counting %d messages, want 3 and 4", len(fb.Records), sum)
			}
		})
	}
}

// TestValidatorCatchesErrors shows the schema check can fail: the published
// samples pass, our output with one wrong value does not, and each format
// fails the other's schema.
func TestValidatorCatchesErrors(t *testing.T) {
	for f, sample := range map[report.Format]string{report.FormatRFC9990: "sample-dmarc-2.0.xml",
		report.FormatRFC7489: "sample-rfc7489.xml"} {
		data, err := os.ReadFile("testdata/" + sample)
		if err != nil {
			t.Fatal(err)
		}
		reporttest.Validate(t, f, data)
	}
	r := richReport(t)
	good, _ := r.XML(report.FormatRFC9990)
	bad := bytes.Replace(good, []byte("<disposition>pass</disposition>"), []byte("<disposition>discard</disposition>"), 1)
	if out, err := reporttest.Check(t, report.FormatRFC9990, bad); err == nil {
		t.Errorf("disposition discard validated:\n%s", out)
	}
	if out, err := reporttest.Check(t, report.FormatRFC7489, good); err == nil {
		t.Errorf("RFC 9990 output validated against the RFC 7489 schema:\n%s", out)
	}
	old, _ := r.XML(report.FormatRFC7489)
	if out, err := reporttest.Check(t, report.FormatRFC9990, old); err == nil {
		t.Errorf("RFC 7489 output validated against the RFC 9990 schema:\n%s", out)
	}
	if _, err := r.XML("rfc0000"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestGzipIsStableAndReadable(t *testing.T) {
	r := richReport(t)
	a, err := r.Gzip(report.FormatRFC9990)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.Gzip(report.FormatRFC9990)
	if !bytes.Equal(a, b) {
		t.Error("two renderings of one report differ: a re-send would not be identical")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	x, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := r.XML(report.FormatRFC9990)
	if !bytes.Equal(x, want) || zr.Name != strings.TrimSuffix(r.Filename(), ".gz") {
		t.Errorf("gunzipped %q (name %q) differs from the XML", x[:40], zr.Name)
	}
}
