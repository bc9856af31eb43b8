package dkimsign

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

// ErrKeyRecord is wrapped by the errors of ParseKeyRecord: the TXT record at
// <selector>._domainkey.<domain> is not a usable DKIM key record.
var ErrKeyRecord = errors.New("dkimsign: invalid DKIM key record")

// RecordName is the DNS name of a DKIM key record (RFC 6376 §3.6.2.1),
// without the trailing dot.
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// TXTRecord returns the key record to publish for a public key (RFC 6376
// §3.6.1): "v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo, base64>" for RSA, and
// "v=DKIM1; k=ed25519; p=<the 32 raw key bytes, base64>" for Ed25519
// (RFC 8463 §4.2: no ASN.1 wrapping).
func TXTRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("dkimsign: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("%w: key type %T is not RSA or Ed25519", ErrKeyFormat, pub)
}

// SplitTXT cuts a TXT value into character-strings of at most 255 bytes
// (RFC 1035 §3.3.14); a DKIM verifier joins them without separator
// (RFC 6376 §3.6.2.2). The cuts fall between base64 characters, so they
// are safe anywhere in a key record.
func SplitTXT(value string) []string {
	var out []string
	for len(value) > 255 {
		out = append(out, value[:255])
		value = value[255:]
	}
	return append(out, value)
}

// ZoneRecord formats the key record as one RFC 1035 master-file entry for
// name (absolute, with the trailing dot added when missing), the value
// split by SplitTXT and each part quoted.
func ZoneRecord(name, value string) string {
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	parts := SplitTXT(value)
	if len(parts) == 1 {
		return fmt.Sprintf("%s IN TXT %s", name, quoteTXT(parts[0]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s IN TXT (\n", name)
	for _, p := range parts {
		fmt.Fprintf(&b, "\t%s\n", quoteTXT(p))
	}
	b.WriteString("\t)")
	return b.String()
}

func quoteTXT(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// KeyRecord is a parsed DKIM key record (RFC 6376 §3.6.1).
type KeyRecord struct {
	Type     string           // k=: AlgRSA (the default) or AlgEd25519
	Public   crypto.PublicKey // nil when revoked
	Bits     int              // RSA modulus size; 256 for Ed25519; 0 when revoked
	Revoked  bool             // p= is empty (§3.6.1: the key was revoked)
	Testing  bool             // t=y: verifiers must not treat failures differently
	Strict   bool             // t=s: i= must be in d= exactly, no subdomain
	Hashes   []string         // h=, nil when absent (all allowed)
	Services []string         // s=, nil when absent ("*")
	// Notes lists what is allowed but worth a postmaster's attention:
	// unknown tags, a missing v=, a key stored as a bare RSAPublicKey.
	Notes []string
}

// ParseKeyRecord parses the TXT record of a DKIM key (the character-strings
// already joined). It rejects what makes every signature fail (RFC 6376
// §3.6.1, §6.1.2): a wrong v=, an unknown k=, h= without sha256, s= without
// email or "*", a p= that is not base64 or not a key of type k, duplicate
// tags (§3.2). A revoked key (empty p=) is returned without error, Revoked
// set.
func ParseKeyRecord(txt string) (*KeyRecord, error) {
	rec := &KeyRecord{Type: AlgRSA}
	tags := map[string]string{}
	var order []string
	for _, item := range strings.Split(txt, ";") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q is not tag=value", ErrKeyRecord, strings.TrimSpace(item))
		}
		name = strings.TrimSpace(name)
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("%w: tag %s= twice (RFC 6376 §3.2)", ErrKeyRecord, name)
		}
		tags[name] = stripFWS(value)
		order = append(order, name)
	}
	if v, ok := tags["v"]; ok {
		if v != "DKIM1" || order[0] != "v" {
			return nil, fmt.Errorf("%w: v= must be the first tag and DKIM1", ErrKeyRecord)
		}
	} else {
		rec.Notes = append(rec.Notes, "no v=DKIM1 (allowed, but recommended)")
	}
	if k, ok := tags["k"]; ok {
		rec.Type = strings.ToLower(k)
	}
	if rec.Type != AlgRSA && rec.Type != AlgEd25519 {
		return nil, fmt.Errorf("%w: unknown key type k=%s", ErrKeyRecord, rec.Type)
	}
	if h, ok := tags["h"]; ok {
		rec.Hashes = strings.Split(strings.ToLower(h), ":")
		if !slices.Contains(rec.Hashes, "sha256") {
			return nil, fmt.Errorf("%w: h=%s does not allow sha256 (RFC 8301)", ErrKeyRecord, h)
		}
	}
	if s, ok := tags["s"]; ok {
		rec.Services = strings.Split(strings.ToLower(s), ":")
		if !slices.Contains(rec.Services, "*") && !slices.Contains(rec.Services, "email") {
			return nil, fmt.Errorf("%w: s=%s does not allow email", ErrKeyRecord, s)
		}
	}
	for _, f := range strings.Split(strings.ToLower(tags["t"]), ":") {
		switch f {
		case "y":
			rec.Testing = true
		case "s":
			rec.Strict = true
		}
	}
	for _, name := range order {
		switch name {
		case "v", "h", "k", "n", "p", "s", "t":
		default:
			rec.Notes = append(rec.Notes, "unknown tag "+name+"= ignored")
		}
	}
	p, ok := tags["p"]
	if !ok {
		return nil, fmt.Errorf("%w: no p= tag", ErrKeyRecord)
	}
	if p == "" {
		rec.Revoked = true
		return rec, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: p= is not base64: %v", ErrKeyRecord, err)
	}
	if rec.Type == AlgEd25519 {
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 p= has %d bytes, want 32 (RFC 8463 §4.2)", ErrKeyRecord, len(der))
		}
		rec.Public, rec.Bits = ed25519.PublicKey(der), 256
		return rec, nil
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: k=rsa but p= holds a %T", ErrKeyRecord, pub)
		}
		rec.Public, rec.Bits = rk, rk.N.BitLen()
		return rec, nil
	}
	// A bare RSAPublicKey is not what RFC 6376 §3.6.1 says, but
	// go-msgauth, dkimpy and OpenDKIM accept it (erratum 3017).
	if rk, err := x509.ParsePKCS1PublicKey(der); err == nil {
		rec.Notes = append(rec.Notes, "p= is a bare RSAPublicKey, not SubjectPublicKeyInfo")
		rec.Public, rec.Bits = rk, rk.N.BitLen()
		return rec, nil
	}
	return nil, fmt.Errorf("%w: p= is not an RSA public key", ErrKeyRecord)
}

// Matches reports whether the record publishes the public half of k.
func (rec *KeyRecord) Matches(k crypto.Signer) bool {
	if rec == nil || rec.Public == nil {
		return false
	}
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(rec.Public)
}

// stripFWS removes the folding whitespace RFC 6376 §3.2 allows in values.
func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}
