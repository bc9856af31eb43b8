package engine_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
)

// txtZone is a DNS of TXT records in a map, enough for an unsigned message
// (internal/resolver is the daemon's; the tests use internal/dnstest).
type txtZone map[string]string

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (z txtZone) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := z[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, notFound(name)
}
func (z txtZone) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}
func (z txtZone) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	return nil, notFound(name)
}
func (z txtZone) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}
func (z txtZone) DomainExists(_ context.Context, name string) (bool, error) {
	for n := range z {
		if strings.HasSuffix(n, strings.TrimSuffix(name, ".")) {
			return true, nil
		}
	}
	return false, nil
}

// One message through the engine, in SMTP order, and its results as the
// Authentication-Results field: SPF passes for the envelope sender and
// aligns with the From domain, so DMARC passes without a signature.
func ExampleEngine() {
	dns := txtZone{
		"example.org":        "v=spf1 ip4:192.0.2.0/24 -all",
		"mail.example.org":   "v=spf1 ip4:192.0.2.10 -all",
		"_dmarc.example.org": "v=DMARC1; p=reject",
	}
	e := engine.New(dns, engine.DefaultOptions())
	ctx := context.Background()
	m := e.Begin(ctx, engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), HELO: "mail.example.org",
		MailFrom: "alice@example.org"})
	m.Header("From", " Alice <alice@example.org>")
	m.Header("Subject", " hello")
	m.EndOfHeaders()
	m.Body([]byte("Hello, Bob.\r\n"))
	r := m.Finish(ctx)
	fmt.Println(r.SPF.Status, r.DMARC.Status, r.AuthorDomains)
	// authres.Format("mx.example.net", resultheader.AuthResults(r)) is the field.
	for _, ar := range resultheader.AuthResults(r) {
		fmt.Println(ar.Method + "=" + ar.Value)
	}
	// Output:
	// pass pass [example.org]
	// spf=pass
	// spf=pass
	// dkim=none
	// arc=none
	// dmarc=pass
}
