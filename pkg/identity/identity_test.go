package identity

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseDomain(t *testing.T) {
	tests := []struct{ in, ascii, unicode string }{
		{"EXAMPLE.COM.", "example.com", "example.com"},
		{"Bücher.Example", "xn--bcher-kva.example", "bücher.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"},
		{"XN--BCHER-KVA.example.", "xn--bcher-kva.example", "bücher.example"},
		{"ＥＸＡＭＰＬＥ.com", "example.com", "example.com"}, // full-width mapped (UTS #46)
		{"_dmarc.example.com", "_dmarc.example.com", "_dmarc.example.com"},
		{"192.0.2.1", "", ""},
		{"[192.0.2.1]", "", ""},
		{"", "", ""},
		{".", "", ""},
		{"a..example", "", ""},
		{"a b.example", "", ""},
		{"a@example.com", "", ""},
		{"caf\xe9.example", "", ""}, // not UTF-8
	}
	for _, tt := range tests {
		d, err := ParseDomain(tt.in)
		if tt.ascii == "" {
			if err == nil || !errors.Is(err, ErrInvalidDomain) {
				t.Errorf("ParseDomain(%q) = %+v, %v; want ErrInvalidDomain", tt.in, d, err)
			}
			continue
		}
		if err != nil || d.ASCII != tt.ascii || d.Unicode != tt.unicode || d.String() != tt.ascii {
			t.Errorf("ParseDomain(%q) = %+v, %v; want %q, %q", tt.in, d, err, tt.ascii, tt.unicode)
		}
	}
}

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		in, local, domain string
		ok                bool
	}{
		{"a@example.com", "a", "example.com", true},
		{" <a@Example.COM> ", "a", "Example.COM", true},
		{`"x@y"@example.com`, `"x@y"`, "example.com", true},
		{"@example.com", "", "example.com", true},
		{"<>", "", "", false},
		{"postmaster", "postmaster", "", false},
	}
	for _, tt := range tests {
		l, d, ok := SplitAddress(tt.in)
		if l != tt.local || d != tt.domain || ok != tt.ok {
			t.Errorf("SplitAddress(%q) = %q, %q, %v", tt.in, l, d, ok)
		}
		if DomainOf(tt.in) != tt.domain {
			t.Errorf("DomainOf(%q) = %q", tt.in, DomainOf(tt.in))
		}
	}
}

// Bad input never panics, and what is accepted is already normal.
func FuzzParseDomain(f *testing.F) {
	for _, s := range []string{"example.com", "Bücher.example.", "xn--bcher-kva.example", "192.0.2.1", "a..b", "xn--", "_x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDomain(s)
		if err != nil {
			return
		}
		again, err := ParseDomain(d.ASCII)
		if err != nil || again.ASCII != d.ASCII {
			t.Errorf("%q: ASCII form %q does not parse to itself: %+v, %v", s, d.ASCII, again, err)
		}
	})
}

func ExampleParseDomain() {
	d, err := ParseDomain("Bücher.Example.")
	if err != nil {
		panic(err)
	}
	fmt.Println(d.ASCII)
	fmt.Println(d.Unicode)
	// Output:
	// xn--bcher-kva.example
	// bücher.example
}

func ExampleSplitAddress() {
	local, domain, ok := SplitAddress("<Jane@Bücher.example>")
	d, _ := ParseDomain(domain)
	fmt.Println(local, d.ASCII, ok)
	// Output: Jane xn--bcher-kva.example true
}

func TestUnescapeQuotedPairs(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, `plain`},
		{`a\"b`, `a"b`},
		{`a\\b`, `a\b`},
		{`\(x\)`, `(x)`},
		{`end\`, `end\`}, // a lone backslash at the end is kept
		{`\\\`, `\\`},
		{``, ``},
	}
	for _, tt := range tests {
		if got := UnescapeQuotedPairs(tt.in); got != tt.want {
			t.Errorf("UnescapeQuotedPairs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
