package dkimverify

import (
	"bytes"
	"hash"
	"strings"
)

// The reference implementations the fast paths are tested against; only the
// tests use them.

// field is one header field as found in the header block: its name (trimmed)
// and its raw value (everything after the first colon, folds included).
type field struct {
	name  string
	value string
}

// splitHeader cuts a header block into fields (continuation lines start
// with SP or HTAB, RFC 5322 §2.2.3); it stops at the first empty line. It is
// the reference the faster signatureValues and headerFields are tested
// against: the n-th DKIM-Signature value is the n-th signature field.
func splitHeader(h []byte) []field {
	var fields []field
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i+1], h[i+1:]
		} else {
			h = nil
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].value += string(line)
			continue
		}
		name, value, _ := strings.Cut(string(line), ":")
		fields = append(fields, field{name: strings.TrimSpace(name), value: value})
	}
	return fields
}

func newBodyCanon(h hash.Hash, relaxed bool) *bodyCanon {
	return &bodyCanon{h: h, relaxed: relaxed}
}
