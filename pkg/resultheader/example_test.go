package resultheader_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// An engine result, as plain values, becomes the Authentication-Results
// and Received-SPF fields.
func Example() {
	env := engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), HELO: "mail.example.org", MailFrom: "alice@example.org"}
	spf := spfcheck.Result{Status: spfcheck.StatusPass, Domain: "example.org", Identity: "alice@example.org", Scope: spfcheck.ScopeMailFrom}
	r := &engine.Result{Envelope: env, SPF: spf, DKIM: []dkimverify.Result{}}
	// The values fold with CRLF, as a header field does.
	fmt.Println(strings.ReplaceAll(authres.Format("mx.example.net", resultheader.AuthResults(r)), "\r\n", "\n"))
	fmt.Println(strings.ReplaceAll(resultheader.ReceivedSPF("mx.example.net", env, spf), "\r\n", "\n"))
	// Output:
	// mx.example.net;
	//	spf=pass
	//	(domain of alice@example.org designates 192.0.2.10 as permitted sender)
	//	smtp.mailfrom=alice@example.org;
	//	dkim=none
	// pass (mx.example.net: domain of alice@example.org designates 192.0.2.10 as permitted sender)
	//	client-ip=192.0.2.10;
	//	envelope-from=alice@example.org;
	//	helo=mail.example.org;
	//	receiver=mx.example.net;
	//	identity=mailfrom
}
