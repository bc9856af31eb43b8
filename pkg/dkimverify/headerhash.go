package dkimverify

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// hfield is one header field for the header hash: its name (trimmed, for
// matching h=) and its raw bytes with every line ended by CRLF.
type hfield struct {
	name string
	raw  []byte
}

// headerFields cuts a header block into fields as splitHeader does
// (continuation lines start with SP or HTAB; it stops at the first empty
// line), keeping each field's bytes. A line ended by a bare LF is ended by
// CRLF in raw, as the signer is assumed to have seen it. The fields share
// the block's memory where it already uses CRLF.
func headerFields(h []byte) []hfield {
	var fields []hfield
	start := -1 // start of the current field in h
	fixed := false
	var fix []byte // the current field with its line ends fixed, if needed
	var name string
	end := func(at int) {
		if start < 0 {
			return
		}
		raw := h[start:at]
		if fixed {
			raw = fix
		}
		fields = append(fields, hfield{name: name, raw: raw})
		start, fixed, fix = -1, false, nil
	}
	pos := 0
	for pos < len(h) {
		line := h[pos:]
		next := len(h)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i+1], pos+i+1
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		if !((trimmed[0] == ' ' || trimmed[0] == '\t') && len(fields)+btoi(start >= 0) > 0) {
			end(pos)
			start = pos
			// The name is cut from the first line only, as splitHeader
			// does.
			n, _, _ := bytes.Cut(line, []byte(":"))
			name = string(bytes.TrimSpace(n))
		}
		if start >= 0 {
			// Does this line need its line end fixed?
			bareLF := line[len(line)-1] == '\n' && (len(line) < 2 || line[len(line)-2] != '\r')
			noEnd := line[len(line)-1] != '\n'
			if (bareLF || noEnd) && !fixed {
				fixed = true
				fix = append([]byte(nil), h[start:pos]...)
			}
			if fixed {
				l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
				fix = append(append(fix, l...), '\r', '\n')
			}
		}
		pos = next
	}
	end(pos)
	return fields
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendCanonField appends a header field canonicalised (RFC 6376 §3.4.1
// simple: unchanged; §3.4.2 relaxed: name lowercased, folds unfolded,
// whitespace runs one SP, no whitespace at the end of the value or around
// the colon), ending with CRLF.
func appendCanonField(dst, raw []byte, relaxed bool) []byte {
	if !relaxed {
		return append(dst, raw...)
	}
	name, value, ok := bytes.Cut(raw, []byte(":"))
	if !ok {
		name, value = raw, nil
	}
	for _, c := range bytes.TrimFunc(name, isFWSRune) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	pending, any := false, false
	for _, c := range value {
		if isFWS(c) {
			pending = true
			continue
		}
		if pending && any {
			dst = append(dst, ' ')
		}
		pending, any = false, true
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

func isFWSRune(r rune) bool { return r < 0x80 && isFWS(byte(r)) }

// withoutB returns the DKIM-Signature field raw with the value of its b=
// tag, and the whitespace around that value, removed (RFC 6376 §3.7: "with
// the value of the "b=" tag (including all surrounding whitespace) deleted
// (i.e., treated as the empty string)").
func withoutB(raw []byte) []byte {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	body := raw[colon+1:]
	ending := 0
	if bytes.HasSuffix(body, []byte("\r\n")) {
		ending = 2
	}
	for off := 0; off <= len(body)-ending; {
		semi := bytes.IndexByte(body[off:len(body)-ending], ';')
		partEnd := len(body) - ending
		if semi >= 0 {
			partEnd = off + semi
		}
		part := body[off:partEnd]
		if eq := bytes.IndexByte(part, '='); eq >= 0 && string(bytes.TrimFunc(part[:eq], isFWSRune)) == "b" {
			out := make([]byte, 0, len(raw))
			out = append(out, raw[:colon+1+off+eq+1]...)
			return append(out, body[partEnd:]...)
		}
		if semi < 0 {
			break
		}
		off = partEnd + 1
	}
	return raw
}

// fieldIndex finds the fields of a name without scanning the header block:
// h= may name thousands of fields against a block of a thousand, and one
// scan per name would cost their product (issue 16). It is built the first
// time a signature needs it, which ordinary mail never does (maxScan).
type fieldIndex struct {
	once   sync.Once
	slot   map[string]int // foldKey of a name → its slot
	fields [][]int        // per slot, the indexes of the fields of that name, in header order
}

// maxScan is the number of name comparisons (names in h= times fields)
// up to which headerDigest scans the block for each name, as cheap as the
// index for ordinary mail and without its allocations.
const maxScan = 4096

func (ix *fieldIndex) build(fields []hfield) {
	ix.once.Do(func() {
		ix.slot = make(map[string]int)
		var key []byte
		for i, f := range fields {
			key = foldKey(key[:0], f.name)
			n, ok := ix.slot[string(key)]
			if !ok {
				n = len(ix.fields)
				ix.slot[string(key)] = n
				ix.fields = append(ix.fields, nil)
			}
			ix.fields[n] = append(ix.fields[n], i)
		}
	})
}

// appendSignedScan appends the fields h= names (RFC 6376 §5.4.2: for
// each name the last field of that name not used yet) by scanning the
// block from the bottom for each name.
func appendSignedScan(buf []byte, fields []hfield, s *signature) []byte {
	var usedBuf [64]bool
	var used []bool
	if len(fields) <= len(usedBuf) {
		used = usedBuf[:len(fields)]
	} else {
		used = make([]bool, len(fields))
	}
	for _, name := range s.headers {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].name, name) {
				used[i] = true
				buf = appendCanonField(buf, fields[i].raw, s.relaxedHead)
				break
			}
		}
	}
	return buf
}

// appendSignedIndexed appends what appendSignedScan does, through the
// index: linear in h= and the fields it names.
func appendSignedIndexed(buf []byte, fields []hfield, ix *fieldIndex, s *signature) []byte {
	// used[n]: how many fields of slot n, from the bottom, are used.
	used := make([]int, len(ix.fields))
	var keyBuf [64]byte
	for _, name := range s.headers {
		n, ok := ix.slot[string(foldKey(keyBuf[:0], name))]
		if !ok {
			continue
		}
		if list := ix.fields[n]; used[n] < len(list) {
			used[n]++
			buf = appendCanonField(buf, fields[list[len(list)-used[n]]].raw, s.relaxedHead)
		}
	}
	return buf
}

// foldKey appends to dst a key equal for two names exactly when
// strings.EqualFold says they are equal: each rune becomes the smallest
// rune of its simple case-folding orbit (for ASCII, the upper case).
// Field names are ASCII (RFC 5322 §3.6.8), but the key must not differ
// from the comparison it replaces for any input.
func foldKey(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		dst = utf8.AppendRune(dst, m)
		i += size
	}
	return dst
}

// headerDigest is the SHA-256 of the header data a signature covers
// (RFC 6376 §3.7, §5.4.2): for each name of h=, in order, the last field
// of that name not used yet (none if there is none left: oversigning), then
// the signature's own field without b= and without its final CRLF, all
// canonicalised with c='s header algorithm. Its cost is linear in the size
// of h= and of the fields it names.
func headerDigest(fields []hfield, ix *fieldIndex, s *signature, scratch []byte) ([]byte, []byte) {
	var buf []byte
	if len(s.headers)*len(fields) <= maxScan {
		buf = appendSignedScan(scratch[:0], fields, s)
	} else {
		ix.build(fields)
		buf = appendSignedIndexed(scratch[:0], fields, ix, s)
	}
	buf = appendCanonField(buf, withoutB(fields[s.field].raw), s.relaxedHead)
	buf = bytes.TrimSuffix(buf, []byte("\r\n"))
	sum := sha256.Sum256(buf)
	return sum[:], buf
}
