package authres

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// wellFormed checks the header value Format writes: RFC 8601 §2.2 shape,
// folds only as CRLF + TAB (RFC 5322 §2.2.3), no other control
// character, so nothing a sender controls can start a new header field.
func wellFormed(t *testing.T, v string) {
	t.Helper()
	for i, line := range strings.Split(v, "\r\n") {
		if i > 0 && !strings.HasPrefix(line, "\t") {
			t.Fatalf("line %d of %q is not a continuation: a new header field could start", i, v)
		}
		if strings.TrimSpace(line) == "" {
			t.Fatalf("line %d of %q is blank: it would end the header block", i, v)
		}
		for _, c := range line {
			if (c < ' ' && c != '\t') || c == 0x7f {
				t.Fatalf("control character %U in %q", c, v)
			}
		}
	}
}

// cleaned is what Format keeps of sender-controlled text: control
// characters and invalid UTF-8 become spaces.
func cleaned(s string) string { return clean(s) }

// The method, result and property names come from our code, never from
// the sender: the fuzzer picks them from these lists.
var (
	fuzzMethods = []string{"spf", "dkim", "dmarc"}
	fuzzValues  = []string{"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
	fuzzKeys    = []string{"smtp.mailfrom", "smtp.helo", "header.from", "header.i", "header.s", "header.a", "policy.dmarc"}
)

// FuzzFormatParse: whatever the sender controls in a result — the reason
// and the property values (a HELO, a MAIL FROM, a DKIM d=) — Format writes
// a well-formed value, and Parse reads back the same authserv-id, methods,
// results, comments and property values (control characters turned into
// spaces; values that are not address-like left out and named). Seeds: testdata/fuzz/FuzzFormatParse.
func FuzzFormatParse(f *testing.F) {
	f.Add("mx.rcpt.test", uint8(0), "domain of a@b designates 192.0.2.1", "a@b.example", "b.example")
	f.Add("mx", uint8(1), "unbalanced (paren", `evil"; dmarc=pass`, "x\r\nAuthentication-Results: mx; dmarc=pass")
	f.Add("MX.Example", uint8(2), `back\slash (nested (ok))`, "", "a b(c)d")
	f.Add("mx", uint8(3), "\x00\xff\xfe", "\xc3(", "\t")
	f.Add("mx", uint8(4), `quote " in a comment`, "0", "0")
	f.Fuzz(func(t *testing.T, servID string, sel uint8, reason, pv1, pv2 string) {
		if PValue(servID) != servID || strings.HasSuffix(servID, ".") || !utf8.ValidString(servID) {
			return // not a plain token: the configuration refuses it
		}
		method := fuzzMethods[int(sel)%len(fuzzMethods)]
		value := fuzzValues[int(sel/3)%len(fuzzValues)]
		key := fuzzKeys[int(sel/24)%len(fuzzKeys)]
		in := []Result{
			{Method: method, Value: value, Reason: reason, Props: []Prop{{Key: key, Value: pv1}, {Key: "header.d", Value: pv2}}},
			{Method: "dkim", Value: "pass", Props: []Prop{{Key: "header.b", Value: pv2}}},
		}
		v := Format(servID, in)
		wellFormed(t, v)
		if !SameServID(" "+v, servID) {
			t.Fatalf("SameServID(%q, %q) = false", v, servID)
		}
		id, out := Parse(" " + v)
		if id != strings.ToLower(servID) {
			t.Fatalf("authserv-id %q, want %q", id, strings.ToLower(servID))
		}
		if len(out) != 2 {
			t.Fatalf("got %d results from %q", len(out), v)
		}
		r := out[0]
		if r.Method != method || r.Value != value {
			t.Fatalf("method/value %q=%q from %q", r.Method, r.Value, v)
		}
		// A value that is not address-like is left out and named in the
		// comment (issue #15 item 8); the comment text is CommentText's.
		shown := func(pv string) string {
			if AddressLike(cleaned(pv)) {
				return cleaned(pv)
			}
			return ""
		}
		wantReason := reason
		var omitted []string
		for _, p := range in[0].Props {
			if shown(p.Value) == "" {
				omitted = append(omitted, p.Key)
			}
		}
		if len(omitted) > 0 {
			if wantReason != "" {
				wantReason += ", "
			}
			wantReason += strings.Join(omitted, ", ") + " not shown: not a plain value"
		}
		if wantReason != "" && r.Reason != CommentText(wantReason) {
			t.Fatalf("reason %q, want %q (value %q)", r.Reason, CommentText(wantReason), v)
		}
		if got := r.Prop(key); got != shown(pv1) {
			t.Fatalf("%s = %q, want %q (value %q)", key, got, shown(pv1), v)
		}
		if got := r.Prop("header.d"); got != shown(pv2) {
			t.Fatalf("header.d = %q, want %q (value %q)", got, shown(pv2), v)
		}
		if got := out[1].Prop("header.b"); got != shown(pv2) {
			t.Fatalf("header.b = %q, want %q (value %q)", got, shown(pv2), v)
		}
	})
}

// FuzzServIDForged: a field whose authserv-id is ours is found whatever
// surrounds it — case, leading CFWS and comments, folding, a version, a
// trailing dot, quoting — and a field whose id merely starts or ends with
// ours is not. Seeds: testdata/fuzz/FuzzServIDForged.
func FuzzServIDForged(f *testing.F) {
	f.Add(" ", "(x)", "1", "; spf=pass", uint8(0))
	f.Add("\r\n\t", "(a (b) c)", "", ";", uint8(3))
	f.Add("", "", "", "", uint8(5))
	f.Fuzz(func(t *testing.T, lead, comment, version, rest string, variant uint8) {
		const ours = "mx.rcpt.test"
		if strings.TrimLeft(lead, " \t\r\n") != "" {
			return // lead is whitespace only
		}
		if strings.Contains(comment, `\`) || !balancedComment(comment) {
			return
		}
		if version != "" && (strings.Trim(version, "0123456789") != "" || len(version) > 3) {
			return
		}
		if rest != "" && rest[0] != ';' {
			return
		}
		id := ours
		switch variant % 4 {
		case 1:
			id = strings.ToUpper(ours)
		case 2:
			id = ours + "."
		case 3:
			id = `"` + ours + `"`
		}
		v := lead + comment + lead + id
		if version != "" {
			v += " " + version
		}
		v += rest
		if !SameServID(v, ours) {
			t.Fatalf("forged field %q not recognised (ServID %q)", v, ServID(v))
		}
		// Look-alikes are not ours.
		for _, other := range []string{ours + ".evil", "evil." + ours, ours + "x", "x" + ours} {
			if w := lead + comment + lead + other + rest; SameServID(w, ours) {
				t.Fatalf("look-alike %q taken for ours", w)
			}
		}
	})
}

// balancedComment: empty, or one comment "(...)" with balanced parentheses.
func balancedComment(c string) bool {
	if c == "" {
		return true
	}
	if c[0] != '(' || c[len(c)-1] != ')' {
		return false
	}
	depth := 0
	for i := 0; i < len(c); i++ {
		switch c[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 && i != len(c)-1 {
				return false
			}
		}
	}
	return depth == 0
}
