package integration

import (
	"compress/gzip"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testRecordsReport: the messages Postfix carried appear as records in the
// milter's store, and `authmilter report` builds from them one report per
// policy domain whose row counts equal the messages sent (issue #5, with
// the records and reports of issues #6 and #7).
func testRecordsReport(t *testing.T, dnsAddr string) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
	cfg.StoreDir = filepath.Join(dir, "store")
	m := runMilter(t, "records", cfg)

	good := client{IP: goodV4, Name: "mail.example.net", HELO: "mail.example.net"}
	bad := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
	sent := map[string]int{}
	send := func(cl client, domain string, wantErr int) {
		t.Helper()
		from := "alice@" + domain
		id := newID(t.Name())
		_, err := sendOne(pf.smtpAlt, cl, from, []string{"rcpt@rcpt.test"}, message(id, from))
		if wantErr != 0 {
			wantSMTPError(t, err, wantErr, "5.7.1")
		} else if err != nil {
			t.Fatalf("send: %v", err)
		}
		sent[domain]++
	}
	send(good, "dmarc-reject.test", 0)
	send(good, "dmarc-reject.test", 0)
	send(bad, "dmarc-reject.test", 550) // rejected: recorded with disposition reject
	send(good, "dmarc-quar.test", 0)
	send(bad, "dmarc-quar.test", 0) // held
	send(good, "spf-pass.test", 0)  // no DMARC record: nothing to report, no record

	out, stdout := reportTomorrow(t, m, dir, cfg)

	files, _ := filepath.Glob(filepath.Join(out, "*.xml.gz"))
	got := map[string]int{}
	for _, f := range files {
		domain, count := readReport(t, f)
		got[domain] += count
		// receiver!policy-domain!begin!end!id.xml.gz (RFC 9990 §3.5.2)
		if parts := strings.Split(filepath.Base(f), "!"); len(parts) != 5 || parts[1] != domain {
			t.Errorf("file name %s", filepath.Base(f))
		}
	}
	for _, d := range []string{"dmarc-reject.test", "dmarc-quar.test"} {
		if got[d] != sent[d] {
			t.Errorf("%s: report rows count %d messages, sent %d", d, got[d], sent[d])
		}
	}
	if got["spf-pass.test"] != 0 || len(got) != 2 {
		t.Errorf("reports for %v, want exactly dmarc-reject.test and dmarc-quar.test (%d files)\n%s", got, len(files), stdout)
	}
}

// readReport unzips an aggregate report and returns its policy domain and
// the sum of its rows' counts.
func readReport(t *testing.T, path string) (string, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var fb struct {
		Policy struct {
			Domain string `xml:"domain"`
		} `xml:"policy_published"`
		Records []struct {
			Count int `xml:"row>count"`
		} `xml:"record"`
	}
	if err := xml.Unmarshal(data, &fb); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	n := 0
	for _, r := range fb.Records {
		n += r.Count
	}
	return fb.Policy.Domain, n
}
