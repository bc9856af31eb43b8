package resultheader

import (
	"strconv"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/pkg/authres"
)

// AsReceived reads back exactly: written into a comment by authres,
// read by authres.Parse, unquoted with strconv.Unquote (issue #15 item 5,
// issue #17 item 7).
func TestAsReceivedReadsBack(t *testing.T) {
	for _, s := range []string{
		"marc@ marcbradshaw.net", "any@legit.example(a.attacker.example", `"a;b=c"@x.example`, "a\\b)(\"@x",
		"\xff\xfe@x.example", "tab\there", "x.test; dmarc=pass header.from=paypal.com", "",
	} {
		v := authres.Format("mx", []authres.Result{{Method: "spf", Value: "none", Reason: "sender as received " + AsReceived(s)}})
		_, rs := authres.Parse(" " + v)
		if len(rs) != 1 {
			t.Fatalf("%q: %d results from %q", s, len(rs), v)
		}
		q := strings.TrimPrefix(rs[0].Reason, "sender as received ")
		got, err := strconv.Unquote(q)
		if err != nil || got != s {
			t.Errorf("%q: read back %q (%v) from %q", s, got, err, v)
		}
	}
}
