// Package headerblock keeps a message's header as one block of bytes in
// the form DKIM and ARC read it — each field "Name:value\r\n" exactly as
// it stood in the message (RFC 6376 §3.4.1: c=simple signs these bytes) —
// within limits on the number of fields and bytes. The engine (verifying
// DKIM and ARC) and the signer keep their header blocks with it, so both
// apply the same limits and see the same bytes.
//
// Values are taken in the one form internal/milter hands a backend
// (milter.Message's Header): everything after the colon, leading white
// space kept, folds as CRLF. Postfix's wire form (folds as a bare "\n")
// is turned into it there, and nowhere else.
package headerblock

// Append appends one field to dst: name ":" value CRLF. value is in the
// form described in the package doc.
func Append(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// Block is a header block being collected, bounded by MaxFields fields and
// MaxBytes bytes (each field counts len(name)+len(value)+3: the colon and
// the CRLF, as the milter's limits count them). Once a field takes it over
// either limit the block is over for good: no field is kept after that.
type Block struct {
	MaxFields int
	MaxBytes  int
	// CountOnly: the fields are counted against the limits but not kept
	// (the engine with DKIM and ARC off still reports a header over them).
	CountOnly bool
	// Buf is the block so far. A caller may set it to a reused buffer
	// (length 0) before a field is added, and takes it back when done.
	Buf []byte

	fields, bytes int
	over          bool
}

// Add counts one field and, while the block is within its limits and not
// CountOnly, appends it to Buf. It reports whether the block is still
// within the limits.
func (b *Block) Add(name, value string) bool {
	if b.over {
		return false
	}
	b.fields++
	b.bytes += len(name) + len(value) + 3
	if b.fields > b.MaxFields || b.bytes > b.MaxBytes {
		b.over = true
		return false
	}
	if !b.CountOnly {
		b.Buf = Append(b.Buf, name, value)
	}
	return true
}

// Over reports whether a field took the block over its limits.
func (b *Block) Over() bool { return b.over }
