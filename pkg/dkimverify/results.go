package dkimverify

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

func (v *Verifier) buildResults() {
	bs := make([]string, len(v.sigs))
	for i, s := range v.sigs {
		bs[i] = s.b
	}
	prefixes := bPrefixes(bs)
	scratch := make([]byte, 0, 4096)

	v.results = make([]Result, len(v.sigs))
	for i, s := range v.sigs {
		res := Result{
			Domain:     strings.ToLower(s.domain),
			Identifier: s.identifier,
			Selector:   s.selector,
			Algorithm:  s.algorithm,
			BPrefix:    prefixes[i],
		}
		var vd *verdict
		switch {
		case s.early != nil:
			vd = s.early
		case v.aborted.Load():
			vd = &verdict{StatusTempError, "verification aborted", ErrAborted}
		case v.broken != nil && !errors.Is(v.broken, ErrOverBudget):
			vd = &verdict{StatusTempError, "verification not completed", v.broken}
		default:
			vd, scratch = v.verify(s, &res, scratch)
		}
		if vd != nil {
			res.Status, res.Reason, res.Err = vd.status, vd.reason, vd.err
		} else {
			res.Status = StatusPass
		}
		v.results[i] = res
	}
}

// verify checks one signature that passed checkSignature (RFC 6376 §6.1.2,
// §6.1.3) and sets res.KeyBits; nil means pass. A panic becomes a
// temperror: the daemon must not die for one message.
func (v *Verifier) verify(s *signature, res *Result, scratch []byte) (vd *verdict, _ []byte) {
	defer func() {
		if p := recover(); p != nil {
			vd = &verdict{StatusTempError, "verification not completed", fmt.Errorf("%w: panic: %v", ErrInternal, p)}
		}
	}()
	var k *keyLookup
	for _, kl := range v.keys {
		if kl.name == s.keyName {
			k = kl
		}
	}
	if k == nil || s.field < 0 {
		return &verdict{StatusTempError, "verification not completed", fmt.Errorf("%w: signature state lost", ErrInternal)}, scratch
	}
	key, vd := k.key()
	if vd != nil {
		return vd, scratch
	}
	res.KeyBits = key.bits
	if vd := key.usable(s); vd != nil {
		return vd, scratch
	}

	// The budget is checked before each signature's costly part: the
	// header hash and the public-key operation.
	if errors.Is(v.broken, ErrOverBudget) {
		return &verdict{StatusTempError, "time budget exhausted", v.broken}, scratch
	}
	if err := v.overBudget(); err != nil {
		return &verdict{StatusTempError, "time budget exhausted", err}, scratch
	}

	// §6.1.3 step 1-3: the body hash.
	body := v.bodies[0]
	if s.relaxedBody {
		body = v.bodies[1]
	}
	var bodyLen int64 // canonical body length, for l=
	if s.body != nil {
		body = s.body
		bodyLen = s.body.h.(*prefixHash).n
		if bodyLen < s.bodyLen {
			// RFC 6376 §3.5 l=: the signer hashed more than there is; the
			// body was cut (OpenDKIM: DKIM_SIGERROR_TOOLARGE_L).
			return &verdict{StatusFail, "body shorter than l=",
				fmt.Errorf("dkim: body hash did not verify: l=%d, body %d bytes", s.bodyLen, bodyLen)}, scratch
		}
	}
	if subtle.ConstantTimeCompare(body.sum, s.bodyHash) != 1 {
		return &verdict{StatusFail, "body hash mismatch", errors.New("dkim: body hash did not verify")}, scratch
	}

	// §6.1.3 step 4-5: the header hash and the signature.
	digest, scratch := headerDigest(v.fields, &v.index, s, scratch)
	err := key.check(digest, s.sigBytes)
	if err != nil {
		return &verdict{StatusFail, "signature mismatch", fmt.Errorf("dkim: signature did not verify: %w", err)}, scratch
	}

	// RFC 8301 §3.2 allows sites to ask for more than 1024 bits.
	if key.alg == "rsa" && key.bits < v.opts.MinRSABits {
		return &verdict{StatusPolicy, fmt.Sprintf("key too small (%d bits)", key.bits),
			fmt.Errorf("%w: %d bits, want %d", ErrKeyTooSmall, key.bits, v.opts.MinRSABits)}, scratch
	}
	// RFC 6376 §8.2: content after the signed length is what l= lets
	// anyone add; by default such a signature does not count.
	if s.body != nil && bodyLen > s.bodyLen && v.opts.BodyLength != BodyLengthAccept {
		return &verdict{StatusPolicy, fmt.Sprintf("unsigned content after l= (%d of %d body bytes signed)", s.bodyLen, bodyLen),
			fmt.Errorf("%w: l=%d, body %d bytes", ErrUnsignedTail, s.bodyLen, bodyLen)}, scratch
	}
	return nil, scratch
}

// key returns the parsed key record of a finished lookup, or why there is
// none to use (RFC 6376 §6.1.2 steps 2-5).
func (k *keyLookup) key() (*pubKey, *verdict) {
	switch {
	case k.err != nil && k.notFound:
		return nil, &verdict{StatusPermError, "no key", fmt.Errorf("dkim: no key for signature: %w", k.err)}
	case k.err != nil:
		return nil, &verdict{StatusTempError, "key DNS lookup failed", fmt.Errorf("dkim: key unavailable: %w", k.err)}
	case len(k.txts) == 0:
		return nil, &verdict{StatusPermError, "no key", fmt.Errorf("dkim: no key for signature: no TXT record at %s", k.name)}
	case len(k.txts) > 1:
		// RFC 6376 §6.1.2 lets the verifier choose; several records
		// for one selector is a publishing mistake we do not guess
		// around.
		return nil, permerror("several key records", "%d TXT records at %s", len(k.txts), k.name)
	}
	return cachedKey(k.txts[0]), nil
}

// check verifies sig over the SHA-256 digest with the key: rsa-sha256
// (RFC 6376 §3.3) or ed25519-sha256 (RFC 8463 §3: Ed25519, pure, over the
// SHA-256 of the data).
func (k *pubKey) check(digest, sig []byte) error {
	switch k.alg {
	case "rsa":
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest, sig)
	case "ed25519":
		if !ed25519.Verify(k.ed, digest, sig) {
			return errors.New("ed25519: invalid signature")
		}
		return nil
	}
	return fmt.Errorf("%w: key of unknown type %q", ErrInternal, k.alg)
}
