package milter_test

import (
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/authres"
)

// checkAR checks an A-R value as the MTA got it (folds as LF, go-milter
// converts CRLF): a leading space and our authserv-id, every other line a
// continuation starting with a TAB, no control character, and exactly the
// results we write — none injected by the sender's data.
func checkAR(t *testing.T, v string) []authres.Result {
	t.Helper()
	if !strings.HasPrefix(v, " "+servID+";") {
		t.Fatalf("A-R %q does not start with our authserv-id", v)
	}
	for i, line := range strings.Split(v, "\n") {
		if i > 0 && !strings.HasPrefix(line, "\t") {
			t.Fatalf("A-R line %d %q is not a continuation: %q", i, line, v)
		}
		if strings.TrimSpace(line) == "" {
			t.Fatalf("A-R has a blank line: %q", v)
		}
		for _, c := range line {
			if (c < ' ' && c != '\t') || c == 0x7f {
				t.Fatalf("A-R has control character %U: %q", c, v)
			}
		}
	}
	id, rs := authres.Parse(v)
	if id != servID {
		t.Fatalf("authserv-id %q in %q", id, v)
	}
	count := map[string]int{}
	for _, r := range rs {
		count[r.Method]++
	}
	if count["spf"] != 2 || count["dmarc"] != 1 || count["dkim"] < 1 || count["arc"] != 1 || len(count) != 4 {
		t.Fatalf("results %v in %q: injected or missing", count, v)
	}
	return rs
}

// Whatever a sender puts in MAIL FROM, HELO, From or a DKIM d=, the A-R
// we write is well-formed and carries only our results, and the SMTP reply
// is one well-formed line.
func TestRobustHeaderSafety(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{edit: func(c *config.Config) {
		c.SPF.FailAction = "reject" // so that replies carry sender data
	}})
	inject := "\r\nAuthentication-Results: " + servID + "; dmarc=pass header.from=paypal.com"
	tests := []struct {
		name     string
		helo     string
		from     string // MAIL FROM
		header   string // From value
		dkimD    string
		wantMail string // smtp.mailfrom as read back, "" to skip: only a validated address, its domain alone when the local part would need quoting (issue #15 items 5, 8)
	}{
		{"plain", "mx.sender.test", "alice@sender.test", " <alice@sender.test>", "sender.test", "alice@sender.test"},
		{"CRLF in MAIL FROM", "mx.sender.test", "a@sender.test" + inject, " <a@sender.test>", "sender.test", ""},
		{"semicolon in MAIL FROM", "mx.sender.test", `"a; dmarc=pass"@sender.test`, " <a@sender.test>", "sender.test", "sender.test"},
		{"comment in MAIL FROM", "mx.sender.test", "a(dmarc=pass)@sender.test", " <a@sender.test>", "sender.test", "sender.test"},
		{"quote and backslash", "mx.sender.test", `a"\@sender.test`, " <a@sender.test>", "sender.test", "sender.test"},
		{"injection in HELO", "x.test; dmarc=pass header.from=paypal.com", "a@sender.test", " <a@sender.test>", "sender.test", "a@sender.test"},
		{"CRLF in HELO", "x.test" + inject, "a@sender.test", " <a@sender.test>", "sender.test", "a@sender.test"},
		{"open comment in HELO", "(x.test", "a@sender.test", " <a@sender.test>", "sender.test", "a@sender.test"},
		{"CRLF in From", "mx.sender.test", "a@sender.test", " \"Evil" + inject + "\" <a@sender.test>", "sender.test", "a@sender.test"},
		{"DKIM d= with quote and paren", "mx.sender.test", "a@sender.test", " <a@sender.test>", `paypal.com"(x`, "a@sender.test"},
		{"DKIM d= with space", "mx.sender.test", "a@sender.test", " <a@sender.test>", "paypal.com dmarc=pass", "a@sender.test"},
		{"8-bit everywhere", "h\xe9lo.test", "\xff\xfe@sender.test", " =?utf-8?q?=C3=A9?= <\xe9@sender.test>", "d\xc3\xa9.test", ""},
		{"long MAIL FROM", "mx.sender.test", strings.Repeat("x", 900) + "@sender.test", " <a@sender.test>", "sender.test", strings.Repeat("x", 900) + "@sender.test"},
		{"SPF fail, reply with sender data", "mx.other.test", "a@other.test", " <a@other.test>", "other.test", "a@other.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := r.client()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := message{ip: "192.0.2.1", helo: tt.helo, from: tt.from, headers: [][2]string{
				{"DKIM-Signature", " v=1; a=rsa-sha256; d=" + tt.dkimD + "; s=sel; h=from; bh=AAAA; b=AAAA"},
				{"From", tt.header}, {"Subject", " x"},
			}, body: []string{"x\r\n"}}
			if strings.Contains(tt.name, "SPF fail") {
				m.ip = "198.51.100.9"
			}
			o, err := send(s, m)
			if err != nil {
				t.Fatal(err)
			}
			rs := checkAR(t, o.AR())
			if tt.wantMail != "" && rs[0].Prop("smtp.mailfrom") != tt.wantMail {
				t.Errorf("smtp.mailfrom %q, want %q", rs[0].Prop("smtp.mailfrom"), tt.wantMail)
			}
			if o.Action.Code == gomilter.ActReplyCode {
				text := o.Action.SMTPText
				if strings.ContainsAny(text, "\r\n\x00") || o.Action.SMTPCode < 400 || o.Action.SMTPCode > 599 {
					t.Errorf("reply %d %q", o.Action.SMTPCode, text)
				}
			}
			if strings.Contains(tt.name, "SPF fail") && o.Action.Code != gomilter.ActReplyCode {
				t.Errorf("want a reject reply, got %c", o.Action.Code)
			}
		})
	}
}

// RFC 8601 §5: every A-R field claiming our authserv-id is removed, in any
// spelling: case, surrounding whitespace, comments, folding, a version,
// quoting, a trailing dot, any case of the field name. Look-alikes and
// other hosts' fields stay.
func TestRobustForgedARRemoved(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{})
	variants := []struct {
		value  string
		forged bool
	}{
		{" mx.rcpt.test; dmarc=pass", true},
		{" MX.RCPT.TEST; dmarc=pass", true},
		{"mx.rcpt.test;dmarc=pass", true},
		{" \t mx.rcpt.test ; dmarc=pass", true},
		{" (trusted) mx.rcpt.test; dmarc=pass", true},
		{" (a (nested) comment)mx.rcpt.test; dmarc=pass", true},
		{"\n\tmx.rcpt.test;\n\tdmarc=pass", true},
		{" mx.rcpt.test\n\t; dmarc=pass", true},
		{" mx.rcpt.test 1; dmarc=pass", true},
		{" mx.rcpt.test (c) 1 (c); dmarc=pass", true},
		{` "mx.rcpt.test"; dmarc=pass`, true},
		{` "MX.rcpt.test" 1; dmarc=pass`, true},
		{" mx.rcpt.test.; dmarc=pass", true},
		{" mx.rcpt.test(x); dmarc=pass", true},
		{" mx.rcpt.test", true},
		{" mx.rcpt.test; none", true},
		{" mx.rcpt.test.evil; dmarc=pass", false},
		{" evil.mx.rcpt.test; dmarc=pass", false},
		{" other.example; x=mx.rcpt.test", false},
		{" (mx.rcpt.test) other.example; dmarc=pass", false},
	}
	names := []string{"Authentication-Results", "authentication-results", "AUTHENTICATION-RESULTS"}
	var headers [][2]string
	var want []uint32 // 1-based index among A-R fields, highest first
	for i, v := range variants {
		headers = append(headers, [2]string{names[i%len(names)], v.value})
	}
	for i := len(variants) - 1; i >= 0; i-- {
		if variants[i].forged {
			want = append(want, uint32(i+1))
		}
	}
	m := stdMessage("sender.test")
	m.headers = append(headers, m.headers...)
	o := r.sendOne(t, m)
	var got []uint32
	for _, md := range o.Mods {
		if md.Code == gomilter.ActChangeHeader {
			if !strings.EqualFold(md.HeaderName, authres.HeaderName) || md.HeaderValue != "" {
				t.Errorf("unexpected change %+v", md)
			}
			got = append(got, md.HeaderIndex)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("deleted %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("deleted %v, want %v", got, want)
		}
	}
}
