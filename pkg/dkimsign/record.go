package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

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
