package dkimverify

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of ParseKeyRecord and KeyRecord.Usable. ErrKeyTooSmall (declared
// with the other verification errors) is the fifth.
var (
	// ErrKeyRecord is wrapped by every error of ParseKeyRecord: the TXT
	// record is not a DKIM key record that can be read.
	ErrKeyRecord = errors.New("dkimverify: malformed DKIM key record")
	// ErrKeyAlgorithm: k= names an algorithm this verifier does not know
	// (wrapped together with ErrKeyRecord).
	ErrKeyAlgorithm = errors.New("dkimverify: unsupported key algorithm")
	// ErrKeyRevoked: p= is empty (RFC 6376 §3.6.1).
	ErrKeyRevoked = errors.New("dkimverify: key revoked")
	// ErrKeyHash: h= does not allow sha256, the only hash verified
	// (RFC 8301 §3.1).
	ErrKeyHash = errors.New("dkimverify: key h= does not allow sha256")
	// ErrKeyType: the signature's a= is for another key type than k=.
	ErrKeyType = errors.New("dkimverify: key type does not match a=")
	// ErrKeyService: s= does not list "email" or "*".
	ErrKeyService = errors.New("dkimverify: key s= does not allow email")
)

// KeyRecord is a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4) exactly as
// the verifier reads it. `authmilter check-dns` shows a postmaster the same
// value, so that what it approves is what the verifier accepts.
type KeyRecord struct {
	Type     string           // k=: "rsa" (the default, also for an empty k=) or "ed25519"
	Public   crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey; nil when revoked
	Bits     int              // RSA modulus size; 256 for Ed25519; 0 when revoked
	Revoked  bool             // p= is empty: the key was revoked (§3.6.1)
	Testing  bool             // t=y
	Strict   bool             // t=s: the i= domain must be d= exactly, no subdomain
	Hashes   []string         // h=, lowercased; nil when absent (any hash)
	Services []string         // s=; nil when absent ("*")
	// Notes lists what is allowed but worth a postmaster's attention:
	// unknown tags, a missing v=, a key stored as a bare RSAPublicKey.
	Notes []string
}

// ParseKeyRecord reads the TXT record of a DKIM key (its character-strings
// already joined, RFC 6376 §3.6.2.2). It fails, wrapping ErrKeyRecord, on a
// record that is not a valid tag-list (§3.2: an empty tag-spec such as
// "v=DKIM1;;", a tag name that does not start with a letter, a control
// character in a value, a tag twice), a v= other than "DKIM1" or not first,
// no p=, a p= that is not base64 or not a key of type k=, and (wrapping
// ErrKeyAlgorithm as well) a k= other than rsa or ed25519. A revoked key
// (empty p=) is returned without error, Revoked set. What makes the key
// unusable for a signature is Usable's to say.
func ParseKeyRecord(txt string) (*KeyRecord, error) {
	tags, err := parseTagList(txt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyRecord, err)
	}
	rec := &KeyRecord{Type: "rsa"}
	// v=: "If specified, this tag MUST be set to "DKIM1" ... This tag
	// MUST be the first tag in the record."
	if ver, ok := tags.get("v"); !ok {
		rec.Notes = append(rec.Notes, "no v=DKIM1 (allowed, but recommended)")
	} else if ver != "DKIM1" || tags[0].name != "v" {
		return nil, fmt.Errorf("%w: v=%s: v= must be the first tag and DKIM1", ErrKeyRecord, ver)
	}
	for _, t := range tags {
		switch t.name {
		case "v", "h", "k", "n", "p", "s", "t":
		default:
			rec.Notes = append(rec.Notes, "unknown tag "+t.name+"= ignored")
		}
	}
	if h, ok := tags.get("h"); ok {
		rec.Hashes = []string{}
		for _, a := range splitList(h) {
			rec.Hashes = append(rec.Hashes, strings.ToLower(a))
		}
	}
	if s, ok := tags.get("s"); ok {
		rec.Services = splitList(s)
		if rec.Services == nil {
			rec.Services = []string{}
		}
	}
	if t, ok := tags.get("t"); ok {
		for _, f := range splitList(t) {
			rec.Testing = rec.Testing || strings.EqualFold(f, "y")
			rec.Strict = rec.Strict || strings.EqualFold(f, "s")
		}
	}
	p, ok := tags.get("p")
	if !ok {
		return nil, fmt.Errorf("%w: no p= tag", ErrKeyRecord)
	}
	p = stripFWS(p)
	if p == "" {
		// "An empty value means that this public key has been revoked."
		rec.Revoked = true
		return rec, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: p= is not base64: %w", ErrKeyRecord, err)
	}
	kt, _ := tags.get("k")
	switch strings.ToLower(kt) {
	case "", "rsa":
		// Both SubjectPublicKeyInfo and bare RSAPublicKey are seen in the
		// wild (RFC 6376 erratum 3017); dkimpy, OpenDKIM and go-msgauth
		// accept both, and so do we.
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			if pub, err = x509.ParsePKCS1PublicKey(der); err == nil {
				rec.Notes = append(rec.Notes, "p= is a bare RSAPublicKey, not SubjectPublicKeyInfo")
			}
		}
		rk, isRSA := pub.(*rsa.PublicKey)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: p= is not an RSA public key: %w", ErrKeyRecord, err)
		case !isRSA:
			return nil, fmt.Errorf("%w: k=rsa but p= holds a %T", ErrKeyRecord, pub)
		}
		rec.Public, rec.Bits = rk, rk.N.BitLen()
	case "ed25519":
		// RFC 8463 §4: the raw 32-byte public key.
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 p= has %d bytes, want 32 (RFC 8463 §4.2)", ErrKeyRecord, len(der))
		}
		rec.Type, rec.Public, rec.Bits = "ed25519", ed25519.PublicKey(der), 256
	default:
		return nil, fmt.Errorf("%w: %w: k=%s", ErrKeyRecord, ErrKeyAlgorithm, kt)
	}
	return rec, nil
}

// Usable says why a signature with algorithm alg ("rsa" or "ed25519"; ""
// for any) cannot be verified with this key, or nil (RFC 6376 §6.1.2 steps
// 6-9, RFC 8301 §3.2), in the order the verifier checks: ErrKeyRevoked,
// ErrKeyTooSmall (an RSA key under 1024 bits), ErrKeyHash, ErrKeyType,
// ErrKeyService. The t=s rule needs the signature's i= and d= and is the
// verifier's.
func (rec *KeyRecord) Usable(alg string) error {
	switch {
	case rec.Revoked:
		return fmt.Errorf("%w (empty p=)", ErrKeyRevoked)
	case rec.Type == "rsa" && rec.Bits < 1024:
		return fmt.Errorf("%w: %d bits, want 1024 at least", ErrKeyTooSmall, rec.Bits)
	case rec.Hashes != nil && !slices.Contains(rec.Hashes, "sha256"):
		return fmt.Errorf("%w (h=%s)", ErrKeyHash, strings.Join(rec.Hashes, ":"))
	case alg != "" && alg != rec.Type:
		return fmt.Errorf("%w (k=%s, a= for %s)", ErrKeyType, rec.Type, alg)
	case rec.Services != nil && !slices.ContainsFunc(rec.Services, func(s string) bool { return s == "*" || strings.EqualFold(s, "email") }):
		return fmt.Errorf("%w (s=%s)", ErrKeyService, strings.Join(rec.Services, ":"))
	}
	return nil
}

// Matches reports whether the record publishes the public half of k.
func (rec *KeyRecord) Matches(k crypto.Signer) bool {
	if rec == nil || rec.Public == nil {
		return false
	}
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(rec.Public)
}
