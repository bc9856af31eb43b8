package failrep

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// evaluation builds the engine result and the DMARC result of one author
// domain (example.com, organizational domain example.com) with fo.
func evaluation(fo string, status dmarc.Status, dkimAligned, spfAligned bool, spf spfcheck.Status, sigs ...dkimverify.Result) (*engine.Result, dmarc.Result) {
	rec := &dmarc.Record{FO: fo, RUF: []dmarc.URI{{Address: "mailto:ruf@example.com"}}}
	res := dmarc.Result{Status: status, AuthorDomain: "example.com", DKIMAligned: dkimAligned, SPFAligned: spfAligned,
		Discovery: &dmarc.Discovery{AuthorDomain: "example.com", PolicyDomain: "example.com", OrgDomain: "example.com", Record: rec, Method: dmarc.MethodTreeWalk}}
	r := &engine.Result{SPF: spfcheck.Result{Status: spf, Domain: "bounce.example.net"}, DKIM: sigs,
		DMARC: res, DMARCAll: []dmarc.Result{res}, AuthorDomains: []string{"example.com"}}
	return r, res
}

var (
	sigPass     = dkimverify.Result{Status: dkimverify.StatusPass, Domain: "example.com", Selector: "s1"}
	sigBodyHash = dkimverify.Result{Status: dkimverify.StatusFail, Domain: "example.com", Selector: "s1", Identifier: "@example.com", Reason: "body hash mismatch"}
	sigRevoked  = dkimverify.Result{Status: dkimverify.StatusPermError, Domain: "other.example", Selector: "k", Reason: "key revoked"}
	sigBadSig   = dkimverify.Result{Status: dkimverify.StatusFail, Domain: "mail.example.com", Selector: "s2", Reason: "signature mismatch"}
	sigTemp     = dkimverify.Result{Status: dkimverify.StatusTempError, Domain: "example.com", Selector: "s1", Reason: "key DNS lookup failed"}
)

// fo= decides which failures are reported (RFC 9989 §4.7; RFC 7489 §6.3
// has the same four options).
func TestFailures(t *testing.T) {
	type want struct {
		kind  Kind
		auth  string
		align string
		dkim  string // d= of the signature named in the report
	}
	cases := []struct {
		name   string
		fo     string
		status dmarc.Status
		dkimA  bool
		spfA   bool
		spf    spfcheck.Status
		sigs   []dkimverify.Result
		want   []want
	}{
		{"fo=0 DMARC fail", "0", dmarc.StatusFail, false, false, spfcheck.StatusFail, []dkimverify.Result{sigBodyHash},
			[]want{{KindDMARC, "dmarc", "dkim,spf", "example.com"}}},
		{"fo=0 one aligned pass: nothing", "0", dmarc.StatusPass, true, false, spfcheck.StatusFail, []dkimverify.Result{sigPass}, nil},
		{"fo=1 one aligned pass, SPF not aligned", "1", dmarc.StatusPass, true, false, spfcheck.StatusPass, []dkimverify.Result{sigPass},
			[]want{{KindDMARC, "dmarc", "spf", ""}}},
		{"fo=1 both aligned: nothing", "1", dmarc.StatusPass, true, true, spfcheck.StatusPass, []dkimverify.Result{sigPass}, nil},
		{"fo=1 unsigned SPF-aligned", "1", dmarc.StatusPass, false, true, spfcheck.StatusPass, nil,
			[]want{{KindDMARC, "dmarc", "dkim", ""}}},
		{"fo=d a failed signature, DMARC pass", "d", dmarc.StatusPass, false, true, spfcheck.StatusPass, []dkimverify.Result{sigBadSig},
			[]want{{KindDKIM, "signature", "dkim", "mail.example.com"}}},
		{"fo=d revoked key of another domain", "d", dmarc.StatusFail, false, false, spfcheck.StatusNone, []dkimverify.Result{sigPass, sigRevoked},
			[]want{{KindDKIM, "revoked", "dkim,spf", "other.example"}}},
		{"fo=d temperror is no failure", "d", dmarc.StatusFail, false, false, spfcheck.StatusNone, []dkimverify.Result{sigTemp}, nil},
		{"fo=d no signature", "d", dmarc.StatusFail, false, false, spfcheck.StatusNone, nil, nil},
		{"fo=s SPF fail, DMARC pass by DKIM", "s", dmarc.StatusPass, true, false, spfcheck.StatusFail, []dkimverify.Result{sigPass},
			[]want{{KindSPF, "spf", "spf", ""}}},
		{"fo=s softfail is no failure", "s", dmarc.StatusFail, false, false, spfcheck.StatusSoftFail, nil, nil},
		{"fo=s permerror", "s", dmarc.StatusFail, false, false, spfcheck.StatusPermError, nil,
			[]want{{KindSPF, "spf", "dkim,spf", ""}}},
		{"fo=0:d:s all three", "0:d:s", dmarc.StatusFail, false, false, spfcheck.StatusFail, []dkimverify.Result{sigBodyHash},
			[]want{{KindDMARC, "dmarc", "dkim,spf", "example.com"}, {KindDKIM, "bodyhash", "dkim,spf", "example.com"}, {KindSPF, "spf", "dkim,spf", ""}}},
		{"temperror: nothing", "1:d:s", dmarc.StatusTempError, false, false, spfcheck.StatusFail, []dkimverify.Result{sigBodyHash}, nil},
		{"none: nothing", "1", dmarc.StatusNone, false, false, spfcheck.StatusFail, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, res := evaluation(c.fo, c.status, c.dkimA, c.spfA, c.spf, c.sigs...)
			var got []want
			for _, f := range Failures(r, res) {
				w := want{f.Kind, f.AuthFailure, strings.Join(f.IdentityAlignment, ","), ""}
				if f.DKIM != nil {
					w.dkim = f.DKIM.Domain
				}
				got = append(got, w)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestRedactLocalParts(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Alice <alice@example.com>", "Alice <redacted@example.com>"},
		{"alice.b+tag@example.com, bob@example.org", "redacted@example.com, redacted@example.org"},
		{`"a b@c"@example.com`, `redacted@example.com`},
		{`"unterminated@example.com`, `"redacted@example.com`}, // no quoted string: the dot-atom before @ goes
		{"from x by y for <rcpt@example.net>; Mon", "from x by y for <redacted@example.net>; Mon"},
		{"v=1; d=example.com; i=@example.com; s=s1", "v=1; d=example.com; i=@example.com; s=s1"},
		{"v=1; i=user@example.com;", "v=1; i=redacted@example.com;"},
		{"<1234.abc@mail.example.com>", "<redacted@mail.example.com>"},
		{"user@[192.0.2.1]", "redacted@[192.0.2.1]"},
		{"jörg@bücher.example", "redacted@bücher.example"},
		{"no address here @ all", "no address here @ all"},
		{"trailing@", "trailing@"},
	}
	for _, c := range cases {
		if got := RedactLocalParts(c.in); got != c.want {
			t.Errorf("RedactLocalParts(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, s := range []string{"a@b@c.example", "x@y z@w", `"q"@a "r"@b`} {
		got := RedactLocalParts(s)
		if RedactLocalParts(got) != got {
			t.Errorf("RedactLocalParts is not idempotent on %q: %q", s, got)
		}
	}
}

func FuzzRedactLocalParts(f *testing.F) {
	for _, s := range []string{"Alice <alice@example.com>", `"a b@c"@example.com`, "a@b@c", "@@@", "x\"@\"y@z", "i=@d;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := RedactLocalParts(s)
		if strings.Count(got, "@") > strings.Count(s, "@") {
			t.Fatalf("RedactLocalParts(%q) = %q: '@' added", s, got)
		}
		if again := RedactLocalParts(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
		// Every '@' followed by a domain is preceded by "redacted", a
		// byte that cannot end a local part, or the start.
		for i := 0; i < len(got); i++ {
			if got[i] != '@' || !domainFollows(got, i+1) || i == 0 {
				continue
			}
			if strings.HasSuffix(got[:i], Redacted) {
				continue
			}
			if localByte(got[i-1]) {
				t.Fatalf("RedactLocalParts(%q) = %q: local part left before byte %d", s, got, i)
			}
		}
	})
}

func TestIsReportMail(t *testing.T) {
	cases := []struct {
		name, header string
		want         bool
	}{
		{"ordinary", "From: a@example.com\r\nSubject: hello\r\nContent-Type: text/plain\r\n", false},
		{"ARF", "From: a@example.com\r\nContent-Type: multipart/report; report-type=feedback-report;\r\n boundary=x\r\n", true},
		{"DSN", "Content-Type: Multipart/Report; report-type=delivery-status; boundary=x\r\n", true},
		{"aggregate report subject", "Subject: Report Domain: example.com Submitter: google.com Report-ID: 1\r\n", true},
		{"auto-generated", "Auto-Submitted: auto-generated\r\n", true},
		{"auto-replied (comment)", "Auto-Submitted: auto-replied (vacation)\r\n", true},
		{"Auto-Submitted: no", "Auto-Submitted: no\r\nSubject: x\r\n", false},
		{"unreadable header: no report", "From a@example.com\r\n", true},
	}
	for _, c := range cases {
		if got := IsReportMail([]byte(c.header)); got != c.want {
			t.Errorf("%s: IsReportMail = %v, want %v", c.name, got, c.want)
		}
	}
}

// arfReading is what testdata/read_arf.py (Python's email package) prints.
type arfReading struct {
	ContentType string              `json:"content_type"`
	ReportType  string              `json:"report_type"`
	Parts       []string            `json:"parts"`
	Feedback    map[string][]string `json:"feedback"`
	HeadersPart map[string]string   `json:"headers_part"`
	Defects     []string            `json:"defects"`
}

// readARF parses the file with Python's email package, an independent
// reader. Without python3 the test is skipped, and fails under CI=true.
func readARF(t *testing.T, path string) arfReading {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing (CI must have it)")
		}
		t.Skip("python3 is missing")
	}
	out, err := exec.Command(py, "testdata/read_arf.py", path).Output()
	if err != nil {
		t.Fatalf("read_arf.py %s: %v", path, err)
	}
	var r arfReading
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("read_arf.py output: %v\n%s", err, out)
	}
	return r
}

// The reader reads the real reporters' samples as their README says: the
// four ARF reports with their feedback fields, the Exim one without an ARF
// part.
func TestReaderReadsRealSamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/samples/*.eml")
	if len(files) != 5 {
		t.Fatalf("%d sample files, want 5", len(files))
	}
	withARF := 0
	for _, f := range files {
		r := readARF(t, f)
		if r.Feedback != nil && len(r.Feedback["auth-failure"]) == 1 {
			withARF++
			if r.Feedback["feedback-type"][0] != "auth-failure" || len(r.Feedback["reported-domain"]) != 1 {
				t.Errorf("%s: feedback fields %v", f, r.Feedback)
			}
		}
	}
	if withARF != 3 { // domain.de, linkedin (LF and CRLF); Netease nests differently, Exim has none
		t.Errorf("%d samples with an ARF part read, want 3", withARF)
	}
}

// Our report, as the same reader sees it: multipart/report with report-type
// feedback-report, the three parts in order, every RFC 5965/6591/9991 field
// we must write, the headers redacted, and no body.
func TestComposeReadByPython(t *testing.T) {
	rep := Report{
		Kind: KindDMARC, AuthFailure: "dmarc", Arrival: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC),
		ReportingMTA: "mx.example.net", SourceIP: "192.0.2.1", AuthorDomain: "example.com", PolicyDomain: "example.com",
		DiscoveryMethod: "treewalk", OriginalMailFrom: RedactLocalParts("bounce-123@bounce.example.org"),
		IdentityAlignment: []string{"dkim", "spf"}, DKIMDomain: "example.com", DKIMIdentity: "@example.com", DKIMSelector: "s1",
		SPFDomain: "bounce.example.org", SPFDNS: []string{`v=spf1 ip4:198.51.100.0/24 -all`},
		AuthResults: "mx.example.net; spf=fail smtp.mailfrom=redacted@bounce.example.org; dkim=fail (body hash mismatch) header.d=example.com " +
			strings.Repeat("x", 120) + "; dmarc=fail (p=REJECT) header.from=example.com",
		DeliveryResult: "reject",
		Headers: RedactLocalParts("Received: from x by mx for <bob@example.net>\r\nFrom: CEO <ceo@example.com>\r\nTo: bob@example.net\r\n" +
			"Subject: Pay this invoice\r\nMessage-ID: <abc@example.com>\r\nX-Injected: a\r\n"),
		URI: "mailto:ruf@example.com",
	}
	msg := Compose(rep, "0123456789abcdef", "dmarc-reports@mx.example.net", "ruf@example.com", "authmilter/test", rep.Arrival)
	for i, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d is %d bytes", i, len(line))
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF", i)
		}
	}
	path := filepath.Join(t.TempDir(), "report.eml")
	if err := os.WriteFile(path, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	r := readARF(t, path)
	if r.ContentType != "multipart/report" || r.ReportType != "feedback-report" || len(r.Defects) != 0 {
		t.Errorf("top: %s report-type=%s defects=%v", r.ContentType, r.ReportType, r.Defects)
	}
	wantParts := []string{"multipart/report", "text/plain", "message/feedback-report", "text/plain", "text/rfc822-headers"}
	if !reflect.DeepEqual(r.Parts, wantParts) && !reflect.DeepEqual(r.Parts, []string{"multipart/report", "text/plain", "message/feedback-report", "text/rfc822-headers"}) {
		t.Errorf("parts %v", r.Parts)
	}
	want := map[string]string{
		"feedback-type": "auth-failure", "user-agent": "authmilter/test", "version": "1",
		"original-mail-from": "<redacted@bounce.example.org>", "arrival-date": "Sun, 06 Dec 2026 10:00:00 +0000",
		"reporting-mta": "dns; mx.example.net", "source-ip": "192.0.2.1", "reported-domain": "example.com",
		"auth-failure": "dmarc", "identity-alignment": "dkim, spf", "delivery-result": "reject",
		"dkim-domain": "example.com", "dkim-identity": "@example.com", "dkim-selector": "s1",
		"spf-dns": `txt : bounce.example.org : "v=spf1 ip4:198.51.100.0/24 -all"`,
	}
	for k, v := range want {
		if got := r.Feedback[k]; len(got) != 1 || got[0] != v {
			t.Errorf("feedback %s = %q, want %q", k, got, v)
		}
	}
	if ar := r.Feedback["authentication-results"]; len(ar) != 1 || !strings.HasSuffix(ar[0], "dmarc=fail (p=REJECT) header.from=example.com") {
		t.Errorf("authentication-results = %q", ar)
	}
	h := r.HeadersPart
	if h["from"] != "CEO <redacted@example.com>" || h["to"] != "redacted@example.net" || h["subject"] != "Pay this invoice" {
		t.Errorf("reported headers: %v", h)
	}
	if strings.Contains(string(msg), "bob@") || strings.Contains(string(msg), "ceo@") || strings.Contains(string(msg), "bounce-123") {
		t.Error("a local part was not redacted")
	}
}

// Text from the message or DNS cannot end a field and start another.
func TestComposeNoHeaderInjection(t *testing.T) {
	rep := Report{AuthFailure: "dmarc", ReportingMTA: "mx.example.net", AuthorDomain: "example.com",
		DKIMDomain: "example.com", DKIMIdentity: "@example.com\r\nBcc: victim@example.org", DKIMSelector: "s1\nX-Evil: 1",
		SPFDomain: "example.com", SPFDNS: []string{"v=spf1 \"-all\r\nX-Evil: 2"}, Headers: "From: a@example.com\r\n"}
	msg := string(Compose(rep, "id", "r@mx.example.net", "ruf@example.com", "authmilter/test", time.Unix(0, 0)))
	for _, bad := range []string{"\r\nBcc:", "\r\nX-Evil:", "\nX-Evil"} {
		if strings.Contains(msg, bad) {
			t.Errorf("injected %q:\n%s", bad, msg)
		}
	}
}
