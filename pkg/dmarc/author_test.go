package dmarc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestAuthorDomains(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []string
		err    error
	}{
		{"plain", []string{"user@example.com"}, []string{"example.com"}, nil},
		{"leading space as Postfix sends it", []string{" user@Example.COM"}, []string{"example.com"}, nil},
		{"display name", []string{` "Jane Doe" <jane@example.org>`}, []string{"example.org"}, nil},
		{"folded with bare LF", []string{" Jane Doe\n\t<jane@example.org>"}, []string{"example.org"}, nil},
		{"folded with CRLF", []string{" Jane Doe\r\n <jane@example.org>"}, []string{"example.org"}, nil},
		{"comment after address", []string{"john@example.com (John)"}, []string{"example.com"}, nil},
		{"comments everywhere (lenient path)", []string{`(c1) "q" (c2) <a@EXAMPLE.com> (c3)`}, []string{"example.com"}, nil},
		{"comment holding an address is not an author", []string{"(ceo@bank.example) <x@attacker.example>"}, []string{"attacker.example"}, nil},
		{"quoted local part with @", []string{`"a@b.example"@example.com`}, []string{"example.com"}, nil},
		{"encoded word display name with address", []string{"=?utf-8?q?ceo=40bank.example?= <evil@attacker.example>"}, []string{"attacker.example"}, nil},
		{"encoded word, unknown charset", []string{"=?x-unknown?q?ceo?= <evil@attacker.example>"}, []string{"attacker.example"}, nil},
		{"encoded word base64", []string{"=?UTF-8?B?SsO2cmc=?= <j@example.de>"}, []string{"example.de"}, nil},
		{"group", []string{"Friends: a@x.example, \"b c\" <b@y.example>;"}, []string{"x.example", "y.example"}, nil},
		{"empty group", []string{"undisclosed-recipients:;"}, nil, ErrNoAuthorDomain},
		{"several addresses, one domain", []string{"a@example.com, b@EXAMPLE.com"}, []string{"example.com"}, nil},
		{"several addresses, two domains", []string{"a@example.com, b@example.net"}, []string{"example.com", "example.net"}, nil},
		{"several From fields", []string{"a@example.com", " b@example.net", "c@example.com"}, []string{"example.com", "example.net"}, nil},
		{"IDN U-label", []string{"Jörg <user@Bücher.example>"}, []string{"xn--bcher-kva.example"}, nil},
		{"IDN already A-label", []string{"user@xn--bcher-kva.example"}, []string{"xn--bcher-kva.example"}, nil},
		{"trailing dot (lenient path)", []string{"a@example.com."}, []string{"example.com"}, nil},
		{"at sign in unquoted display name (lenient)", []string{"John@Doe <john@example.com>"}, []string{"doe", "example.com"}, nil},
		{"unbalanced angle (lenient)", []string{`"Bank" <a@bank.example>, <b@evil.example`}, []string{"bank.example", "evil.example"}, nil},
		{"no From", nil, nil, ErrNoFrom},
		{"empty value", []string{"  "}, nil, ErrNoFrom},
		{"garbage", []string{"hello world"}, nil, ErrNoAuthorDomain},
		{"no domain", []string{"user@"}, nil, ErrNoAuthorDomain},
		{"domain literal", []string{"<john@[192.0.2.1]>"}, nil, ErrInvalidDomain},
		{"bad character in domain", []string{"a@exa$mple.com"}, nil, ErrInvalidDomain},
		{"empty label", []string{"a@example..com"}, nil, ErrInvalidDomain},
		{"label too long", []string{"a@" + strings.Repeat("x", 64) + ".example"}, nil, ErrInvalidDomain},
		{"latin-1 byte, not UTF-8", []string{"a@b\xfccher.example"}, nil, ErrInvalidDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AuthorDomains(tt.values)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("AuthorDomains(%q) = %q, %v; want error %v", tt.values, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AuthorDomains(%q): %v", tt.values, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AuthorDomains(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
}
