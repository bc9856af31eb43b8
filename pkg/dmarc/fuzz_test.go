package dmarc

import (
	"strings"
	"testing"

	"github.com/authmilter/authmilter/pkg/identity"
)

// FuzzParseRecord: no input panics, and a parsed record always holds values
// from the RFC 9989 §4.8 value sets. Seeds: testdata/fuzz/FuzzParseRecord.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=DMARC1; p=reject; sp=none; np=quarantine; psd=n; t=y; rua=mailto:a@example.com!10m,mailto:b@example.net")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err != nil {
			if IsDMARCRecord(txt) {
				t.Fatalf("ParseRecord failed on a DMARC record: %v", err)
			}
			return
		}
		if !IsDMARCRecord(txt) {
			t.Fatal("parsed a record IsDMARCRecord rejects")
		}
		for _, p := range []Policy{rec.Policy, rec.SubdomainPolicy, rec.NonexistentPolicy,
			rec.Applicable(false, false), rec.Applicable(true, false), rec.Applicable(true, true)} {
			if p != "" && p.rank() == 0 {
				t.Fatalf("bad policy %q", p)
			}
		}
		if !strings.ContainsRune("ynu", rune(rec.PSD)) || !strings.ContainsRune("rs", rune(rec.ADKIM)) ||
			!strings.ContainsRune("rs", rune(rec.ASPF)) || rec.Pct < -1 || rec.Pct > 100 || rec.Raw != txt {
			t.Fatalf("out-of-range values: %+v", rec)
		}
		for _, u := range append(rec.RUA, rec.RUF...) {
			if u.Address == "" || strings.ContainsAny(u.Address, "!,") {
				t.Fatalf("bad URI %+v", u)
			}
		}
	})
}

// FuzzAuthorDomains: no input panics; every domain returned is already
// normalised and non-empty. Seeds: testdata/fuzz/FuzzAuthorDomains.
func FuzzAuthorDomains(f *testing.F) {
	f.Add(` "Jane" <jane@Example.COM>`)
	f.Fuzz(func(t *testing.T, from string) {
		ds, err := AuthorDomains([]string{from})
		if err != nil {
			if len(ds) != 0 {
				t.Fatal("domains returned with an error")
			}
			return
		}
		if len(ds) == 0 {
			t.Fatal("no domains and no error")
		}
		for _, d := range ds {
			n, err := identity.ASCII(d)
			if err != nil || n != d {
				t.Fatalf("domain %q not normalised: %q, %v", d, n, err)
			}
		}
	})
}
