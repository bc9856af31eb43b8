package authres_test

import (
	"fmt"
	"strings"

	"github.com/authmilter/authmilter/pkg/authres"
)

// The Authentication-Results field is written from plain results, and read
// back; a field carrying our authserv-id is recognised however it is
// spelled (RFC 8601 §5: such a field did not come from us and is removed).
func ExampleFormat() {
	v := authres.Format("mx.example.net", []authres.Result{
		{Method: "spf", Value: "pass", Props: []authres.Prop{{Key: "smtp.mailfrom", Value: "alice@example.org"}}},
		{Method: "dmarc", Value: "pass", Props: []authres.Prop{{Key: "header.from", Value: "example.org"}}},
	})
	fmt.Println(strings.ReplaceAll(v, "\r\n", "\n")) // folded with CRLF + TAB
	id, results := authres.Parse(v)
	fmt.Println(id, len(results), results[0].Prop("smtp.mailfrom"))
	fmt.Println(authres.SameServID(" (forged) MX.Example.NET.; spf=pass", "mx.example.net"))
	// Output:
	// mx.example.net;
	//	spf=pass smtp.mailfrom=alice@example.org;
	//	dmarc=pass header.from=example.org
	// mx.example.net 2 alice@example.org
	// true
}
