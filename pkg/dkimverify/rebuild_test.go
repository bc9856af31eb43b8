package dkimverify

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// milterFields turns a raw header block into (name, value) pairs as
// internal/milter hands them to a backend (Postfix's bare-"\n" folds made
// CRLF again there, see milter.FieldValue and its test): the value is
// everything after the colon, leading whitespace kept, folds as CRLF, no
// final line end.
func milterFields(t *testing.T, header []byte) [][2]string {
	t.Helper()
	var out [][2]string
	for _, f := range splitHeader(header) {
		value := strings.TrimSuffix(f.value, "\r\n")
		out = append(out, [2]string{f.name, value})
	}
	return out
}

// A c=simple header signature over fields with odd whitespace passes when
// the header block is rebuilt with AppendField from what the milter gets.
func TestSimpleHeaderRebuiltFromMilterFields(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	header, body := splitMessage(t, readFile(t, "simple-odd-whitespace.eml"))
	for _, want := range []string{"X-No-Space:value\r\n", "X-Tab:\tvalue", "X-Two-Spaces:  two spaces  \r\n", "\r\n\tsecond line", "\r\n   third line"} {
		if !bytes.Contains(header, []byte(want)) {
			t.Fatalf("fixture lacks %q", want)
		}
	}

	fields := milterFields(t, header)
	var rebuilt []byte
	for _, f := range fields {
		rebuilt = headerblock.Append(rebuilt, f[0], f[1])
	}
	rebuilt = append(rebuilt, '\r', '\n')
	if !bytes.Equal(rebuilt, header) {
		t.Fatalf("rebuilt header differs:\n%q\nwant\n%q", rebuilt, header)
	}
	v := Start(context.Background(), r, rebuilt, nil)
	_, _ = v.Write(body)
	check(t, v.Results(), []want{{status: StatusPass, alg: "rsa-sha256"}})

	// The same fields rebuilt the naive way ("Name: " + trimmed value) must
	// fail: this is what the leading-space option and headerblock prevent.
	var naive []byte
	for _, f := range fields {
		naive = append(naive, f[0]+": "+strings.TrimSpace(f[1])+"\r\n"...)
	}
	naive = append(naive, '\r', '\n')
	v = Start(context.Background(), r, naive, nil)
	_, _ = v.Write(body)
	check(t, v.Results(), []want{{status: StatusFail, reason: "signature mismatch"}})
}
