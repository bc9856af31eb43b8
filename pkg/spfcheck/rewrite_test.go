package spfcheck

import (
	"context"
	"net"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
)

// TestRewriteRecord: what the library is given instead of a record it would
// misread. RFC 7208 §7.1: a domain-spec may hold any visible character but
// "%", "/" included; §5.3, §5.4: only a trailing "/digits" or "//digits"
// after a: or mx: is a CIDR length; §7.3: %{p} with its transformers.
func TestRewriteRecord(t *testing.T) {
	const p = "mx.e7.example.com"
	m := slashMark
	tests := []struct {
		in, want string
		lookups  int // of the validated name: once per record at most
	}{
		{"v=spf1 a:foo:bar/baz.example.com -all", "v=spf1 a:foo:bar" + m + "baz.example.com -all", 0},
		{"v=spf1 mx:foo:bar/baz.example.com", "v=spf1 mx:foo:bar" + m + "baz.example.com", 0},
		{"v=spf1 -a:x/y.example.com/24//64", "v=spf1 -a:x" + m + "y.example.com/24//64", 0},
		{"v=spf1 ~mx:x/y.example.com//64", "v=spf1 ~mx:x" + m + "y.example.com//64", 0},
		{"v=spf1 a:foo.example.com/24 a/24 mx//64 ip4:192.0.2.0/24 ip6:2001:db8::/32", "v=spf1 a:foo.example.com/24 a/24 mx//64 ip4:192.0.2.0/24 ip6:2001:db8::/32", 0},
		{"v=spf1 include:a/b.example.com exists:c/d.example.com ptr:e/f.example.com redirect=g/h.example.com",
			"v=spf1 include:a" + m + "b.example.com exists:c" + m + "d.example.com ptr:e/f.example.com redirect=g" + m + "h.example.com", 0},
		{"v=spf1 exists:%{p}.should.example.com ~exists:%{p}.ok.example.com",
			"v=spf1 exists:" + p + ".should.example.com ~exists:" + p + ".ok.example.com", 1},
		{"v=spf1 exists:%{p2}.x.example", "v=spf1 exists:example.com.x.example", 1},
		{"v=spf1 exists:%{pr}.x.example", "v=spf1 exists:com.example.e7.mx.x.example", 1},
		{"v=spf1 exists:%{p2r}.x.example", "v=spf1 exists:e7.mx.x.example", 1},
		{"v=spf1 exists:%{p1r-}.x.example", "v=spf1 exists:mx.e7.example.com.x.example", 1}, // no "-" in p: one part
		{"v=spf1 a:%{P}.%{d}.%{ir}.x.example", "v=spf1 a:" + p + ".%{d}.%{ir}.x.example", 1},
		{"v=spf1 exists:%%{p}.x.example -all exp=%{p}.example.com", "v=spf1 exists:%%{p}.x.example -all exp=%{p}.example.com", 0},
		{"v=spf1  a:x/y.example.com  ", "v=spf1  a:x" + m + "y.example.com  ", 0},
	}
	for _, tt := range tests {
		calls := 0
		got := rewriteRecord(tt.in, "e7.example.com", func() string { calls++; return p })
		if got != tt.want {
			t.Errorf("rewriteRecord(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
		if calls != tt.lookups {
			t.Errorf("rewriteRecord(%q) looked the validated name up %d times", tt.in, calls)
		}
		if CheckRecordSyntax(tt.in) != nil {
			t.Errorf("test record %q is not valid", tt.in)
		}
	}
}

// TestValidatedName: the value of %{p} (RFC 7208 §7.3 with the validation of
// §5.5), through a real DNS server: PTR names whose addresses include the
// client, the <domain> itself first, then a subdomain of it, then any;
// "unknown" without one or on a DNS error.
func TestValidatedName(t *testing.T) {
	v6PTR, err := dns.ReverseAddr("2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.New(t, `
42.2.0.192.in-addr.arpa. 300 IN PTR mx.example.com.
42.2.0.192.in-addr.arpa. 300 IN PTR mx.e7.example.com.
42.2.0.192.in-addr.arpa. 300 IN PTR e7.example.com.
mx.example.com.          300 IN A 192.0.2.42
mx.e7.example.com.       300 IN A 192.0.2.42
e7.example.com.          300 IN A 192.0.2.1
43.2.0.192.in-addr.arpa. 300 IN PTR forged.example.com.
forged.example.com.      300 IN A 192.0.2.99
44.2.0.192.in-addr.arpa. 300 IN PTR odd\047name.example.com.
44.2.0.192.in-addr.arpa. 300 IN PTR ok.example.net.
odd\047name.example.com. 300 IN A 192.0.2.44
ok.example.net.          300 IN A 192.0.2.44
`+v6PTR+` 300 IN PTR v6.example.com.
v6.example.com.          300 IN AAAA 2001:db8::1
`)
	srv.Fail("45.2.0.192.in-addr.arpa", dns.RcodeServerFailure)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ ip, domain, want string }{
		{"192.0.2.42", "e7.example.com", "mx.e7.example.com"}, // subdomain of <domain> (e7 itself does not validate)
		{"192.0.2.42", "mx.example.com", "mx.example.com"},    // <domain> itself
		{"192.0.2.42", "other.example", "mx.example.com"},     // any: the first
		{"192.0.2.43", "example.com", "unknown"},              // PTR does not resolve back
		{"192.0.2.44", "example.com", "ok.example.net"},       // a name with "/" (\047, decimal) is skipped
		{"192.0.2.45", "example.com", "unknown"},              // SERVFAIL
		{"192.0.2.46", "example.com", "unknown"},              // no PTR
		{"2001:db8::1", "example.com", "v6.example.com"},
	}
	for _, tt := range tests {
		ip := net.ParseIP(tt.ip)
		if got := pickValidated(validatedNames(context.Background(), r, ip), tt.domain); got != tt.want {
			t.Errorf("%%{p} of %s for %s = %q, want %q", tt.ip, tt.domain, got, tt.want)
		}
	}
}

// FuzzRewriteRecord: for any record that passes the syntax check, the
// rewrite never panics, asks for the validated name at most once, and
// without a %{p} macro only marks slashes: unmarking gives the record back.
func FuzzRewriteRecord(f *testing.F) {
	for _, s := range []string{"v=spf1 a:foo:bar/baz.example.com/24//64 -all", "v=spf1 exists:%{p2r-}.%{d}.x.example",
		"v=spf1 include:a/b.example.com redirect=%{P}/x.example", "v=spf1 mx/24 ip4:192.0.2.0/24 exp=%{p}.x.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		if CheckRecordSyntax(rec) != nil {
			return
		}
		calls := 0
		got := rewriteRecord(rec, "example.com", func() string { calls++; return "mx.example.com" })
		if calls > 1 {
			t.Fatalf("%q: validated name asked %d times", rec, calls)
		}
		if calls == 0 && unmark(got) != rec {
			t.Fatalf("%q rewritten to %q", rec, got)
		}
	})
}
