package dkimverify

import (
	"cmp"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/authmilter/authmilter/pkg/dnserr"
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
	keys, vd := k.keys()
	if vd != nil {
		return vd, scratch
	}
	res.KeyBits = keys[0].bits
	if keys, vd = usableKeys(keys, s); vd != nil {
		return vd, scratch
	}
	res.KeyBits = keys[0].bits

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
	key, err := checkAny(keys, digest, s.sigBytes)
	if err != nil {
		return &verdict{StatusFail, "signature mismatch", fmt.Errorf("dkim: signature did not verify: %w", err)}, scratch
	}
	res.KeyBits = key.bits
	res.Testing = key.rec != nil && key.rec.Testing

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

// Bounds on the key records of one selector (RFC 6376 §3.6.2.2 says there
// should be one; see keys).
const (
	maxKeyTXT     = 10 // TXT records looked at
	maxKeyRecords = 3  // valid key records tried
)

// keys returns the key records of a finished lookup to try, in the order
// DNS gave them, or why there is none to use (RFC 6376 §6.1.2 steps 2-5).
//
// Several TXT records at a selector name: "the results are undefined"
// (RFC 6376 §3.6.2.2), and the verifier "can choose one of the key records
// or may cycle through the key records" (§6.1.2). A stray TXT record beside
// the key (a site verification token, an SPF record) is common and must
// not break every signature: only the records that parse as key records
// count. One is the key. Two or three (a key rollover, an RSA and an
// Ed25519 key at one selector) are tried in turn, as §6.1.2 allows: a
// signature passes if one usable key verifies it — none of them is more
// authoritative than another, and whoever can publish one of them controls
// the selector anyway. More than three valid key records, or more than ten
// TXT records, are a publishing mistake we refuse (permerror) rather than
// spend the work on.
//
// What others do: go-msgauth v0.7 refuses any second TXT record
// ("multiple TXT records found for key", permerror; read in its code). mox
// skips TXT records that are not DKIM records, gives permerror for one that
// claims v=DKIM1 but is invalid, and temperror for two valid ones (read in
// its code). dkimpy uses the first TXT record of the answer, whatever it is
// (its dnsplug returns the first; a non-key record there fails the
// signature; read in its code). OpenDKIM reports more than one record as
// DKIM_SIGERROR_MULTIREPLY (from memory).
func (k *keyLookup) keys() ([]*pubKey, *verdict) {
	switch {
	case k.err != nil && k.notFound:
		return nil, &verdict{StatusPermError, "no key", fmt.Errorf("%w: %w", ErrNoKey, k.err)}
	case k.err != nil:
		reason := "key DNS lookup failed"
		if what, _, ok := dnserr.Describe(k.err); ok { // the name is header.s/header.d
			reason += ": " + what
		}
		return nil, &verdict{StatusTempError, reason, fmt.Errorf("%w: %w", ErrTemporary, k.err)}
	case len(k.txts) == 0:
		return nil, &verdict{StatusPermError, "no key", fmt.Errorf("%w: no TXT record at %s", ErrNoKey, k.name)}
	case len(k.txts) == 1:
		key := cachedKey(k.txts[0])
		if key.bad != nil {
			return nil, key.bad
		}
		return []*pubKey{key}, nil
	case len(k.txts) > maxKeyTXT:
		return nil, permerror("several key records", "%d TXT records at %s", len(k.txts), k.name)
	}
	var keys []*pubKey
	var firstBad *verdict
	for i, t := range k.txts {
		if slices.Contains(k.txts[:i], t) {
			continue // the same record twice
		}
		key := cachedKey(t)
		if key.bad != nil {
			firstBad = cmp.Or(firstBad, key.bad)
			continue
		}
		keys = append(keys, key)
	}
	switch {
	case len(keys) == 0:
		return nil, permerror("malformed key", "none of the %d TXT records at %s is a key record (the first: %w)", len(k.txts), k.name, firstBad.err)
	case len(keys) > maxKeyRecords:
		return nil, permerror("several key records", "%d key records at %s", len(keys), k.name)
	}
	return keys, nil
}

// usableKeys returns the keys that can verify s (RFC 6376 §6.1.2 steps
// 6-9), or the verdict of the first when none can.
func usableKeys(keys []*pubKey, s *signature) ([]*pubKey, *verdict) {
	var ok []*pubKey
	var first *verdict
	for _, k := range keys {
		if vd := k.usable(s); vd != nil {
			first = cmp.Or(first, vd)
			continue
		}
		ok = append(ok, k)
	}
	if len(ok) == 0 {
		return nil, first
	}
	return ok, nil
}

// checkAny verifies sig with each key in turn (§6.1.2 "cycle through the
// key records") and returns the one that verified, or the first error.
func checkAny(keys []*pubKey, digest, sig []byte) (*pubKey, error) {
	var first error
	for _, k := range keys {
		err := k.check(digest, sig)
		if err == nil {
			return k, nil
		}
		first = cmp.Or(first, err)
	}
	return nil, first
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
