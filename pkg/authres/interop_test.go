package authres_test

import (
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/archeck"
	"github.com/authmilter/authmilter/pkg/authres"
)

// Issue #15 item 8: what Format writes reads the same in go-msgauth's
// authres.Parse as in ours — also with a ';' in a comment or a HELO name,
// a quoted local part, a property-shaped word in a comment.
func TestFormatReadsTheSameInGoMsgauth(t *testing.T) {
	for _, rs := range [][]authres.Result{
		{{Method: "spf", Value: "pass", Reason: "domain of a@b designates 192.0.2.1 as permitted sender", Props: []authres.Prop{{Key: "smtp.mailfrom", Value: "a@b.example"}}}},
		{{Method: "dmarc", Value: "fail", Reason: "p=REJECT; nothing aligned; 2 author domains", Props: []authres.Prop{{Key: "header.from", Value: "b.example"}, {Key: "policy.dmarc", Value: "reject"}}}},
		{{Method: "spf", Value: "none", Props: []authres.Prop{{Key: "smtp.helo", Value: "evil;dmarc=pass"}}}, {Method: "dkim", Value: "none"}},
		{{Method: "spf", Value: "none", Props: []authres.Prop{{Key: "smtp.mailfrom", Value: `"a b;c"@b.example`}}}},
		{{Method: "dkim", Value: "fail", Reason: "bad sig header.i=@victim.example smtp.mailfrom=x", Props: []authres.Prop{{Key: "header.d", Value: "b.example"}, {Key: "header.b", Value: "AbC+/x=1"}}}},
		{{Method: "dkim", Value: "pass", Props: []authres.Prop{{Key: "header.d", Value: "b.example"}, {Key: "header.i", Value: "a b@b.example"}, {Key: "header.s", Value: "sel"}}}},
		{{Method: "spf", Value: "fail", Reason: "(unbalanced", Props: []authres.Prop{{Key: "smtp.mailfrom", Value: "x@y.example"}}}},
	} {
		v := authres.Format("mx.rcpt.test", rs)
		if err := archeck.Check(" " + v); err != nil {
			t.Error(err)
		}
		_, back := authres.Parse(" " + v)
		if len(back) != len(rs) {
			t.Errorf("%d results read back from %q", len(back), v)
		}
	}
}

// FuzzFormatReaders: whatever the sender controls in a reason or a
// property value, the field reads the same in go-msgauth and in ours, and
// a property left out is named in the comment.
func FuzzFormatReaders(f *testing.F) {
	f.Add("domain of a@b designates 192.0.2.1", "a@b.example", "b.example")
	f.Add("p=REJECT; x", `evil"; dmarc=pass`, "x\r\nAuthentication-Results: mx; dmarc=pass")
	f.Add(`back\slash (nested (ok)) header.from=x`, "", "a b(c)d")
	f.Fuzz(func(t *testing.T, reason, pv1, pv2 string) {
		in := []authres.Result{
			{Method: "spf", Value: "fail", Reason: reason, Props: []authres.Prop{{Key: "smtp.mailfrom", Value: pv1}, {Key: "smtp.helo", Value: pv2}}},
			{Method: "dkim", Value: "pass", Props: []authres.Prop{{Key: "header.d", Value: pv2}}},
		}
		v := authres.Format("mx.rcpt.test", in)
		if err := archeck.Check(" " + v); err != nil {
			t.Fatal(err)
		}
		_, out := authres.Parse(" " + v)
		if len(out) != 2 {
			t.Fatalf("%d results from %q", len(out), v)
		}
		for i, r := range in {
			for _, p := range r.Props {
				got := out[i].Prop(p.Key)
				if got == "" && !strings.Contains(out[i].Reason, p.Key) {
					t.Fatalf("%s=%q left out without a word in %q", p.Key, p.Value, v)
				}
			}
		}
	})
}
