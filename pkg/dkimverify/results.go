package dkimverify

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

func (v *Verifier) buildResults() {
	bs := make([]string, len(v.sigs))
	for i, st := range v.sigs {
		bs[i] = st.b
	}
	prefixes := bPrefixes(bs)

	// An error other than ErrTooManySignatures means go-msgauth could not
	// finish (body read aborted, or it panicked); it then also clears the
	// Err of the signature concerned, so none of its verdicts can be trusted.
	broken := v.err != nil && !errors.Is(v.err, dkim.ErrTooManySignatures)
	verified := min(len(v.sigs), v.opts.MaxSignatures)
	if !broken && len(v.verifs) != verified {
		broken = true
		v.err = fmt.Errorf("%w: %d signatures found, go-msgauth returned %d results", ErrInternal, verified, len(v.verifs))
	}

	v.results = make([]Result, len(v.sigs))
	for i, st := range v.sigs {
		res := Result{
			Domain:     strings.ToLower(st.domain),
			Identifier: st.identifier,
			Selector:   st.selector,
			Algorithm:  st.algorithm,
			BPrefix:    prefixes[i],
		}
		if a, ok := v.keys.answer(st.keyName()); ok && a.err == nil && len(a.txts) == 1 {
			res.KeyBits = rsaKeyBits(a.txts[0])
		}
		switch {
		case i >= verified:
			// RFC 6376 §6.1 lets a verifier limit the signatures it
			// checks; they are still reported so that nothing vanishes.
			res.Status, res.Reason, res.Err = StatusPolicy, "not verified: too many signatures", ErrTooManySignatures
		case broken:
			res.Status, res.Reason, res.Err = StatusTempError, "verification not completed", v.err
			if errors.Is(v.err, ErrAborted) {
				res.Reason = "verification aborted"
			}
		default:
			res.Status, res.Reason, res.Err = classify(v.verifs[i].Err)
			if res.Status == StatusPermError || res.Status == StatusTempError {
				v.refineKeyError(&res, st)
			}
		}
		if i < verified && !broken {
			v.applyPolicy(&res, st)
		}
		v.results[i] = res
	}
}

// classify maps a go-msgauth verification error to a status and a short
// reason. go-msgauth exports only IsTempFail/IsPermFail; a mismatch is
// neither. Its messages are stable within v0.7.0 and each mapping below is
// pinned by a test, so a library upgrade that changes them fails loudly.
func classify(err error) (Status, string, error) {
	if err == nil {
		return StatusPass, "", nil
	}
	msg := strings.TrimPrefix(err.Error(), "dkim: ")
	switch {
	case dkim.IsTempFail(err):
		return StatusTempError, "key DNS lookup failed", err
	case dkim.IsPermFail(err):
		for _, m := range permReasons {
			if strings.HasPrefix(msg, m.prefix) {
				return m.status, m.reason, err
			}
		}
		return StatusPermError, msg, err
	}
	switch {
	case strings.HasPrefix(msg, "body hash did not verify"):
		return StatusFail, "body hash mismatch", err
	case strings.HasPrefix(msg, "signature did not verify"):
		return StatusFail, "signature mismatch", err
	case strings.HasPrefix(msg, "message contains an insecure body length tag"):
		// go-msgauth refuses l= without hashing (the unsigned tail could
		// be anything) and calls it a failure. Not verifying is our
		// choice, not a broken signature: RFC 8601 §2.7.1 "policy".
		return StatusPolicy, "body length tag (l=) not accepted", err
	}
	return StatusTempError, "verification failed: " + msg, err
}

var permReasons = []struct {
	prefix string
	status Status
	reason string
}{
	{"key revoked", StatusPermError, "key revoked"},
	{"no key for signature", StatusPermError, "no key"},
	{"no valid key found", StatusPermError, "no key"},
	{"multiple TXT records found for key", StatusPermError, "several key records"},
	{"key syntax error", StatusPermError, "malformed key"},
	{"key record error", StatusPermError, "malformed key"},
	{"incompatible public key version", StatusPermError, "malformed key"},
	{"invalid Ed25519 public key size", StatusPermError, "malformed key"},
	{"unsupported key algorithm", StatusPermError, "unsupported key algorithm"},
	{"inappropriate key algorithm", StatusPermError, "key type does not match a="},
	{"inappropriate hash algorithm", StatusPermError, "hash not allowed by key"},
	{"inappropriate service", StatusPermError, "key not for email"},
	{"signature has expired", StatusPermError, "signature expired"},
	{"key is too short", StatusPolicy, "key too small"},
	{"hash algorithm too weak", StatusPolicy, "rsa-sha1 not accepted"},
	{"From field not signed", StatusPermError, "From not signed"},
	{"domain mismatch", StatusPermError, "i= not within d="},
	{"signature missing required tag", StatusPermError, "missing required tag"},
	{"incompatible signature version", StatusPermError, "bad signature version"},
	{"malformed", StatusPermError, "malformed signature"},
	{"unsupported", StatusPermError, "unsupported signature parameter"},
}

// refineKeyError uses the DNS answer itself, rather than go-msgauth's text,
// to tell "no key" from "lookup failed".
func (v *Verifier) refineKeyError(res *Result, st sigTags) {
	a, ok := v.keys.answer(st.keyName())
	if !ok || a.err == nil {
		return
	}
	var de *net.DNSError
	if errors.As(a.err, &de) && de.IsNotFound {
		res.Status, res.Reason = StatusPermError, "no key"
		return
	}
	res.Status, res.Reason = StatusTempError, "key DNS lookup failed"
}

// applyPolicy adds the checks go-msgauth does not make, or makes with fixed
// settings, on top of its verdict.
func (v *Verifier) applyPolicy(res *Result, st sigTags) {
	// RFC 8301 §3.1: rsa-sha1 "MUST NOT" be considered valid. go-msgauth
	// refuses it too (permerror "hash algorithm too weak"), but only after
	// the key lookup, so a DNS failure would show as temperror. We report
	// policy whatever happened: RFC 8601 §2.7.1 defines "policy" as a
	// signature "not acceptable to the ADMD", which is exactly this, while
	// "permerror" is for signatures that cannot be processed at all. Both
	// are non-pass for DMARC.
	if strings.HasSuffix(st.algorithm, "-sha1") {
		res.Status, res.Reason, res.Err = StatusPolicy, "rsa-sha1 not accepted", ErrSHA1
		return
	}

	// RFC 8301 §3.2: RSA keys under 1024 bits MUST NOT be valid; sites may
	// ask for more. go-msgauth fixes the floor at 1024 and reports no size.
	// Same reasoning as above for "policy".
	refused := res.Reason == "key too small" // go-msgauth's own 1024-bit floor
	if refused || (res.Status == StatusPass && res.KeyBits > 0 && res.KeyBits < v.opts.MinRSABits) {
		res.Status, res.Reason = StatusPolicy, "key too small"
		if res.KeyBits > 0 {
			res.Reason = fmt.Sprintf("key too small (%d bits)", res.KeyBits)
		}
		res.Err = fmt.Errorf("%w: %d bits, want %d: %w", ErrKeyTooSmall, res.KeyBits, v.opts.MinRSABits, res.errOrNil())
		return
	}

	// RFC 6376 §3.5 t= and x=. go-msgauth compares x= with the real clock
	// and no drift, and ignores t=. We check both against Options.Now with
	// Options.ClockDrift; ours wins when it is the stricter verdict.
	now := v.opts.Now()
	drift := v.opts.ClockDrift
	switch {
	case st.badTime:
		res.Status, res.Reason, res.Err = StatusPermError, "malformed t= or x=", ErrBadTimestamps
	case st.hasT && st.hasX && st.x < st.t:
		// "The value of the "x=" tag MUST be greater than the value of
		// the "t=" tag if both are present."
		res.Status, res.Reason, res.Err = StatusPermError, "x= before t=", ErrBadTimestamps
	case st.hasX && now.After(unixTime(st.x).Add(drift)):
		res.Status, res.Reason = StatusPermError, "signature expired"
		res.Err = fmt.Errorf("%w: x=%s", ErrExpired, unixTime(st.x).UTC().Format(time.RFC3339))
	case st.hasT && unixTime(st.t).After(now.Add(drift)):
		// "Verifiers MAY ignore signatures with a timestamp in the future."
		res.Status, res.Reason = StatusPermError, "signature timestamp in the future"
		res.Err = fmt.Errorf("%w: t=%s", ErrFutureTimestamp, unixTime(st.t).UTC().Format(time.RFC3339))
	}
}

// errOrNil is Err, or a plain marker when there is none, so that wrapping
// never prints "%!w(<nil>)".
func (r *Result) errOrNil() error {
	if r.Err == nil {
		return errors.New("signature otherwise valid")
	}
	return r.Err
}
