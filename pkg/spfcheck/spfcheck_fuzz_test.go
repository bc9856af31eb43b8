package spfcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
)

// zoneTXT writes s as a TXT rdata in master-file syntax: 255-byte
// character-strings, every byte that is not plain printable as \DDD.
func zoneTXT(s string) string {
	var b strings.Builder
	for len(s) > 0 || b.Len() == 0 {
		n := min(len(s), 255)
		b.WriteString(` "`)
		for i := 0; i < n; i++ {
			c := s[i]
			if c < ' ' || c > '~' || c == '"' || c == '\\' || c == ';' || c == '(' || c == ')' {
				fmt.Fprintf(&b, `\%03d`, c)
			} else {
				b.WriteByte(c)
			}
		}
		b.WriteString(`"`)
		s = s[n:]
		if len(s) == 0 {
			break
		}
	}
	return b.String()
}

const fuzzSPFZone = `
a.fuzz.test.     300 IN A 192.0.2.1
a.fuzz.test.     300 IN AAAA 2001:db8::1
mx.fuzz.test.    300 IN MX 10 a.fuzz.test.
inc.fuzz.test.   300 IN TXT "v=spf1 ip4:192.0.2.0/24 include:fuzz.test -all"
1.2.0.192.in-addr.arpa. 300 IN PTR a.fuzz.test.
`

// FuzzCheckRecord serves a fuzzed SPF record for fuzz.test from a real
// DNS server and checks MAIL FROM through the real resolver, its cache
// off. Whatever the record: a result from RFC 7208 §2.6, never the
// library's panic turned internal error, permerror for a selected record
// with a syntax error, and a bounded number of DNS queries (§4.6.4: 10
// terms, 10 names per mx/ptr, 2 void lookups; %{p} checks one PTR answer
// once per check). Seeds:
// testdata/fuzz/FuzzCheckRecord.
func FuzzCheckRecord(f *testing.F) {
	srv := dnstest.New(f, fuzzSPFZone)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Attempts: 1, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"v=spf1 a:a.fuzz.test -all", "v=spf1 mx ptr ~all", "v=spf1 include:inc.fuzz.test ?all",
		"v=spf1 exists:%{i}.%{h}.%{d} redirect=inc.fuzz.test", "v=spf1 ip4:192.0.2.1 bogus -all", "v=spf1 a:%{l}.x.fuzz.test a:%{o}.y.fuzz.test a:%{d}.z.fuzz.test -all",
		"v=spf1 a:b/c.fuzz.test/24 mx:x:y/z.fuzz.test//64 exists:%{p}.%{P2r}.fuzz.test include:%{p1}/q.fuzz.test -all"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, rec string, v4 bool) {
		if err := srv.SetZone(fuzzSPFZone + "fuzz.test. 300 IN TXT" + zoneTXT(rec) + "\n"); err != nil {
			return // not expressible in a zone file
		}
		ip := net.ParseIP("192.0.2.1")
		if !v4 {
			ip = net.ParseIP("2001:db8::1")
		}
		before := srv.Queries()
		o := CheckMailFrom(context.Background(), r, ip, "a.fuzz.test", "user@fuzz.test", nil)
		queries := srv.Queries() - before
		switch o.Status {
		case StatusNone, StatusNeutral, StatusPass, StatusFail, StatusSoftFail, StatusTempError, StatusPermError:
		default:
			t.Fatalf("result %q", o.Status)
		}
		if errors.Is(o.Err, ErrInternal) {
			t.Fatalf("library panic on %q: %v", rec, o.Err)
		}
		selected := strings.EqualFold(strings.SplitN(rec, " ", 2)[0], "v=spf1")
		if selected && CheckRecordSyntax(rec) != nil && o.Status != StatusPermError && o.Status != StatusTempError {
			t.Fatalf("record %q has a syntax error but gave %s (%s)", rec, o.Status, o.Reason)
		}
		// §4.6.4 plus one PTR answer's check for %{p} (1 + 10 names).
		if queries > 1+10*11+2+11 {
			t.Fatalf("%d DNS queries for %q", queries, rec)
		}
	})
}
