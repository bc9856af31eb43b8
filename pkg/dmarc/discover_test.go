package dmarc

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
)

// newDNS starts a test DNS server with zone and returns it with an uncached
// resolver pointed at it, so every lookup is one query on the wire.
func newDNS(t testing.TB, zone string) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	srv := dnstest.New(t, zone)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

func dmarcNames(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "_dmarc." + n
	}
	return out
}

// TestDiscoverTreeWalk runs policy discovery (RFC 9989 §4.10, §4.10.1) on
// the examples of RFC 9989 Appendix B.4 and the psd / limit / duplicate rules.
func TestDiscoverTreeWalk(t *testing.T) {
	tests := []struct {
		name      string
		zone      string
		author    string
		policyDom string
		org       string
		published Policy
		queries   []string
		skipped   []string
		err       error
	}{
		{
			// §4.10.1: the author's own record settles the policy; the
			// Organizational Domain is left to alignment, which asks for it
			// only when an identifier needs it.
			name: "B.4.1 simple: record at the author domain, nothing above asked",
			zone: `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.signing.example.com. 300 IN TXT "v=DMARC1; p=none"`,
			author: "example.com", policyDom: "example.com", org: "", published: "reject",
			queries: dmarcNames("example.com"),
		},
		{
			name: "B.4.2 deep tree walk: 13 labels cut to 7, 8 queries",
			zone: `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=quarantine; sp=reject"
_dmarc.signing.example.com. 300 IN TXT "v=DMARC1; p=none"`,
			author: "a.b.c.d.e.f.g.h.i.j.k.example.com", policyDom: "example.com", org: "example.com", published: "reject",
			queries: dmarcNames("a.b.c.d.e.f.g.h.i.j.k.example.com", "g.h.i.j.k.example.com", "h.i.j.k.example.com",
				"i.j.k.example.com", "j.k.example.com", "k.example.com", "example.com", "com"),
		},
		{
			name: "B.4.3 PSD record: walk stops at psd=y, author record applies",
			zone: `_dmarc.bank.example. 300 IN TXT "v=DMARC1; p=reject; psd=y"
_dmarc.giant.bank.example. 300 IN TXT "v=DMARC1; p=quarantine"`,
			author: "giant.bank.example", policyDom: "giant.bank.example", org: "", published: "quarantine",
			queries: dmarcNames("giant.bank.example"),
		},
		{
			name: "PSD policy applies when the org domain has no record",
			zone: `_dmarc.bank.example. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine; psd=y"
mail.mega.bank.example. 300 IN A 192.0.2.1`,
			author: "mail.mega.bank.example", policyDom: "bank.example", org: "mega.bank.example", published: "quarantine",
			queries: dmarcNames("mail.mega.bank.example", "mega.bank.example", "bank.example"),
		},
		{
			name:   "author record with psd=n: it is the org domain, one query",
			zone:   `_dmarc.mail.example.com. 300 IN TXT "v=DMARC1; p=reject; psd=n"`,
			author: "mail.example.com", policyDom: "mail.example.com", org: "mail.example.com", published: "reject",
			queries: dmarcNames("mail.example.com"),
		},
		{
			name: "psd=n stops the walk and is the org domain",
			zone: `_dmarc.mail.example.com. 300 IN TXT "v=DMARC1; p=none; sp=quarantine; psd=n"
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`,
			author: "a.mail.example.com", policyDom: "mail.example.com", org: "mail.example.com", published: "quarantine",
			queries: dmarcNames("a.mail.example.com", "mail.example.com"),
		},
		{
			name: "two records up the tree: fewest labels is org and policy domain",
			zone: `_dmarc.mail.example.com. 300 IN TXT "v=DMARC1; p=none"
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine"`,
			author: "a.mail.example.com", policyDom: "example.com", org: "example.com", published: "quarantine",
			queries: dmarcNames("a.mail.example.com", "mail.example.com", "example.com", "com"),
		},
		{
			name:   "only a psd=y record at the TLD: org is one label below",
			zone:   `_dmarc.com. 300 IN TXT "v=DMARC1; p=reject; psd=y"`,
			author: "a.mail.example.com", policyDom: "com", org: "example.com", published: "reject",
			queries: dmarcNames("a.mail.example.com", "mail.example.com", "example.com", "com"),
		},
		{
			name:    "9 labels: at most 8 queries, no record",
			zone:    `example.com. 300 IN A 192.0.2.1`,
			author:  "a.b.c.d.e.f.g.example.com",
			queries: dmarcNames("a.b.c.d.e.f.g.example.com", "c.d.e.f.g.example.com", "d.e.f.g.example.com", "e.f.g.example.com", "f.g.example.com", "g.example.com", "example.com", "com"),
			err:     ErrNoPolicy,
		},
		{
			name: "several DMARC records at a name: that name is ignored",
			zone: `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none"`,
			author:  "example.com",
			queries: dmarcNames("example.com", "com"),
			skipped: []string{"example.com"},
			err:     ErrNoPolicy,
		},
		{
			name: "several records at the author name: parent applies",
			zone: `_dmarc.sub.example.com. 300 IN TXT "v=DMARC1; p=none"
_dmarc.sub.example.com. 300 IN TXT "v=DMARC1; p=quarantine"
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`,
			author: "sub.example.com", policyDom: "example.com", org: "example.com", published: "reject",
			queries: dmarcNames("sub.example.com", "example.com", "com"),
			skipped: []string{"sub.example.com"},
		},
		{
			name: "non-DMARC TXT beside a DMARC one",
			zone: `_dmarc.example.net. 300 IN TXT "v=spf1 -all"
_dmarc.example.net. 300 IN TXT "hello"
_dmarc.example.net. 300 IN TXT "v=DMARC1; p=quarantine"`,
			author: "example.net", policyDom: "example.net", org: "", published: "quarantine",
			queries: dmarcNames("example.net"),
		},
		{
			name:   "record split into several character-strings",
			zone:   `_dmarc.example.org. 300 IN TXT "v=DMARC1; p=rej" "ect; rua=mailto:" "d@example.org"`,
			author: "example.org", policyDom: "example.org", org: "", published: "reject",
			queries: dmarcNames("example.org"),
		},
		{
			name:    "no record at all",
			zone:    `example.com. 300 IN A 192.0.2.1`,
			author:  "example.com",
			queries: dmarcNames("example.com", "com"),
			err:     ErrNoPolicy,
		},
		{
			name: "non-existent author domain: np applies",
			zone: `example.com. 300 IN A 192.0.2.1
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; sp=quarantine; np=reject"`,
			author: "nx.example.com", policyDom: "example.com", org: "example.com", published: "reject",
			queries: append(dmarcNames("nx.example.com", "example.com", "com"), "nx.example.com"),
		},
		{
			name: "existing author subdomain: sp applies, not np",
			zone: `example.com. 300 IN A 192.0.2.1
www.example.com. 300 IN A 192.0.2.2
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; sp=quarantine; np=reject"`,
			author: "www.example.com", policyDom: "example.com", org: "example.com", published: "quarantine",
			queries: append(dmarcNames("www.example.com", "example.com", "com"), "www.example.com"),
		},
		{
			name: "subdomain existing only as a parent of another name (RFC 8020): sp",
			zone: `example.com. 300 IN A 192.0.2.1
a.b.example.com. 300 IN A 192.0.2.2
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; sp=quarantine; np=reject"`,
			author: "b.example.com", policyDom: "example.com", org: "example.com", published: "quarantine",
			queries: append(dmarcNames("b.example.com", "example.com", "com"), "b.example.com"),
		},
		{
			name: "non-existent author without np: sp, no existence query",
			zone: `example.com. 300 IN A 192.0.2.1
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine"`,
			author: "nx.example.com", policyDom: "example.com", org: "example.com", published: "quarantine",
			queries: dmarcNames("nx.example.com", "example.com", "com"),
		},
		{
			name:   "uppercase author is normalised",
			zone:   `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`,
			author: "EXAMPLE.Com.", policyDom: "example.com", org: "", published: "reject",
			queries: dmarcNames("example.com"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, r := newDNS(t, tt.zone)
			d, err := Discover(context.Background(), r, tt.author, ModeRFC9989)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Discover error = %v, want %v", err, tt.err)
			}
			if d == nil {
				t.Fatal("nil Discovery")
			}
			if !reflect.DeepEqual(d.Queries, tt.queries) {
				t.Errorf("queries\n got %q\nwant %q", d.Queries, tt.queries)
			}
			if got := srv.Queries(); got != int64(len(tt.queries)) {
				t.Errorf("server saw %d queries, want %d", got, len(tt.queries))
			}
			if !reflect.DeepEqual(d.Skipped, tt.skipped) {
				t.Errorf("skipped %q, want %q", d.Skipped, tt.skipped)
			}
			if d.Method != MethodTreeWalk {
				t.Errorf("method %q", d.Method)
			}
			if tt.err != nil {
				return
			}
			if d.PolicyDomain != tt.policyDom || d.OrgDomain != tt.org || d.Published() != tt.published {
				t.Errorf("policy domain %q org %q published %q; want %q %q %q",
					d.PolicyDomain, d.OrgDomain, d.Published(), tt.policyDom, tt.org, tt.published)
			}
		})
	}
}

// TestOrgDomainTreeWalk: Organizational Domains of authenticated identifiers
// (RFC 9989 §4.10.2 and Appendix B.4).
func TestOrgDomainTreeWalk(t *testing.T) {
	_, r := newDNS(t, `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.signing.example.com. 300 IN TXT "v=DMARC1; p=none"
_dmarc.bank.example. 300 IN TXT "v=DMARC1; p=reject; psd=y"
_dmarc.giant.bank.example. 300 IN TXT "v=DMARC1; p=quarantine"
_dmarc.dept.example.com. 300 IN TXT "v=DMARC1; p=none; psd=n"
_dmarc.self.example. 300 IN TXT "v=DMARC1; p=none; psd=y"`)
	tests := []struct{ domain, want string }{
		{"signing.example.com", "example.com"},
		{"example.com", "example.com"},
		{"a.b.example.com", "example.com"},
		{"mail.giant.bank.example", "giant.bank.example"},
		{"mail.mega.bank.example", "mega.bank.example"},
		{"x.dept.example.com", "dept.example.com"},
		{"nothing.example.net", "nothing.example.net"}, // no record anywhere: the start itself
		{"self.example", "self.example"},               // psd=y at the start does not count (rule 2)
	}
	for _, tt := range tests {
		got, err := OrgDomain(context.Background(), r, tt.domain, ModeRFC9989)
		if err != nil || got != tt.want {
			t.Errorf("OrgDomain(%q) = %q, %v; want %q", tt.domain, got, err, tt.want)
		}
	}
}

func TestOrgDomainPSL(t *testing.T) {
	tests := []struct{ domain, want string }{
		{"a.b.example.com", "example.com"},
		{"MAIL.EXAMPLE.CO.UK", "example.co.uk"},
		{"example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk"},
		{"foo.blogspot.com", "blogspot.com"}, // private section ignored
		{"a.b.c.github.io", "github.io"},
		{"x.y.unlisted-tld", "y.unlisted-tld"},
		{"bücher.example.de", "example.de"},
	}
	for _, tt := range tests {
		// No DNS in PSL mode: a nil resolver must not be touched.
		got, err := OrgDomain(context.Background(), nil, tt.domain, ModeRFC7489)
		if err != nil || got != tt.want {
			t.Errorf("OrgDomain(%q, psl) = %q, %v; want %q", tt.domain, got, err, tt.want)
		}
	}
}

func TestDiscoverPSL(t *testing.T) {
	tests := []struct {
		name, zone, author, policyDom, org string
		queries                            []string
		err                                error
	}{
		{"author record", `_dmarc.mail.example.co.uk. 300 IN TXT "v=DMARC1; p=reject"`,
			"mail.example.co.uk", "mail.example.co.uk", "example.co.uk", dmarcNames("mail.example.co.uk"), nil},
		{"org fallback, intermediate names skipped", `_dmarc.example.co.uk. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.b.example.co.uk. 300 IN TXT "v=DMARC1; p=none"`,
			"a.b.example.co.uk", "example.co.uk", "example.co.uk", dmarcNames("a.b.example.co.uk", "example.co.uk"), nil},
		{"author is org: one query", `example.com. 300 IN A 192.0.2.1`,
			"example.com", "", "example.com", dmarcNames("example.com"), ErrNoPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := newDNS(t, tt.zone)
			d, err := Discover(context.Background(), r, tt.author, ModeRFC7489)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if d.Method != MethodPSL || d.PolicyDomain != tt.policyDom || d.OrgDomain != tt.org || !reflect.DeepEqual(d.Queries, tt.queries) {
				t.Errorf("got method %q policy %q org %q queries %q; want %q %q %q", d.Method, d.PolicyDomain, d.OrgDomain, d.Queries,
					tt.policyDom, tt.org, tt.queries)
			}
		})
	}
}

// TestDiscoverTempError: a DNS failure is temperror, never "no policy"
// (RFC 9989 §4.10.1).
func TestDiscoverTempError(t *testing.T) {
	zone := `example.com. 300 IN A 192.0.2.1
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; np=reject"`
	tests := []struct {
		name, author, fail string
		rcode              int
		keepsRecord        bool
	}{
		{"SERVFAIL at the author", "example.com", "_dmarc.example.com", dns.RcodeServerFailure, false},
		{"REFUSED at the author", "example.com", "_dmarc.example.com", dns.RcodeRefused, false},
		{"SERVFAIL up the tree", "a.b.example.com", "_dmarc.b.example.com", dns.RcodeServerFailure, false},
		{"SERVFAIL on the existence check", "nx.example.com", "nx.example.com", dns.RcodeServerFailure, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, r := newDNS(t, zone)
			srv.Fail(tt.fail, tt.rcode)
			d, err := Discover(context.Background(), r, tt.author, ModeRFC9989)
			if !errors.Is(err, ErrTemporary) {
				t.Fatalf("error %v, want ErrTemporary", err)
			}
			if errors.Is(err, ErrNoPolicy) {
				t.Fatal("temperror reported as no policy")
			}
			if (d.Record != nil) != tt.keepsRecord {
				t.Errorf("record kept = %v, want %v", d.Record != nil, tt.keepsRecord)
			}
		})
	}
	t.Run("DNS down", func(t *testing.T) {
		srv, r := newDNS(t, zone)
		srv.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a cancelled context must also be temperror, not "none"
		_, err := Discover(ctx, r, "example.com", ModeRFC9989)
		if !errors.Is(err, ErrTemporary) {
			t.Fatalf("error %v, want ErrTemporary", err)
		}
	})
}

func TestDiscoverInvalidAuthor(t *testing.T) {
	for _, a := range []string{"", "exa mple.com", "[192.0.2.1]", strings.Repeat("a.", 130) + "com"} {
		_, err := Discover(context.Background(), nil, a, ModeRFC9989)
		if !errors.Is(err, ErrInvalidDomain) {
			t.Errorf("Discover(%q) error %v, want ErrInvalidDomain", a, err)
		}
	}
}

func TestStartDiscovery(t *testing.T) {
	_, r := newDNS(t, `_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`)
	p := StartDiscovery(context.Background(), r, "example.com", ModeRFC9989)
	d, err := p.Wait(context.Background())
	if err != nil || d.PolicyDomain != "example.com" {
		t.Fatalf("Wait = %+v, %v", d, err)
	}
	// Waiting with an ended context on a discovery that never finishes.
	srv, r2 := newDNS(t, `example.com. 300 IN A 192.0.2.1`)
	srv.Drop("_dmarc.example.com")
	runCtx, stop := context.WithCancel(context.Background())
	slow := StartDiscovery(runCtx, r2, "example.com", ModeRFC9989)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := slow.Wait(ctx); !errors.Is(err, ErrTemporary) {
		t.Fatalf("Wait with cancelled ctx = %v, want ErrTemporary", err)
	}
	// Cancelling the discovery's own context ends it with a temperror.
	stop()
	if _, err := slow.Wait(context.Background()); !errors.Is(err, ErrTemporary) {
		t.Fatalf("cancelled discovery = %v, want ErrTemporary", err)
	}
}
