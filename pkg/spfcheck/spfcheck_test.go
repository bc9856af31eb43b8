package spfcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
)

func testZone() string {
	z := `
example.com.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
soft.example.com.     300 IN TXT "v=spf1 ~all"
neutral.example.com.  300 IN TXT "v=spf1 ?all"
mail.example.com.     300 IN A 192.0.2.10
mail.example.com.     300 IN TXT "v=spf1 a -all"
nospf.example.com.    300 IN TXT "google-site-verification=x"
multi.example.com.    300 IN TXT "v=spf1 -all"
multi.example.com.    300 IN TXT "v=spf1 +all"
inc.example.com.      300 IN TXT "v=spf1 include:servfail.example.com -all"
void.example.com.     300 IN TXT "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all"
syntax.example.com.   300 IN TXT "v=spf1 ip4:192.0.2.1 bogus -all"
synincl.example.com.  300 IN TXT "v=spf1 include:syntax.example.com -all"
slow.example.com.     300 IN TXT "v=spf1 a:drop.example.com -all"
split.example.com.    300 IN TXT "v=spf1 ip4:192.0.2.1" " -all"
`
	// limit0 includes limit1 … limit10: 11 DNS-querying terms (§4.6.4).
	for i := range 11 {
		z += fmt.Sprintf("limit%d.example.com. 300 IN TXT \"v=spf1 include:limit%d.example.com -all\"\n", i, i+1)
	}
	z += "limit11.example.com. 300 IN TXT \"v=spf1 +all\"\n"
	// ok0 … ok9: 10 terms, still fine.
	for i := range 9 {
		z += fmt.Sprintf("ok%d.example.com. 300 IN TXT \"v=spf1 include:ok%d.example.com -all\"\n", i, i+1)
	}
	z += "ok9.example.com. 300 IN TXT \"v=spf1 a:mail.example.com -all\"\n"
	return z
}

func setup(t *testing.T, cfg resolver.Config) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	srv := dnstest.New(t, testZone())
	srv.Fail("servfail.example.com", dns.RcodeServerFailure)
	srv.Drop("drop.example.com")
	cfg.Servers = []string{srv.Addr()}
	r, err := resolver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

func TestCheckMailFrom(t *testing.T) {
	_, r := setup(t, resolver.Config{Attempts: 1})
	tests := []struct {
		name, ip, helo, sender string
		result                 Status
		domain, identity       string
		reason                 string
		err                    error
	}{
		{"pass ip4", "192.0.2.5", "mail.example.com", "user@example.com", StatusPass, "example.com", "user@example.com", "matched ip", nil},
		{"pass ip6", "2001:db8::5", "mail.example.com", "user@example.com", StatusPass, "example.com", "user@example.com", "matched ip", nil},
		{"fail", "198.51.100.1", "mail.example.com", "user@example.com", StatusFail, "example.com", "user@example.com", "matched all", nil},
		{"softfail", "198.51.100.1", "x.example.net", "a@soft.example.com", StatusSoftFail, "soft.example.com", "a@soft.example.com", "matched all", nil},
		{"neutral", "198.51.100.1", "x.example.net", "a@neutral.example.com", StatusNeutral, "neutral.example.com", "a@neutral.example.com", "matched all", nil},
		{"brackets and case", "192.0.2.5", "mail.example.com", "<User@Example.COM>", StatusPass, "example.com", "User@Example.COM", "matched ip", nil},
		{"strings joined", "192.0.2.1", "h.example.net", "a@split.example.com", StatusPass, "split.example.com", "a@split.example.com", "matched ip", nil},
		// §2.4: null sender is checked as postmaster@<HELO>.
		{"null sender", "192.0.2.10", "mail.example.com", "", StatusPass, "mail.example.com", "postmaster@mail.example.com", "matched a", nil},
		{"null sender <>", "192.0.2.11", "mail.example.com", "<>", StatusFail, "mail.example.com", "postmaster@mail.example.com", "matched all", nil},
		{"null sender, HELO literal", "192.0.2.10", "[192.0.2.10]", "", StatusNone, "", "postmaster@[192.0.2.10]", "null sender and HELO is an address literal", ErrIPLiteral},
		{"null sender, no HELO", "192.0.2.10", "", "", StatusNone, "", "postmaster@", "empty domain", ErrInvalidDomain},
		// §4.3: empty local-part is postmaster; malformed domains give none.
		{"empty local-part", "192.0.2.5", "h.example.net", "@example.com", StatusPass, "example.com", "postmaster@example.com", "matched ip", nil},
		{"no at sign", "192.0.2.5", "h.example.net", "garbage", StatusNone, "", "garbage", "sender has no domain", ErrInvalidDomain},
		{"empty domain", "192.0.2.5", "h.example.net", "user@", StatusNone, "", "user@", "empty domain", ErrInvalidDomain},
		{"single label", "192.0.2.5", "h.example.net", "user@localhost", StatusNone, "localhost", "user@localhost", "domain is not fully qualified", ErrInvalidDomain},
		{"empty label", "192.0.2.5", "h.example.net", "user@a..example.com", StatusNone, "a..example.com", "user@a..example.com", "empty label in domain", ErrInvalidDomain},
		{"long label", "192.0.2.5", "h.example.net", "u@" + strings.Repeat("x", 64) + ".com", StatusNone, strings.Repeat("x", 64) + ".com", "u@" + strings.Repeat("x", 64) + ".com", "label longer than 63 octets", ErrInvalidDomain},
		{"no SPF record", "192.0.2.5", "h.example.net", "u@nospf.example.com", StatusNone, "nospf.example.com", "u@nospf.example.com", "no SPF record", nil},
		{"NXDOMAIN", "192.0.2.5", "h.example.net", "u@nxdomain.example.com", StatusNone, "nxdomain.example.com", "u@nxdomain.example.com", "no SPF record", nil},
		{"two records", "192.0.2.5", "h.example.net", "u@multi.example.com", StatusPermError, "multi.example.com", "u@multi.example.com", "multiple matching DNS records", nil},
		// §4.6: a syntax error anywhere is permerror, even after a match.
		{"syntax after match", "192.0.2.1", "h.example.net", "u@syntax.example.com", StatusPermError, "syntax.example.com", "u@syntax.example.com", "syntax error", ErrSyntax},
		{"syntax in include", "192.0.2.1", "h.example.net", "u@synincl.example.com", StatusPermError, "synincl.example.com", "u@synincl.example.com", "syntax error", ErrSyntax},
		// §4.6.4: 10 DNS-querying terms, 2 void lookups.
		{"10 lookups", "192.0.2.10", "h.example.net", "u@ok0.example.com", StatusPass, "ok0.example.com", "u@ok0.example.com", "matched a", nil},
		{"11 lookups", "192.0.2.10", "h.example.net", "u@limit0.example.com", StatusPermError, "limit0.example.com", "u@limit0.example.com", "lookup limit reached", nil},
		{"3 void lookups", "192.0.2.10", "h.example.net", "u@void.example.com", StatusPermError, "void.example.com", "u@void.example.com", "void lookup limit reached", nil},
		{"invalid IP", "", "h.example.net", "u@example.com", StatusPermError, "example.com", "u@example.com", "invalid client IP", ErrInvalidIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckMailFrom(context.Background(), r, net.ParseIP(tt.ip), tt.helo, tt.sender, nil)
			want := Result{Status: tt.result, Domain: tt.domain, Identity: tt.identity, Scope: ScopeMailFrom, Reason: tt.reason}
			if got.Status != want.Status || got.Domain != want.Domain || got.Identity != want.Identity ||
				got.Scope != want.Scope || got.Reason != want.Reason {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if tt.err != nil && !errors.Is(got.Err, tt.err) {
				t.Errorf("Err = %v, want %v", got.Err, tt.err)
			}
			if (got.Status == StatusPermError || got.Status == StatusTempError) && got.Err == nil {
				t.Errorf("%s without Err", got.Status)
			}
		})
	}
}

func TestCheckHELO(t *testing.T) {
	_, r := setup(t, resolver.Config{Attempts: 1})
	tests := []struct {
		helo, ip string
		result   Status
		domain   string
	}{
		{"mail.example.com", "192.0.2.10", StatusPass, "mail.example.com"},
		{"MAIL.example.com.", "192.0.2.10", StatusPass, "mail.example.com"},
		{"mail.example.com", "192.0.2.99", StatusFail, "mail.example.com"},
		{"[192.0.2.10]", "192.0.2.10", StatusNone, ""},
		{"[IPv6:2001:db8::1]", "2001:db8::1", StatusNone, ""},
		{"192.0.2.10", "192.0.2.10", StatusNone, ""},
		{"localhost", "192.0.2.10", StatusNone, "localhost"},
		{"", "192.0.2.10", StatusNone, ""},
		{"nospf.example.com", "192.0.2.10", StatusNone, "nospf.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.helo, func(t *testing.T) {
			got := CheckHELO(context.Background(), r, net.ParseIP(tt.ip), tt.helo, nil)
			if got.Status != tt.result || got.Domain != tt.domain || got.Scope != ScopeHELO ||
				got.Identity != "postmaster@"+tt.helo {
				t.Errorf("got %+v, want %s for domain %q", got, tt.result, tt.domain)
			}
		})
	}
}

// DNS trouble must give temperror, never permerror or none: the error
// from the resolver reaches the library unwrapped.
func TestTempError(t *testing.T) {
	t.Run("SERVFAIL in include", func(t *testing.T) {
		_, r := setup(t, resolver.Config{Attempts: 1})
		got := CheckMailFrom(context.Background(), r, net.ParseIP("192.0.2.1"), "h.example.net", "u@inc.example.com", nil)
		var de *net.DNSError
		if got.Status != StatusTempError || !errors.As(got.Err, &de) || !de.IsTemporary {
			t.Errorf("got %+v, want temperror with a temporary *net.DNSError", got)
		}
		if !errors.Is(got.Err, ErrTemporary) || got.Err.Error() != de.Error() {
			t.Errorf("err %v: want ErrTemporary, with the DNS error's text", got.Err)
		}
	})
	t.Run("server down", func(t *testing.T) {
		srv, r := setup(t, resolver.Config{Attempts: 2, Timeout: 200 * time.Millisecond})
		srv.Stop()
		for _, sender := range []string{"u@example.com", "u@nxdomain.example.com"} {
			got := CheckMailFrom(context.Background(), r, net.ParseIP("192.0.2.1"), "h.example.net", sender, &Options{Timeout: 5 * time.Second})
			if got.Status != StatusTempError || got.Err == nil {
				t.Errorf("%s: got %+v, want temperror", sender, got)
			}
			if !errors.Is(got.Err, ErrTemporary) {
				t.Errorf("%s: err %v is not ErrTemporary", sender, got.Err)
			}
			// issue 19: the A-R comment says what happened, without socket addresses.
			if !strings.HasPrefix(got.Reason, "DNS ") || strings.Contains(got.Reason, "127.0.0.1") || strings.Contains(got.Reason, "udp") {
				t.Errorf("%s: reason %q", sender, got.Reason)
			}
		}
	})
	t.Run("budget", func(t *testing.T) {
		// The resolver would wait 10 s for the dropped name; the check's
		// budget ends first and the result is temperror.
		_, r := setup(t, resolver.Config{Attempts: 1, Timeout: 10 * time.Second})
		got := CheckMailFrom(context.Background(), r, net.ParseIP("192.0.2.1"), "h.example.net", "u@slow.example.com", &Options{Timeout: 300 * time.Millisecond})
		if got.Status != StatusTempError || got.Err == nil {
			t.Errorf("got %+v, want temperror", got)
		}
		if !strings.HasPrefix(got.Reason, "DNS timeout") {
			t.Errorf("reason %q, want DNS timeout", got.Reason)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		_, r := setup(t, resolver.Config{Attempts: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got := CheckMailFrom(ctx, r, net.ParseIP("192.0.2.1"), "h.example.net", "u@example.com", nil)
		if got.Status != StatusTempError {
			t.Errorf("got %+v, want temperror", got)
		}
	})
}

func TestCheckRecordSyntax(t *testing.T) {
	tests := []struct {
		record string
		ok     bool
	}{
		{"v=spf1", true},
		{"V=SPF1 -ALL", true},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx ptr ~all", true},
		{"v=spf1  a  -all ", true},
		{"v=spf1 a:mail.example.com/24//64 mx:example.com//128 a/0", true},
		{"v=spf1 include:_spf.example.com exists:%{i}.%{l1r+-}._spf.%{d} -all", true},
		{"v=spf1 redirect=_spf.example.com", true},
		{"v=spf1 -all exp=explain.%{d}", true},
		{"v=spf1 a:%{d}", true},
		{"v=spf1 a:foo%%.example.com a:x%_y.example.com", true},
		{"v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", true},
		{"v=spf1 a:example.123-45", true},
		{"v=spf1 a:example.com.", true},
		{"v=spf2 -all", false},
		{"v=spf1 bogus", false},
		{"v=spf1 -all.", false},
		{"v=spf1 -all:foo", false},
		{"v=spf1 ip4:1.2.3.4/032", false},
		{"v=spf1 ip4:1.2.3.4/33", false},
		{"v=spf1 ip4:01.2.3.4", false},
		{"v=spf1 ip4:1.2.3", false},
		{"v=spf1 ip6:1.2.3.4", false},
		{"v=spf1 ip6:2001:db8::/129", false},
		{"v=spf1 a//129", false},
		{"v=spf1 a:abc.123", false},
		{"v=spf1 a:example.com:8080", false},
		{"v=spf1 a:", false},
		{"v=spf1 mx:example.-com", false},
		{"v=spf1 ptr/0", false},
		{"v=spf1 ptr:", false},
		{"v=spf1 include", false},
		{"v=spf1 exists:%{x}.example.com", false},
		{"v=spf1 exists:%{d0}.example.com", false},
		{"v=spf1 exists:%{d}.example.com%", false},
		{"v=spf1 exists:%{d.example.com", false},
		{"v=spf1 -all exp=%{r}.example.com", false},
		{"v=spf1 exp=a.example.com exp=b.example.com", false},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", false},
		{"v=spf1 redirect=", false},
		{"v=spf1 redirect:example.com", false},
		{"v=spf1 a:ctrl.example.com\rptr -all", false},
		{"v=spf1 a:\u00e9.example.com", false},
		{"v=spf1 foo=%{q}", false},
	}
	for _, tt := range tests {
		err := CheckRecordSyntax(tt.record)
		if (err == nil) != tt.ok {
			t.Errorf("CheckRecordSyntax(%q) = %v, want ok=%v", tt.record, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("CheckRecordSyntax(%q) error %v does not wrap ErrSyntax", tt.record, err)
		}
	}
}

// FuzzCheckRecordSyntax: any input gives an answer, never a panic. The seeds
// run in plain go test.
func FuzzCheckRecordSyntax(f *testing.F) {
	for _, s := range []string{"v=spf1", "v=spf1 a:%{", "v=spf1 %", "v=spf1 a//", "v=spf1 ip6:", "v=spf1 =x", "v=spf1 exists:%{d}", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = CheckRecordSyntax(s)
	})
}
