package dkimverify

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
)

// signatureValues returns the raw values of the DKIM-Signature fields of a
// header block, in order, cut as splitHeader cuts fields; other fields cost
// no allocation.
func signatureValues(h []byte) []string {
	var vals []string
	var cur []byte // the value being collected, nil outside a signature
	in, seen := false, false
	flush := func() {
		if in {
			vals = append(vals, string(cur))
		}
		in, cur = false, cur[:0]
	}
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
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && seen {
			if in {
				cur = append(cur, line...)
			}
			continue
		}
		flush()
		seen = true
		name, value, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("DKIM-Signature")) {
			in = true
			cur = append(cur, value...)
		}
	}
	flush()
	return vals
}

// sigTags is what is reported of a DKIM-Signature field, read leniently so
// that even a malformed signature is reported with its d=, s= and b=.
type sigTags struct {
	domain     string // d=, whitespace removed, case kept
	identifier string // i=
	selector   string // s=
	algorithm  string // a=, lowercased
	b          string // b=, whitespace removed
	t, x       int64  // t= and x= in Unix seconds
	hasT, hasX bool
	badTime    bool // t= or x= present but not a number
}

// parseTags reads a tag=value list (RFC 6376 §3.2). It is lenient on purpose:
// malformed lists are parseTagList's to reject (as permerror); this only
// collects what can be reported.
func parseTags(s string) map[string]string {
	tags := make(map[string]string)
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; dup {
			continue
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags
}

// stripFWS removes all folding whitespace, as RFC 6376 §3.2 allows it inside
// base64 and list values.
func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// parseSignature reads a signature's tag-list once: strictly (RFC 6376
// §3.2) for verification, returned with its error, and the reported fields
// from it — or, when it is malformed, from a lenient reading, so that what
// can be reported still is.
func parseSignature(value string) (sigTags, tagList, error) {
	tags, err := parseTagList(value)
	get := func(n string) (string, bool) {
		v, ok := tags.get(n)
		return strings.TrimSpace(v), ok
	}
	if err != nil {
		lenient := parseTags(value)
		get = func(n string) (string, bool) { v, ok := lenient[n]; return v, ok }
	}
	val := func(n string) string { v, _ := get(n); return stripFWS(v) }
	st := sigTags{
		domain:     val("d"),
		identifier: val("i"),
		selector:   val("s"),
		algorithm:  strings.ToLower(val("a")),
		b:          val("b"),
	}
	if v, ok := get("t"); ok {
		n, err := strconv.ParseInt(stripFWS(v), 10, 64)
		st.t, st.hasT, st.badTime = n, err == nil, st.badTime || err != nil
	}
	if v, ok := get("x"); ok {
		n, err := strconv.ParseInt(stripFWS(v), 10, 64)
		st.x, st.hasX, st.badTime = n, err == nil, st.badTime || err != nil
	}
	return st, tags, err
}

// unixTime converts seconds to a time, clamping values that time.Unix cannot
// represent sensibly (a huge x= means "never expires" in practice).
func unixTime(sec int64) time.Time {
	const maxSec = 1 << 40
	if sec > maxSec {
		sec = maxSec
	}
	return time.Unix(sec, 0)
}

// maxBPrefix caps a header.b value. RFC 6008 §4 asks for at least 8
// characters and enough to be unique among the message's signatures; two
// b= values that share their first 64 characters (384 bits of signature)
// are copies of each other made by the sender, and growing the prefix to
// tell them apart would let one message write its signatures, up to a
// megabyte, into our Authentication-Results field. Past the cap they share
// a header.b; each is still reported with its own result.
const maxBPrefix = 64

// bPrefixes returns, for each b= value, its first 8 characters, or more where
// needed to tell it apart from another signature of the same message
// (RFC 6008 §4: header.b "SHOULD be at least 8 characters" and long enough
// to be unique among the message's signatures), at most maxBPrefix.
//
// The longest prefix a value shares with any other distinct value is the
// one it shares with a neighbour in sorted order, so one sort and one
// comparison per pair of neighbours suffice: O(k log k) string comparisons,
// not O(k² · len²).
func bPrefixes(bs []string) []string {
	if len(bs) == 1 { // the common case: nothing to tell apart
		return []string{bs[0][:min(len(bs[0]), 8)]}
	}
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(bs[a], bs[b]) })
	// runs[r] is where the r-th run of equal values starts in order.
	var runs []int
	for k := range order {
		if k == 0 || bs[order[k]] != bs[order[k-1]] {
			runs = append(runs, k)
		}
	}
	runs = append(runs, len(order))
	// need[i] is the longest prefix (up to maxBPrefix) bs[i] shares with
	// a distinct value: the one it shares with the run before or after.
	need := make([]int, len(bs))
	for r := 1; r+1 < len(runs); r++ {
		n := commonPrefix(bs[order[runs[r-1]]], bs[order[runs[r]]], maxBPrefix)
		for _, k := range order[runs[r-1]:runs[r+1]] {
			need[k] = max(need[k], n)
		}
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b[:min(len(b), maxBPrefix, max(8, need[i]+1))]
	}
	return out
}

// commonPrefix is the length of the common prefix of a and b, at most limit.
func commonPrefix(a, b string, limit int) int {
	n := 0
	for n < limit && n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
