package dkimverify

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
)

// keyLookups is the LookupTXT function handed to go-msgauth for one message.
// It binds the message's context (go-msgauth has none), makes every failure
// a bare *net.DNSError (go-msgauth tells temporary from permanent failures by
// a type assertion on net.Error), and remembers each answer so the key size
// can be reported and checked against Options.MinRSABits.
type keyLookups struct {
	ctx context.Context
	r   TXTResolver

	mu      sync.Mutex
	answers map[string]keyAnswer // by lowercased name without trailing dot
}

type keyAnswer struct {
	txts []string
	err  error
}

func (k *keyLookups) lookup(name string) ([]string, error) {
	fqdn := name
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "." // absolute: no search list applies
	}
	txts, err := k.r.LookupTXT(k.ctx, fqdn)
	if err != nil {
		err = asDNSError(k.ctx, fqdn, err)
	}
	k.mu.Lock()
	k.answers[strings.ToLower(strings.TrimSuffix(name, "."))] = keyAnswer{txts: txts, err: err}
	k.mu.Unlock()
	return txts, err
}

func (k *keyLookups) answer(name string) (keyAnswer, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	a, ok := k.answers[name]
	return a, ok
}

// asDNSError is the one place where an error is turned into the bare
// *net.DNSError go-msgauth needs. A cancelled context or any error that is
// not a DNS answer counts as temporary: the key could not be fetched, which
// is not proof that there is none.
func asDNSError(ctx context.Context, name string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && ctx.Err() == nil {
		return de
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
}

// rsaKeyBits returns the RSA modulus size of a DKIM key record
// (RFC 6376 §3.6.1), or 0 if the record is not a parseable RSA key.
func rsaKeyBits(record string) int {
	tags := parseTags(record)
	if k := strings.ToLower(strings.TrimSpace(tags["k"])); k != "" && k != "rsa" {
		return 0
	}
	der, err := base64.StdEncoding.DecodeString(stripFWS(tags["p"]))
	if err != nil || len(der) == 0 {
		return 0
	}
	// Both SubjectPublicKeyInfo and bare RSAPublicKey are seen in the wild
	// (RFC 6376 erratum 3017); go-msgauth accepts both, so do we.
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		if rk, ok := pub.(*rsa.PublicKey); ok {
			return rk.N.BitLen()
		}
		return 0
	}
	if rk, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return rk.N.BitLen()
	}
	return 0
}
