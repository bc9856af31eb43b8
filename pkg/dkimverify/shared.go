package dkimverify

// What ARC (pkg/arc, RFC 8617) shares with DKIM verification: the
// ARC-Message-Signature is a DKIM signature in all but name (RFC 8617
// §4.1.2) and the ARC-Seal is verified with the same keys, canonicalisation
// and algorithms (§4.1.3, §5.1.1). One implementation of each serves both.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"strings"
)

// Tag is one tag=value of a tag-list (RFC 6376 §3.2), the value trimmed of
// surrounding folding whitespace.
type Tag struct{ Name, Value string }

// ParseTagList reads a tag-list strictly (RFC 6376 §3.2): a malformed list
// or a duplicate tag name is an error.
func ParseTagList(s string) ([]Tag, error) {
	l, err := parseTagList(s)
	if err != nil {
		return nil, err
	}
	out := make([]Tag, len(l))
	for i, t := range l {
		out[i] = Tag{t.name, t.value}
	}
	return out, nil
}

// StripFWS removes all folding whitespace from a tag value (base64 and
// list values may contain it, RFC 6376 §3.2).
func StripFWS(s string) string { return stripFWS(s) }

// SplitList cuts a colon-separated tag value (h=) into its trimmed,
// non-empty elements.
func SplitList(s string) []string { return splitList(s) }

// ValidDomain reports whether d is usable as a d= domain or s= selector.
func ValidDomain(d string) bool { return validDomain(d) }

// Header is a header block cut into fields for signature hashing. It
// shares the memory of the block it was made from, which must not change.
type Header struct {
	fields []hfield
	index  *fieldIndex // built when a signature needs it
}

// SplitHeader cuts a complete header block (each field "Name:value\r\n",
// see pkg/headerblock) into fields as the DKIM verifier does.
func SplitHeader(block []byte) Header {
	return Header{headerFields(block), &fieldIndex{}}
}

// Len is the number of fields.
func (h Header) Len() int { return len(h.fields) }

// Name is the name of field i, trimmed.
func (h Header) Name(i int) string { return h.fields[i].name }

// Raw is field i as received, name and CRLF included.
func (h Header) Raw(i int) []byte { return h.fields[i].raw }

// SignatureDigest is the SHA-256 header hash of a DKIM-style signature in
// field self (RFC 6376 §3.7, §5.4.2): the fields named in signed, each the
// last one of its name not used yet, then field self without its b= value
// and final CRLF, all canonicalised simple or relaxed.
func (h Header) SignatureDigest(self int, signed []string, relaxed bool) []byte {
	d, _ := headerDigest(h.fields, h.index, &signature{field: self, headers: signed, relaxedHead: relaxed}, nil)
	return d
}

// SealDigest is the SHA-256 hash an ARC-Seal signs (RFC 8617 §5.1.1): the
// fields at the given indexes in that order, then field self without its
// b= value and final CRLF, all with relaxed header canonicalisation.
func (h Header) SealDigest(self int, covered []int) []byte {
	var buf []byte
	for _, i := range covered {
		buf = appendCanonField(buf, h.fields[i].raw, true)
	}
	buf = appendCanonField(buf, withoutB(h.fields[self].raw), true)
	sum := sha256.Sum256(buf[:len(buf)-2])
	return sum[:]
}

// BodyHash is a streaming canonicalising SHA-256 of a message body (RFC 6376
// §3.4.3 simple, §3.4.4 relaxed), the one the DKIM verifier uses.
type BodyHash struct {
	h hash.Hash
	c bodyCanon
}

// NewBodyHash returns a body hash with relaxed or simple canonicalisation.
func NewBodyHash(relaxed bool) *BodyHash {
	b := &BodyHash{h: sha256.New()}
	b.c = bodyCanon{h: b.h, relaxed: relaxed}
	return b
}

// Write hashes the next chunk of the body (CRLF line ends); the chunk is
// not kept.
func (b *BodyHash) Write(p []byte) { b.c.Write(p) }

// Sum ends the body and returns its hash. Call it once.
func (b *BodyHash) Sum() []byte {
	b.c.Close()
	return b.h.Sum(nil)
}

// KeyError says why a key could not be used or a signature did not verify,
// with the Status a DKIM result would have.
type KeyError struct {
	Status Status
	Reason string
	Err    error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

func keyError(v *verdict) *KeyError { return &KeyError{v.status, v.reason, v.err} }

// PublicKey is a parsed key record (RFC 6376 §3.6.1), from the same cache
// the DKIM verifier uses.
// Several valid key records at one selector are all kept and tried in
// turn by Verify (see keyLookup.keys).
type PublicKey struct{ keys []*pubKey }

// Bits is the RSA modulus size of the (first) key; 0 for Ed25519.
func (k *PublicKey) Bits() int { return k.keys[0].bits }

// FetchKey looks up and parses the key selector._domainkey.domain
// (RFC 6376 §3.6.2) through r, with the DKIM verifier's rules for missing,
// several and malformed records. A *KeyError tells temperror (DNS trouble)
// from permerror (no usable key).
func FetchKey(ctx context.Context, r TXTResolver, selector, domain string) (*PublicKey, error) {
	k := &keyLookup{name: keyName(selector, domain), done: make(chan struct{})}
	k.run(ctx, r)
	keys, vd := k.keys()
	if vd != nil {
		return nil, keyError(vd)
	}
	return &PublicKey{keys}, nil
}

// Verify checks sig over the SHA-256 digest for a signature with a=
// algorithm ("rsa-sha256" or "ed25519-sha256") by domain: the key must
// suit it (RFC 6376 §6.1.2 steps 6-9, RFC 8301: at least minRSABits, never
// under 1024) and the cryptography must hold. The error is a *KeyError.
func (k *PublicKey) Verify(algorithm, domain string, minRSABits int, digest, sig []byte) error {
	keyAlg := "rsa"
	switch algorithm {
	case "rsa-sha256":
	case "ed25519-sha256":
		keyAlg = "ed25519"
	default:
		return keyError(permerror("unsupported signature parameter", "a=%s", algorithm))
	}
	s := &signature{sigTags: sigTags{algorithm: algorithm, domain: domain}, keyAlg: keyAlg}
	keys, vd := usableKeys(k.keys, s)
	if vd != nil {
		return keyError(vd)
	}
	key, err := checkAny(keys, digest, sig)
	if err != nil {
		return &KeyError{StatusFail, "signature mismatch", fmt.Errorf("signature did not verify: %w", err)}
	}
	if key.alg == "rsa" && key.bits < max(minRSABits, 1024) {
		return &KeyError{StatusPolicy, fmt.Sprintf("key too small (%d bits)", key.bits),
			fmt.Errorf("%w: %d bits, want %d", ErrKeyTooSmall, key.bits, max(minRSABits, 1024))}
	}
	return nil
}

// keyName is the absolute, lowercased name of a key record (RFC 6376
// §3.6.2.1).
func keyName(selector, domain string) string {
	return strings.ToLower(selector + "._domainkey." + domain + ".")
}
