package dmarc

import (
	"io"
	"mime"
	"net/mail"
	"slices"
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

// netmailParser is Go's net/mail, the independent reader FuzzParseFrom
// compares with; encoded-words of unknown charsets pass undecoded.
var netmailParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// FuzzParseFrom: no input panics; a From we read gives normalised,
// distinct domains; and where Go's net/mail (an independent reader) also
// reads the value, it finds the same author domains. net/mail is stricter
// than RFC 5322 §4.4 in places (no CFWS inside a dot-atom, no obs-route),
// so a value only we read is fine; one we both read must agree.
func FuzzParseFrom(f *testing.F) {
	for _, s := range []string{
		` "Jane" <jane@Example.COM>`, "ceo@bank. example", "ceo@bank(x).example", "ceo @ bank.example",
		"<@relay.example:alice@example.org>", `"a@b"@example.com`, "a@x.example, b@y.example",
		"=?utf-8?q?ceo=40bank.example?= <evil@attacker.example>", "G: a@x.example;", "John@Doe <j@x.example>",
		"a@evil.example\v<b@bank.example>", "(c) <a@b.example> (d)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, from string) {
		got, err := ParseFrom([]string{from})
		if err != nil {
			if got.Fields != 0 || len(got.Domains) != 0 {
				t.Fatal("domains returned with an error")
			}
			return
		}
		if len(got.Domains) == 0 {
			t.Fatal("no domains and no error")
		}
		seen := map[string]bool{}
		for _, d := range got.All() {
			n, err := identity.ASCII(d)
			if err != nil || n != d || seen[d] {
				t.Fatalf("domain %q not normalised or repeated: %q, %v", d, n, err)
			}
			seen[d] = true
		}
		list, err := netmailParser.ParseList(unfold(from))
		if err != nil {
			return
		}
		var want []string
		wseen := map[string]bool{}
		for _, a := range list {
			at := strings.LastIndexByte(a.Address, '@')
			n, err := identity.ASCII(a.Address[at+1:])
			if err != nil {
				return // net/mail read a literal or a bad name: we fail or differ in wording only
			}
			if !wseen[n] {
				wseen[n] = true
				want = append(want, n)
			}
		}
		if !slices.Equal(got.Domains, want) {
			t.Fatalf("From %q: we read %q, net/mail reads %q", from, got.Domains, want)
		}
	})
}
