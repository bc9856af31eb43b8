package authres

import "testing"

// Found by FuzzFormatParse (seed testdata/fuzz/FuzzFormatParse/00da275024e3b89f):
// a '"' inside a comment is plain ctext (RFC 5322 §3.2.2); Parse took it
// for the start of a quoted-string and swallowed the rest of the field
// (the following results). Format writes such comments whenever a reason
// holds a quote (e.g. from sender data).
func TestParseQuoteInComment(t *testing.T) {
	v := Format("mx", []Result{
		{Method: "spf", Value: "fail", Reason: `sender said "hi`, Props: []Prop{{Key: "smtp.mailfrom", Value: "a@b.example"}}},
		{Method: "dkim", Value: "pass", Props: []Prop{{Key: "header.d", Value: "b.example"}}},
	})
	_, rs := Parse(" " + v)
	if len(rs) != 2 || rs[0].Reason != `sender said "hi` || rs[1].Method != "dkim" {
		t.Errorf("Parse(%q) = %+v, want spf (with its reason) and dkim", v, rs)
	}
}
