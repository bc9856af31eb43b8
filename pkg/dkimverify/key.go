package dkimverify

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// keyLookup is the DNS query for one key name (RFC 6376 §3.6.2.1), shared
// by the signatures of a message that use it. done is closed when txts and
// err are set.
type keyLookup struct {
	name     string // absolute, lowercased
	done     chan struct{}
	txts     []string
	err      error
	notFound bool // NXDOMAIN or NODATA: there is no key
}

func (k *keyLookup) run(ctx context.Context, r TXTResolver) {
	defer close(k.done)
	defer func() {
		if p := recover(); p != nil {
			k.txts, k.err = nil, fmt.Errorf("%w: panic in key lookup: %v", ErrInternal, p)
		}
	}()
	if err := ctx.Err(); err != nil {
		k.err = fmt.Errorf("lookup %s: %w", k.name, err)
		return
	}
	k.txts, k.err = r.LookupTXT(ctx, k.name)
	if k.err != nil {
		// A cancelled context or any error that is not a DNS answer is
		// temporary: the key could not be fetched, which is not proof
		// that there is none.
		var de *net.DNSError
		k.notFound = errors.As(k.err, &de) && de.IsNotFound && ctx.Err() == nil
	}
}

// pubKey is a parsed key record (RFC 6376 §3.6.1), or why it is unusable.
// It is shared through keyCache and never changed after parsing.
type pubKey struct {
	alg      string // "rsa" or "ed25519"
	rsa      *rsa.PublicKey
	ed       ed25519.PublicKey
	bits     int      // RSA modulus size
	hashes   []string // h=, lowercased; nil means any
	email    bool     // s= allows email (absent, "*" or "email")
	strict   bool     // t=s: i= must not be a subdomain of d=
	bad      *verdict // set if the record cannot be used
	tooSmall bool     // RSA key under 1024 bits (RFC 8301 §3.2)
}

// keyCache holds parsed key records by their text, so that a busy
// sender's key is not base64-decoded and x509-parsed per message. It is
// bounded: when full, it starts again empty (hot keys come back at once).
var keyCache = struct {
	sync.Mutex
	m map[string]*pubKey
}{m: make(map[string]*pubKey)}

const keyCacheMax = 1024

func cachedKey(record string) *pubKey {
	keyCache.Lock()
	k, ok := keyCache.m[record]
	keyCache.Unlock()
	if ok {
		return k
	}
	k = parseKey(record)
	keyCache.Lock()
	if len(keyCache.m) >= keyCacheMax {
		clear(keyCache.m)
	}
	keyCache.m[record] = k
	keyCache.Unlock()
	return k
}

func badKey(reason, format string, args ...any) *pubKey {
	return &pubKey{bad: permerror(reason, format, args...)}
}

// parseKey reads a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4).
func parseKey(record string) *pubKey {
	tags, err := parseTagList(record)
	if err != nil {
		return badKey("malformed key", "%w", err)
	}
	// v=: "If specified, this tag MUST be set to "DKIM1" ... This tag
	// MUST be the first tag in the record."
	if ver, ok := tags.get("v"); ok && (ver != "DKIM1" || tags[0].name != "v") {
		return badKey("malformed key", "v=%s", ver)
	}
	p, ok := tags.get("p")
	if !ok {
		return badKey("malformed key", "no p=")
	}
	p = stripFWS(p)
	if p == "" {
		// "An empty value means that this public key has been revoked."
		return badKey("key revoked", "empty p=")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return badKey("malformed key", "p=: %w", err)
	}
	k := &pubKey{email: true}
	kt, _ := tags.get("k")
	switch strings.ToLower(kt) {
	case "", "rsa":
		// Both SubjectPublicKeyInfo and bare RSAPublicKey are seen in the
		// wild (RFC 6376 erratum 3017).
		var pub any
		if pub, err = x509.ParsePKIXPublicKey(der); err != nil {
			pub, err = x509.ParsePKCS1PublicKey(der)
		}
		rk, isRSA := pub.(*rsa.PublicKey)
		switch {
		case err != nil:
			return badKey("malformed key", "p=: %w", err)
		case !isRSA:
			return badKey("malformed key", "p= is a %T, k=rsa", pub)
		}
		k.alg, k.rsa, k.bits = "rsa", rk, rk.N.BitLen()
		k.tooSmall = k.bits < 1024
	case "ed25519":
		// RFC 8463 §4: the raw 32-byte public key.
		if len(der) != ed25519.PublicKeySize {
			return badKey("malformed key", "Ed25519 key of %d bytes", len(der))
		}
		k.alg, k.ed = "ed25519", ed25519.PublicKey(der)
	default:
		return &pubKey{bad: permerror("unsupported key algorithm", "k=%s", kt)}
	}
	if h, ok := tags.get("h"); ok {
		k.hashes = []string{}
		for _, a := range splitList(h) {
			k.hashes = append(k.hashes, strings.ToLower(a))
		}
	}
	if s, ok := tags.get("s"); ok {
		k.email = false
		for _, svc := range splitList(s) {
			k.email = k.email || svc == "*" || strings.EqualFold(svc, "email")
		}
	}
	if t, ok := tags.get("t"); ok {
		for _, f := range splitList(t) {
			k.strict = k.strict || strings.EqualFold(f, "s")
		}
	}
	return k
}

// usable checks the key against the signature (RFC 6376 §6.1.2 steps 6-9,
// RFC 8301 §3.2) and returns why it cannot verify it, or nil.
func (k *pubKey) usable(s *signature) *verdict {
	switch {
	case k.bad != nil:
		return k.bad
	case k.tooSmall:
		return &verdict{StatusPolicy, fmt.Sprintf("key too small (%d bits)", k.bits),
			fmt.Errorf("%w: %d bits, want 1024 at least", ErrKeyTooSmall, k.bits)}
	case k.hashes != nil && !contains(k.hashes, "sha256"):
		return permerror("hash not allowed by key", "key h=%s", strings.Join(k.hashes, ":"))
	case k.alg != s.keyAlg:
		return permerror("key type does not match a=", "key k=%s, a=%s", k.alg, s.algorithm)
	case !k.email:
		return permerror("key not for email", "key s= lacks email")
	case k.strict && s.identifier != "" && !strings.EqualFold(identityDomain(s.identifier), s.domain):
		// §3.6.1 t=s: "the "i=" domain MUST NOT be a subdomain of "d="".
		return permerror("i= not within d=", "key t=s forbids i= domain %s under d=%s", identityDomain(s.identifier), s.domain)
	}
	return nil
}

func identityDomain(i string) string {
	return i[strings.LastIndexByte(i, '@')+1:]
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
