package dkimverify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// signatureValues must find the same DKIM-Signature values as splitHeader,
// the reference field splitter.
func signaturesBySplit(h []byte) []string {
	var out []string
	for _, f := range splitHeader(h) {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			out = append(out, f.value)
		}
	}
	return out
}

func TestSignatureValues(t *testing.T) {
	tests := []struct {
		name, header string
		want         []string
	}{
		{"none", "From: a@b\r\nTo: c@d\r\n\r\n", nil},
		{"one folded", "DKIM-Signature: v=1; d=a;\r\n\tb=xyz\r\nFrom: a\r\n\r\n", []string{" v=1; d=a;\r\n\tb=xyz\r\n"}},
		{"two, case and space before colon", "dkim-signature:v=1\r\nX: y\r\nDKIM-Signature : d=b\r\n  more\r\n\r\n",
			[]string{"v=1\r\n", " d=b\r\n  more\r\n"}},
		{"last field without CRLF", "From: a\r\nDKIM-Signature: d=c", []string{" d=c"}},
		{"stops at the empty line", "DKIM-Signature: d=a\r\n\r\nDKIM-Signature: d=body\r\n", []string{" d=a\r\n"}},
		{"continuation first", " folded\r\nDKIM-Signature: d=a\r\n", []string{" d=a\r\n"}},
		{"no colon", "DKIM-Signature\r\n\r\n", []string{""}},
		{"bare LF", "DKIM-Signature: d=a\n\tb=1\nFrom: x\n\n", []string{" d=a\n\tb=1\n"}},
		{"colon only in a continuation", "DKIM-Signature\r\n x:y\r\nDKIM-Signature: d=b\r\n\r\n", []string{" x:y\r\n", " d=b\r\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := signatureValues([]byte(tt.header))
			if !slices.Equal(got, tt.want) {
				t.Errorf("signatureValues = %q, want %q", got, tt.want)
			}
			if bySplit := signaturesBySplit([]byte(tt.header)); !slices.Equal(got, bySplit) {
				t.Errorf("signatureValues = %q, splitHeader finds %q", got, bySplit)
			}
			if err := checkHeaderFields([]byte(tt.header)); err != nil {
				t.Error(err)
			}
		})
	}
}

func FuzzSignatureValues(f *testing.F) {
	f.Add([]byte("DKIM-Signature: v=1; d=a;\r\n\tb=xyz\r\nFrom: a\r\n\r\n"))
	f.Add([]byte(" x\r\ndkim-signature:\n\n"))
	f.Fuzz(func(t *testing.T, h []byte) {
		if got, want := signatureValues(h), signaturesBySplit(h); !slices.Equal(got, want) {
			t.Fatalf("signatureValues = %q, splitHeader finds %q", got, want)
		}
		if err := checkHeaderFields(h); err != nil {
			t.Fatal(err)
		}
	})
}

// checkHeaderFields compares headerFields with splitHeader: the same fields,
// names, and each raw field ending in its value with every line ended by
// CRLF.
func checkHeaderFields(h []byte) error {
	got, want := headerFields(h), splitHeader(h)
	if len(got) != len(want) {
		return fmt.Errorf("headerFields finds %d fields, splitHeader %d", len(got), len(want))
	}
	for i := range got {
		var value strings.Builder
		for _, line := range strings.SplitAfter(want[i].value, "\n") {
			if line == "" {
				continue
			}
			value.WriteString(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
			value.WriteString("\r\n")
		}
		raw := string(got[i].raw)
		if got[i].name != want[i].name || !strings.HasSuffix(raw, value.String()) || !strings.HasSuffix(raw, "\r\n") {
			return fmt.Errorf("field %d: headerFields %q %q, splitHeader %q %q", i, got[i].name, raw, want[i].name, want[i].value)
		}
	}
	return nil
}
