package dkimverify

import (
	"bytes"
	"encoding/binary"
	"hash"
	"math/bits"
)

// Body canonicalisation (RFC 6376 §3.4.3 simple, §3.4.4 relaxed), streamed
// straight into a hash: the caller's chunk is never copied. Output bytes that
// equal input bytes are handed to the hash as runs of the chunk itself; only
// the few rewritten pieces (an added CR, one SP for a whitespace run, line
// ends held back until it is known whether they are trailing empty lines)
// come from small constants. The state across chunks is a handful of
// counters and flags.
//
// A line ends at LF, with or without a CR before it: a bare LF counts as a
// line end and is hashed as CRLF, as most verifiers do (the MTA hands us
// CRLF anyway). A CR not followed by LF is an ordinary byte.

// bodyCanon is a streaming body canonicaliser feeding h.
type bodyCanon struct {
	h       hash.Hash
	relaxed bool

	held    int  // line ends seen but not hashed yet: they may be trailing empty lines
	cr      bool // the last chunk ended in CR: line end or ordinary byte, the next chunk tells
	wsp     bool // relaxed: a whitespace run is pending (one SP if content follows on the line)
	midLine bool // content seen since the last line end
	wrote   bool // some content has been hashed
}

var (
	crlf    = []byte("\r\n")
	crlfs   = []byte("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n")
	space   = []byte(" ")
	crByte  = []byte("\r")
	wspByte = [256]bool{' ': true, '\t': true}
)

// special marks the bytes the relaxed scanner stops at.
var special = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// flushHeld hashes the held-back line ends: content follows them, so they
// were not trailing.
func (c *bodyCanon) flushHeld() {
	for c.held > 0 {
		n := min(c.held, len(crlfs)/2)
		c.h.Write(crlfs[:2*n])
		c.held -= n
	}
}

// content is called before hashing content that starts at a point where
// the run being collected is empty: held line ends and a pending whitespace
// run are hashed first.
func (c *bodyCanon) content() {
	if c.held > 0 {
		c.flushHeld()
	}
	if c.wsp {
		c.h.Write(space)
		c.wsp = false
	}
	c.midLine, c.wrote = true, true
}

// lineEnd records a line end that is not part of a verbatim run.
func (c *bodyCanon) lineEnd() {
	c.wsp = false // RFC 6376 §3.4.4 b: whitespace at the end of a line is ignored
	if c.midLine {
		c.h.Write(crlf)
		c.midLine = false
		return
	}
	c.held++
}

// Write hashes the canonical form of the next body chunk. It never fails.
func (c *bodyCanon) Write(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.cr {
		c.cr = false
		if b[0] == '\n' {
			c.lineEnd()
			b = b[1:]
		} else {
			c.content()
			c.h.Write(crByte)
		}
	}
	if c.relaxed {
		c.writeRelaxed(b)
	} else {
		c.writeSimple(b)
	}
}

// writeSimple: RFC 6376 §3.4.3. The chunk is hashed as is, except that a
// bare LF gets its CR and empty lines are held back until content follows.
//
// s..i is the run of input bytes to hash verbatim; its last k lines are
// empty CRLF lines, not hashed yet if the chunk ends there.
func (c *bodyCanon) writeSimple(b []byte) {
	s, i, k := 0, 0, 0
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		lf := i + j
		hasCR := lf > i && b[lf-1] == '\r'
		n := j // content length of this line piece
		if hasCR {
			n--
		}
		switch {
		case n == 0 && !c.midLine && hasCR:
			// Empty line in CRLF form.
			if c.held > 0 { // run is empty: keep counting outside it
				c.held++
				s = lf + 1
			} else {
				k++
			}
		case n == 0 && !c.midLine:
			// Empty line ended by a bare LF: cut the run.
			c.h.Write(b[s : i-2*k])
			c.held += k + 1
			k = 0
			s = lf + 1
		default:
			if c.held > 0 {
				c.flushHeld()
			}
			k = 0
			c.wrote = true
			if !hasCR {
				c.h.Write(b[s:lf])
				c.h.Write(crlf)
				s = lf + 1
			}
		}
		c.midLine = false
		i = lf + 1
	}
	end := len(b)
	if end > i && b[end-1] == '\r' {
		c.cr = true
		end--
	}
	if end > i {
		// Content of an unfinished line.
		if c.held > 0 {
			c.flushHeld()
		}
		k = 0
		c.midLine, c.wrote = true, true
		c.h.Write(b[s:end])
		return
	}
	if w := b[s : i-2*k]; len(w) > 0 {
		c.h.Write(w)
	}
	c.held += k
}

// writeRelaxed: RFC 6376 §3.4.4. Runs of ordinary bytes and single spaces
// between ordinary bytes are hashed verbatim; any other whitespace run cuts
// the run and becomes one pending SP, hashed only if content follows on the
// same line.
//
// s..i is the run of input bytes to hash verbatim; its last k lines are
// empty CRLF lines. Invariant: if held > 0 or wsp, the run is empty (s == i).
func (c *bodyCanon) writeRelaxed(b []byte) {
	s, i, k := 0, 0, 0
	n := len(b)
	for i < n {
		ch := b[i]
		if !special[ch] {
			if c.held > 0 || c.wsp {
				c.content()
			} else if !c.midLine {
				c.midLine, c.wrote = true, true
			}
			k = 0
			i++
			// The common case: a stretch of ordinary bytes with single
			// spaces between words. Eight bytes at a time: m marks the
			// bytes below 0x21 (SP, HTAB, CR and LF all are); its lowest
			// mark is exactly the first such byte (no borrow reaches it).
			for i < n {
				if i+8 <= n {
					x := binary.LittleEndian.Uint64(b[i:])
					m := (x - 0x2121212121212121) &^ x & 0x8080808080808080
					if m == 0 {
						i += 8
						continue
					}
					i += bits.TrailingZeros64(m) >> 3
				}
				ch = b[i]
				if !special[ch] {
					i++
					continue
				}
				if ch == ' ' && i+1 < n && !special[b[i+1]] {
					i += 2
					continue
				}
				break
			}
			continue
		}
		switch ch {
		case ' ', '\t':
			// A whitespace run that is not a single SP between ordinary
			// bytes (the loop above took those): cut the run here.
			c.h.Write(b[s : i-2*k])
			c.held += k
			k = 0
			for i < n && wspByte[b[i]] {
				i++
			}
			c.wsp = true
			s = i
		case '\r':
			if i+1 == n {
				// Line end or ordinary byte: the next chunk tells.
				c.h.Write(b[s : i-2*k])
				c.held += k
				c.cr = true
				return
			}
			if b[i+1] != '\n' {
				// An ordinary byte.
				if c.held > 0 || c.wsp {
					c.content()
				} else {
					c.midLine, c.wrote = true, true
				}
				k = 0
				i++
				continue
			}
			// CRLF: verbatim unless it ends an empty line behind held
			// line ends.
			c.wsp = false
			if c.midLine {
				c.midLine = false
			} else if c.held > 0 {
				c.held++
				s = i + 2
			} else {
				k++
			}
			i += 2
		case '\n':
			// Bare LF: cut the run.
			c.h.Write(b[s : i-2*k])
			c.held += k
			k = 0
			c.lineEnd()
			i++
			s = i
		}
	}
	if w := b[s : i-2*k]; len(w) > 0 {
		c.h.Write(w)
	}
	c.held += k
}

// Close hashes what the end of the body decides: a final CR is an ordinary
// byte; a last line without line end gets CRLF; held empty lines are
// dropped. simple: an empty body is one CRLF (§3.4.3); relaxed: an empty
// body is empty (§3.4.4).
func (c *bodyCanon) Close() {
	if c.cr {
		c.cr = false
		c.content()
		c.h.Write(crByte)
	}
	switch {
	case c.midLine:
		c.h.Write(crlf)
		c.midLine = false
	case !c.wrote && !c.relaxed:
		c.h.Write(crlf)
	}
	c.held, c.wsp = 0, false
}
