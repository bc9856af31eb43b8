package authres

import (
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	got := Format("mx.rcpt.test", []Result{
		{Method: "spf", Value: "pass", Props: []Prop{{"smtp.mailfrom", "a@sender.test"}}},
		{Method: "spf", Value: "none", Reason: "no SPF record", Props: []Prop{{"smtp.helo", "mx.sender.test"}}},
		{Method: "dkim", Value: "fail", Reason: "body hash mismatch", Props: []Prop{
			{"header.d", "sender.test"}, {"header.i", "@sender.test"}, {"header.s", "sel2048"},
			{"header.a", "rsa-sha256"}, {"header.b", "AbCdEfGh"}}},
	})
	want := "mx.rcpt.test;\r\n" +
		"\tspf=pass smtp.mailfrom=a@sender.test;\r\n" +
		"\tspf=none (no SPF record) smtp.helo=mx.sender.test;\r\n" +
		"\tdkim=fail (body hash mismatch) header.d=sender.test\r\n" +
		"\theader.i=@sender.test header.s=sel2048 header.a=rsa-sha256\r\n" +
		"\theader.b=AbCdEfGh"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for _, line := range strings.Split(got, "\r\n") {
		if strings.HasPrefix(line, "\t") && len(line)+7 > MaxLine {
			t.Errorf("line too long: %q", line)
		}
	}
	if got := Format("mx", nil); got != "mx; none" {
		t.Errorf("no results: %q", got)
	}
}

func TestValues(t *testing.T) {
	tests := []struct{ in, pvalue, comment string }{
		{"a@b.example", "a@b.example", "(a@b.example)"},
		{"", `""`, "()"},
		{"with space@x", `"with space@x"`, "(with space@x)"},
		{`q"uote;(x)`, `"q\"uote;(x)"`, `(q"uote,(x))`}, // ';' would end the result for go-msgauth
		{"sig header.i=@v.example", `"sig header.i=@v.example"`, "(sig header.i:@v.example)"},
		{`a)b(`, `"a)b("`, `(a\)b\()`},
		{"nul\x00cr\r\nlf", `"nul cr  lf"`, "(nul cr  lf)"},
		{"üser@bücher.example", "üser@bücher.example", "(üser@bücher.example)"},
	}
	for _, tt := range tests {
		if got := PValue(tt.in); got != tt.pvalue {
			t.Errorf("PValue(%q) = %q, want %q", tt.in, got, tt.pvalue)
		}
		if got := Comment(tt.in); got != tt.comment {
			t.Errorf("Comment(%q) = %q, want %q", tt.in, got, tt.comment)
		}
	}
}

func TestServID(t *testing.T) {
	tests := []struct{ value, want string }{
		{" mx.rcpt.test; spf=pass smtp.mailfrom=a@b", "mx.rcpt.test"},
		{"MX.Rcpt.Test;\n\tdkim=pass", "mx.rcpt.test"},
		{" mx.rcpt.test 1; none", "mx.rcpt.test"},
		{" (comment (nested)) mx.rcpt.test; none", "mx.rcpt.test"},
		{` "mx.rcpt.test"; none`, "mx.rcpt.test"},
		{" mx.rcpt.test.;none", "mx.rcpt.test"},
		{" mx.rcpt.test", "mx.rcpt.test"},    // malformed: no results at all
		{" mx.rcpt.test(x)", "mx.rcpt.test"}, // malformed
		{"", ""},
		{" (unclosed comment mx.rcpt.test", ""},
		{" other.example; spf=pass", "other.example"},
	}
	for _, tt := range tests {
		if got := ServID(tt.value); got != tt.want {
			t.Errorf("ServID(%q) = %q, want %q", tt.value, got, tt.want)
		}
	}
	if !SameServID(" MX.rcpt.test; none", "mx.rcpt.test") || SameServID(" mx.rcpt.test.evil; none", "mx.rcpt.test") {
		t.Error("SameServID")
	}
}

func FuzzServID(f *testing.F) {
	for _, s := range []string{" mx; none", `"q\"x"; none`, "((a)b) c;", "(", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id := ServID(s)
		if strings.ContainsAny(id, ";\t\r\n") && !strings.Contains(s, `"`) {
			t.Errorf("ServID(%q) = %q", s, id)
		}
	})
}

func TestParseRoundTrip(t *testing.T) {
	in := []Result{
		{Method: "spf", Value: "pass", Reason: "domain of a@b designates 192.0.2.1 as permitted sender",
			Props: []Prop{{"smtp.mailfrom", "a@b.example"}}},
		{Method: "dkim", Value: "fail", Reason: "body (hash) mismatch", Props: []Prop{{"header.d", "b.example"}, {"header.b", "AbC+/x=1"}}},
		{Method: "dmarc", Value: "fail", Reason: "p=REJECT; nothing aligned", Props: []Prop{{"header.from", "b.example"}}},
		{Method: "spf", Value: "none", Props: []Prop{{"smtp.mailfrom", `odd "local";x@b.example`}}},
	}
	// What every reader reads back: ';' in a comment as ',', a value that
	// is not address-like left out and named (issue #15 item 8).
	want := []Result{
		in[0], in[1],
		{Method: "dmarc", Value: "fail", Reason: "p=REJECT, nothing aligned", Props: []Prop{{"header.from", "b.example"}}},
		{Method: "spf", Value: "none", Reason: "smtp.mailfrom not shown: not a plain value"},
	}
	id, out := Parse(" " + Format("MX.example", in))
	if id != "mx.example" {
		t.Errorf("servid %q", id)
	}
	if len(out) != len(want) {
		t.Fatalf("got %d results: %+v", len(out), out)
	}
	for i := range want {
		if out[i].Method != want[i].Method || out[i].Value != want[i].Value || out[i].Reason != want[i].Reason || len(out[i].Props) != len(want[i].Props) {
			t.Errorf("%d: got %+v want %+v", i, out[i], want[i])
		}
		for _, p := range want[i].Props {
			if got := out[i].Prop(p.Key); got != p.Value {
				t.Errorf("%d: %s = %q, want %q", i, p.Key, got, p.Value)
			}
		}
	}
	if _, rs := Parse(" mx; none"); len(rs) != 0 {
		t.Errorf("none: %+v", rs)
	}
}
