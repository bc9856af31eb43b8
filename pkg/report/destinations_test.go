package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
)

const destZone = `
$TTL 300
_dmarc.example.com.            IN TXT "v=DMARC1; p=reject; rua=mailto:d@example.com"
_dmarc.blue.example.com.       IN TXT "v=DMARC1; p=none"
_dmarc.red.example.net.        IN TXT "v=DMARC1; p=none"
_dmarc.example.net.            IN TXT "v=DMARC1; p=none"
_dmarc.example.org.            IN TXT "v=DMARC1; p=none"
_dmarc.bad.example.          IN TXT "v=DMARC1; p=none"
_dmarc.hijack.example.         IN TXT "v=DMARC1; p=none"
_dmarc.partner.example.        IN TXT "v=DMARC1; p=none"
; red.example.net accepts reports for blue.example.com (RFC 9990 §4 example)
blue.example.com._report._dmarc.red.example.net. IN TXT "v=DMARC1"
; a trailing ";" is optional (§4 step 6). (dnstest serves no wildcards, so the
; "*._report._dmarc" form of §4 is not exercised here: it is the DNS server's job.)
blue.example.com._report._dmarc.example.org. IN TXT "v=DMARC1;"
; not a verification record: v=DMARC1 must come first
blue.example.com._report._dmarc.bad.example. IN TXT "p=none; v=DMARC1"
; an override to the same host (allowed) and to another host (forbidden)
blue.example.com._report._dmarc.partner.example. IN TXT "v=DMARC1; rua=mailto:inbox@partner.example!5m"
blue.example.com._report._dmarc.hijack.example. IN TXT "v=DMARC1; rua=mailto:victim@elsewhere.example"
`

func newResolver(t *testing.T, srv *dnstest.Server) *resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDestinations(t *testing.T) {
	srv := dnstest.New(t, destZone)
	srv.Fail("blue.example.com._report._dmarc.down.example.", dns.RcodeServerFailure)
	r := newResolver(t, srv)
	tests := []struct {
		name, uri string
		want      string // "ok:ADDRESS[:size]" or the sentinel error
	}{
		{"same org domain", "mailto:dmarc@reports.example.com", "ok:dmarc@reports.example.com"},
		{"size limit kept", "mailto:dmarc@example.com!10m", "ok:dmarc@example.com:10485760"},
		{"percent-encoded, query ignored", "mailto:dm%61rc@EXAMPLE.com?subject=x", "ok:dmarc@example.com"},
		{"external, authorized", "mailto:rua@red.example.net", "ok:rua@red.example.net"},
		{"external, authorized, trailing semicolon", "mailto:any@example.org", "ok:any@example.org"},
		{"external, no record", "mailto:rua@example.net", "not authorized"},
		{"external, record not v=DMARC1 first", "mailto:rua@bad.example", "not authorized"},
		{"external, override same host", "mailto:rua@partner.example", "ok:inbox@partner.example:5242880"},
		{"external, override other host", "mailto:rua@hijack.example", "not authorized"},
		{"external, DNS temperror", "mailto:rua@down.example", "temporary"},
		{"mailto:0", "mailto:0", "invalid"},
		{"no scheme", "dmarc@example.com", "invalid"},
		{"two mailboxes", "mailto:a@example.com%2Cb@example.com", "invalid"},
		{"bad size", "mailto:d@example.com!10x", "invalid"},
		{"https", "https://example.com/dmarc", "unsupported"},
		// Quoted local parts keep their quotes on the envelope; nothing
		// may end the path early or add a parameter (issue 16).
		{"quoted local part", "mailto:%22john%20doe%22@example.com", `ok:"john doe"@example.com`},
		{"quoted dot-string", "mailto:%22dmarc%22@example.com", "ok:dmarc@example.com"},
		{"quoted, two dots", "mailto:%22a..b%22@example.com", `ok:"a..b"@example.com`},
		{"parameter injection", "mailto:%22a%3E%20NOTIFY%3DSUCCESS%22@example.com", "invalid"},
		{"angle bracket", "mailto:%22x%3Cy%22@example.com", "invalid"},
		{"unquoted angle bracket", "mailto:a%3E@example.com", "invalid"},
		{"quoted-pair", "mailto:%22a%5C%22b%22@example.com", "invalid"},
		{"non-ASCII local part", "mailto:%C3%A9@example.com", "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := URI{Address: tt.uri}
			if i := strings.IndexByte(tt.uri, '!'); i >= 0 {
				u = URI{Address: tt.uri[:i], MaxSize: tt.uri[i+1:]}
			}
			p := PolicyPublished{Domain: "blue.example.com", DiscoveryMethod: "treewalk", RUA: []URI{u}}
			if strings.Contains(tt.uri, "example.com") && !strings.Contains(tt.uri, "blue") {
				p.Domain = "example.com"
			}
			ds := Destinations(context.Background(), r, p)
			if len(ds) != 1 {
				t.Fatalf("got %d destinations: %+v", len(ds), ds)
			}
			d := ds[0]
			got := ""
			switch {
			case d.Err == nil && d.MaxSize > 0:
				got = fmt.Sprintf("ok:%s:%d", d.Address, d.MaxSize)
			case d.Err == nil:
				got = "ok:" + d.Address
			case errors.Is(d.Err, ErrNotAuthorized):
				got = "not authorized"
			case errors.Is(d.Err, ErrTemporary):
				got = "temporary"
			case errors.Is(d.Err, ErrInvalidURI):
				got = "invalid"
			case errors.Is(d.Err, ErrUnsupportedScheme):
				got = "unsupported"
			}
			if got != tt.want {
				t.Errorf("Destinations(%s) = %q (%v), want %q", tt.uri, got, d.Err, tt.want)
			}
		})
	}
}

// TestDestinationsKeepOrder: every URI is checked in published order (RFC
// 9990 §3.5), bad ones are reported in place and do not hide the others.
func TestDestinationsKeepOrder(t *testing.T) {
	r := newResolver(t, dnstest.New(t, destZone))
	p := PolicyPublished{Domain: "blue.example.com", RUA: []URI{
		{Address: "mailto:0"}, {Address: "mailto:a@blue.example.com"}, {Address: "ftp://x"}, {Address: "mailto:b@red.example.net"}}}
	ds := Destinations(context.Background(), r, p)
	var got []string
	for _, d := range ds {
		if d.Err != nil {
			got = append(got, "err")
		} else {
			got = append(got, d.Address)
		}
	}
	if strings.Join(got, " ") != "err a@blue.example.com err b@red.example.net" {
		t.Errorf("destinations = %v", got)
	}
}

// TestDestinationsDNSDown: with no DNS at all every checked URI is a
// temporary failure, never a verdict that would drop the report.
func TestDestinationsDNSDown(t *testing.T) {
	srv := dnstest.New(t, destZone)
	r := newResolver(t, srv)
	srv.Stop()
	ds := Destinations(context.Background(), r, PolicyPublished{Domain: "blue.example.com",
		RUA: []URI{{Address: "mailto:a@blue.example.com"}, {Address: "mailto:b@red.example.net"}}})
	for _, d := range ds {
		if !errors.Is(d.Err, ErrTemporary) {
			t.Errorf("%s: %v, want ErrTemporary", d.URI.Address, d.Err)
		}
	}
}
