package milter

import (
	"strings"
	"testing"
)

// Postfix's wire form of a header value (SMFIP_HDR_LEADSPC: leading white
// space kept, folds as a bare "\n") becomes the backend's: folds as CRLF,
// everything else byte for byte.
func TestFieldValue(t *testing.T) {
	tests := []struct{ wire, want string }{
		{" hello", " hello"},
		{"value", "value"},
		{"\tv", "\tv"},
		{"  two  ", "  two  "},
		{" a\n\tb\n   c", " a\r\n\tb\r\n   c"},
		{" a\r\n b", " a\r\n b"}, // already CRLF: unchanged
		{"\n b", "\r\n b"},
		{" a\rb", " a\rb"}, // a lone CR is kept
		{"", ""},
	}
	for _, tt := range tests {
		if got := FieldValue(tt.wire); got != tt.want {
			t.Errorf("FieldValue(%q) = %q, want %q", tt.wire, got, tt.want)
		}
	}
}

// FieldValue leaves no bare "\n" and adds nothing but the CRs before them.
func FuzzFieldValue(f *testing.F) {
	for _, s := range []string{" a\n\tb", " a\r\n b", "\n", "\r\r\n\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, wire string) {
		got := FieldValue(wire)
		for i := 0; i < len(got); i++ {
			if got[i] == '\n' && (i == 0 || got[i-1] != '\r') {
				t.Fatalf("%q: bare LF at %d in %q", wire, i, got)
			}
		}
		if strings.Count(got, "\r") != strings.Count(wire, "\r")+len(got)-len(wire) || len(got) < len(wire) {
			t.Fatalf("%q became %q", wire, got)
		}
		if FieldValue(got) != got {
			t.Fatalf("not idempotent: %q", got)
		}
	})
}
