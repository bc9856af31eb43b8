package dkimverify

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"

	"github.com/authmilter/authmilter/pkg/dnserr"
	lru "github.com/hashicorp/golang-lru/v2"
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
		k.notFound = dnserr.IsNotFound(k.err) && ctx.Err() == nil
	}
}

// pubKey is a key record as verification uses it: parsed once by
// ParseKeyRecord, or why it cannot be read. It is shared through keyCache
// and never changed after parsing.
type pubKey struct {
	rec  *KeyRecord
	alg  string // "rsa" or "ed25519"
	rsa  *rsa.PublicKey
	ed   ed25519.PublicKey
	bits int      // RSA modulus size
	bad  *verdict // set if the record cannot be read
}

// keyCache holds parsed key records by their text, so that a busy
// sender's key is not base64-decoded and x509-parsed per message. It is
// bounded, least recently used out first (golang-lru, as the resolver's
// cache).
var keyCache = func() *lru.Cache[string, *pubKey] {
	c, err := lru.New[string, *pubKey](keyCacheMax)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return c
}()

const keyCacheMax = 1024

func cachedKey(record string) *pubKey {
	if k, ok := keyCache.Get(record); ok {
		return k
	}
	k := parseKey(record)
	keyCache.Add(record, k)
	return k
}

// parseKey reads a DKIM key record with ParseKeyRecord.
func parseKey(record string) *pubKey {
	rec, err := ParseKeyRecord(record)
	if err != nil {
		reason := "malformed key"
		if errors.Is(err, ErrKeyAlgorithm) {
			reason = "unsupported key algorithm"
		}
		return &pubKey{bad: &verdict{StatusPermError, reason, fmt.Errorf("dkim: %s: %w", reason, err)}}
	}
	k := &pubKey{rec: rec, alg: rec.Type}
	switch pub := rec.Public.(type) {
	case *rsa.PublicKey:
		k.rsa, k.bits = pub, rec.Bits
	case ed25519.PublicKey:
		k.ed = pub
	}
	return k
}

// keyReasons are the verdict reasons of KeyRecord.Usable's errors.
var keyReasons = []struct {
	err    error
	reason string
}{
	{ErrKeyRevoked, "key revoked"},
	{ErrKeyHash, "hash not allowed by key"},
	{ErrKeyType, "key type does not match a="},
	{ErrKeyService, "key not for email"},
}

// usable checks the key against the signature (RFC 6376 §6.1.2 steps 6-9,
// RFC 8301 §3.2) and returns why it cannot verify it, or nil.
func (k *pubKey) usable(s *signature) *verdict {
	if k.bad != nil {
		return k.bad
	}
	if err := k.rec.Usable(s.keyAlg); err != nil {
		if errors.Is(err, ErrKeyTooSmall) {
			return &verdict{StatusPolicy, fmt.Sprintf("key too small (%d bits)", k.bits), err}
		}
		for _, kr := range keyReasons {
			if errors.Is(err, kr.err) {
				return &verdict{StatusPermError, kr.reason, fmt.Errorf("dkim: %s: %w", kr.reason, err)}
			}
		}
		return &verdict{StatusPermError, "unusable key", fmt.Errorf("dkim: %w", err)}
	}
	if k.rec.Strict && s.identifier != "" && !strings.EqualFold(identityDomain(s.identifier), s.domain) {
		// §3.6.1 t=s: "the "i=" domain MUST NOT be a subdomain of "d="".
		return permerror("i= not within d=", "key t=s forbids i= domain %s under d=%s", identityDomain(s.identifier), s.domain)
	}
	return nil
}

func identityDomain(i string) string {
	return i[strings.LastIndexByte(i, '@')+1:]
}
