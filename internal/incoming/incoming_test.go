package incoming

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/incoming/incomingtest"
	"github.com/authmilter/authmilter/internal/store"
)

// The real-world samples (pkg/report/testdata/samples, with their licence).
const samplesDir = "../../pkg/report/testdata/samples"

func openStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newIngester(s *store.Store, domains ...string) (*Ingester, map[string]int) {
	seen := map[string]int{}
	return &Ingester{Store: s, Domains: domains, MaxPerSenderPerDay: 100, Observe: func(r string) { seen[r]++ },
		Now: func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) }}, seen
}

// TestImportSamples imports the samples directory twice: the first time
// every readable report about our domains is stored (the same Google
// report as .xml, .xml.gz and .zip once), the unreadable files are counted
// and nothing of them is kept; the second time nothing new is stored.
func TestImportSamples(t *testing.T) {
	s := openStore(t)
	in, seen := newIngester(s, "example.com", "borschow.com", "example.de")
	res, err := in.Import(context.Background(), samplesDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 20 samples + LICENSE + README.md: 15 distinct reports about our
	// domains, the nice-input copies twice more, indemed.com foreign, the
	// two broken reports and the two text files invalid.
	want := Result{Stored: 15, Duplicate: 2, Foreign: 1, Invalid: 4}
	if got := (Result{Stored: res.Stored, Duplicate: res.Duplicate, Foreign: res.Foreign, Invalid: res.Invalid}); got != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}
	// Messages of the stored reports, from the sample table totals.
	if res.Messages != 1+2286+1+1+3047+2+1+1+1+3047+2+1+123+2+1 {
		t.Errorf("messages %d", res.Messages)
	}
	if seen[Stored] != 15 || seen[Foreign] != 1 || seen[Invalid] != 4 || seen[Duplicate] != 2 {
		t.Errorf("observed %v", seen)
	}
	n, rows, _ := s.IncomingReports(context.Background())
	if n != 15 || rows != int64(res.Rows) {
		t.Errorf("store has %d reports %d rows; import said %d rows", n, rows, res.Rows)
	}
	again, err := in.Import(context.Background(), samplesDir, nil)
	if err != nil || again.Stored != 0 || again.Duplicate != 17 {
		t.Fatalf("second import: %+v %v", again, err)
	}
	if n2, rows2, _ := s.IncomingReports(context.Background()); n2 != n || rows2 != rows {
		t.Errorf("second import changed the store: %d %d", n2, rows2)
	}
}

func reportXML(org, id, dom string) []byte {
	return incomingtest.XML(org, id, dom, 1777593600, incomingtest.Row{IP: "192.0.2.1", Count: 4, DKIM: "pass", SPF: "fail"})
}

func reportMail(org, id, dom, ct string) []byte {
	return incomingtest.Mail(org, id, dom, "dmarc@"+dom, ct, reportXML(org, id, dom))
}

// TestImportMaildirAndMbox: a Maildir (new/ and cur/) and an mbox with a
// quoted ">From " line, a mail with an odd Content-Type, and a mail about
// a foreign domain.
func TestImportMaildirAndMbox(t *testing.T) {
	s := openStore(t)
	in, _ := newIngester(s, "example.org")
	md := t.TempDir()
	for _, d := range []string{"new", "cur", "tmp"} {
		os.Mkdir(filepath.Join(md, d), 0o700)
	}
	os.WriteFile(filepath.Join(md, "new", "1"), reportMail("google.com", "g1", "example.org", "application/gzip"), 0o600)
	os.WriteFile(filepath.Join(md, "cur", "2:2,S"), reportMail("yahoo.com", "y1", "mail.example.org", "application/octet-stream"), 0o600)
	os.WriteFile(filepath.Join(md, "tmp", "3"), reportMail("x.test", "x1", "example.org", "application/gzip"), 0o600) // tmp/ is not read
	res, err := in.Import(context.Background(), md, nil)
	if err != nil || res.Stored != 2 || res.Invalid != 0 {
		t.Fatalf("maildir: %+v %v", res, err)
	}
	var mbox bytes.Buffer
	for i, m := range [][]byte{
		reportMail("microsoft.com", "m1", "example.org", "application/x-zip-compressed"),
		bytes.Replace(reportMail("fastmail.com", "f1", "example.org", "application/x-gzip"), []byte("report\r\n"), []byte("report\r\n>From here\r\n"), 1),
		reportMail("google.com", "g1", "example.org", "application/gzip"), // in the Maildir already
		reportMail("evil.test", "e1", "example.net", "application/gzip"),
	} {
		fmt.Fprintf(&mbox, "From sender%d@example Thu Jan  1 00:00:00 2026\n", i)
		mbox.Write(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")))
		mbox.WriteString("\n")
	}
	p := filepath.Join(t.TempDir(), "mbox")
	os.WriteFile(p, mbox.Bytes(), 0o600)
	res, err = in.Import(context.Background(), p, nil)
	if err != nil || res.Stored != 2 || res.Duplicate != 1 || res.Foreign != 1 || res.Invalid != 0 {
		t.Fatalf("mbox: %+v %v", res, err)
	}
	// stdin
	res, err = in.Import(context.Background(), "-", bytes.NewReader(reportXML("stdin.test", "s1", "example.org")))
	if err != nil || res.Stored != 1 {
		t.Fatalf("stdin: %+v %v", res, err)
	}
}

// TestSenderCap: the third report of a sender on one day is dropped.
func TestSenderCap(t *testing.T) {
	s := openStore(t)
	in, seen := newIngester(s, "example.org")
	in.MaxPerSenderPerDay = 2
	var total Result
	for i := range 3 {
		r, err := in.Mail(context.Background(), bytes.NewReader(reportMail("google.com", fmt.Sprint(i), "example.org", "application/gzip")), "test")
		if err != nil {
			t.Fatal(err)
		}
		total.Add(r)
	}
	if total.Stored != 2 || total.Capped != 1 || seen[Capped] != 1 {
		t.Fatalf("%+v %v", total, seen)
	}
}
