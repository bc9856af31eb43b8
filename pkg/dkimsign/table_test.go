package dkimsign

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, domain string
		want            bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "mail.example.com", false},
		{"example.com", "badexample.com", false},
		{".example.com", "example.com", true},
		{".example.com", "a.b.example.com", true},
		{".example.com", "badexample.com", false},
		{"*.example.com", "example.com", false},
		{"*.example.com", "mail.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "mail.example.org", false},
		{"*", "anything.test", true},
		{"mail*.example.com", "mail2.example.com", true},
		{"mail*.example.com", "web.example.com", false},
		{"**.example.com", "x.example.com", true},
		{"*.*.example.com", "a.b.example.com", true},
		{"*.*.example.com", "b.example.com", false},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pattern, tt.domain); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, tt.domain, got, tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	rsaFile := writeFile(t, dir, "rsa.pem", mustPKCS8(t, testRSA), 0o600)
	edFile := writeFile(t, dir, "ed.pem", mustPKCS8(t, testEd), 0o600)
	keys := []Key{
		{Name: "ex-rsa", Domain: "Example.COM", Selector: "r1", File: rsaFile},
		{Name: "ex-ed", Domain: "example.com", Selector: "e1", File: edFile},
		{Name: "any", Domain: FromDomain, Selector: "all", File: rsaFile},
		{Name: "idn", Domain: "bücher.example", Selector: "s", File: edFile},
	}
	rules := []SigningRule{
		{Pattern: "example.com", Keys: []string{"ex-rsa", "ex-ed"}},
		{Pattern: "*.example.com", Keys: []string{"ex-ed"}},
		{Pattern: "BÜCHER.example", Keys: []string{"idn"}},
		{Pattern: "*.test", Keys: []string{"any"}},
	}
	tab, err := NewTable(keys, rules)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from string
		want []string // "name d= s= alg"
	}{
		{"example.com", []string{"ex-rsa example.com r1 rsa", "ex-ed example.com e1 ed25519"}},
		{"EXAMPLE.com.", []string{"ex-rsa example.com r1 rsa", "ex-ed example.com e1 ed25519"}},
		{"news.example.com", []string{"ex-ed example.com e1 ed25519"}},
		{"bücher.example", []string{"idn xn--bcher-kva.example s ed25519"}},
		{"xn--bcher-kva.example", []string{"idn xn--bcher-kva.example s ed25519"}},
		{"Shop.Test", []string{"any shop.test all rsa"}},
		{"example.org", nil},
		{"", nil},
		{"[127.0.0.1]", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, k := range tab.Select(tt.from) {
			got = append(got, strings.Join([]string{k.Name, k.Domain, k.Selector, k.Algorithm}, " "))
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("Select(%q) = %q, want %q", tt.from, got, tt.want)
		}
	}
	// "%" keys are copied: the table itself keeps "%".
	if k := tab.Keys()[2]; k.Domain != FromDomain {
		t.Errorf("key table changed by Select: %+v", k.Key)
	}
	var nilTable *Table
	if nilTable.Select("example.com") != nil {
		t.Error("nil table selects keys")
	}
}

func TestTableErrors(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.pem", mustPKCS8(t, testEd), 0o600)
	open := writeFile(t, dir, "open.pem", mustPKCS8(t, testEd), 0o644)
	keys := []Key{
		{Name: "good", Domain: "example.com", Selector: "s1", File: good},
		{Name: "good", Domain: "example.com", Selector: "s2", File: good},
		{Name: "open", Domain: "example.com", Selector: "s3", File: open},
		{Name: "baddomain", Domain: "exa mple.com", Selector: "s", File: good},
		{Name: "badsel", Domain: "example.com", Selector: "-x", File: good},
		{Name: "", Domain: "example.com", Selector: "s", File: good},
		{Name: "nofile", Domain: "example.com", Selector: "s"},
	}
	rules := []SigningRule{
		{Pattern: "example.com", Keys: []string{"good", "open", "missing"}},
		{Pattern: "", Keys: []string{"good"}},
		{Pattern: "example.org"},
	}
	_, err := NewTable(keys, rules)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`key name "good" used twice`,
		open + " has mode 0644",
		`key 4 ("baddomain")`,
		`selector "-x"`,
		"key without a name",
		`key 7 ("nofile")`,
		`no key named "missing"`,
		"signing rule 2: ",
		`signing rule 3 ("example.org") names no key`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	// A bad key file is reported once, not again by the rule naming it.
	if strings.Contains(msg, `no key named "open"`) {
		t.Errorf("bad key reported twice:\n%s", msg)
	}
	if !errors.Is(err, ErrKeyPermissions) || !errors.Is(err, ErrTable) {
		t.Errorf("error does not wrap the sentinels: %v", err)
	}
	if _, err := os.Stat(good); err != nil {
		t.Fatal(err)
	}
}
