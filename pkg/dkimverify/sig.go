package dkimverify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
)

// tag is one tag-spec of a tag-list (RFC 6376 §3.2), value trimmed of
// surrounding FWS.
type tag struct{ name, value string }

type tagList []tag

func (l tagList) get(name string) (string, bool) {
	for _, t := range l {
		if t.name == name {
			return t.value, true
		}
	}
	return "", false
}

var errTagList = errors.New("malformed tag-list")

// isFWS reports whether c can be part of folding whitespace.
func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimFWS(s string) string {
	i, j := 0, len(s)
	for i < j && isFWS(s[i]) {
		i++
	}
	for j > i && isFWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

// parseTagList reads a tag-list strictly (RFC 6376 §3.2):
//
//	tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
//	tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
//	tag-name  =  ALPHA *ALNUMPUNC
//	tag-value =  [ tval *( 1*(WSP / FWS) tval ) ]   tval = 1*VALCHAR
//
// "Tags with duplicate names MUST NOT occur within a single tag-list; if a
// tag name does occur more than once, the entire tag-list is invalid."
// Bytes ≥ 0x80 are let through in values (seen in z= and unknown tags);
// control characters are not.
//
// Duplicates are found by a scan while the list is short (every real
// signature) and through a set beyond, so that a signature of many
// thousand tags costs linear time (issue 16).
func parseTagList(s string) (tagList, error) {
	tags := make(tagList, 0, 16)
	var seen map[string]struct{} // every name, once there are many
	for {
		part, rest, more := strings.Cut(s, ";")
		s = rest
		spec := trimFWS(part)
		if spec == "" {
			// Only the final ";" may be followed by nothing.
			if more {
				return nil, fmt.Errorf("%w: empty tag-spec", errTagList)
			}
			return tags, nil
		}
		name, value, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q has no '='", errTagList, spec)
		}
		name, value = trimFWS(name), trimFWS(value)
		if !validTagName(name) {
			return nil, fmt.Errorf("%w: bad tag name %q", errTagList, name)
		}
		for j := 0; j < len(value); j++ {
			if c := value[j]; (c < 0x21 && !isFWS(c)) || c == 0x7f {
				return nil, fmt.Errorf("%w: control character in %s=", errTagList, name)
			}
		}
		dup := false
		switch {
		case seen != nil:
			_, dup = seen[name]
		case len(tags) < 32:
			_, dup = tags.get(name)
		default:
			seen = make(map[string]struct{}, 2*len(tags))
			for _, t := range tags {
				seen[t.name] = struct{}{}
			}
			_, dup = seen[name]
		}
		if dup {
			return nil, fmt.Errorf("%w: duplicate tag %s=", errTagList, name)
		}
		if seen != nil {
			seen[name] = struct{}{}
		}
		tags = append(tags, tag{name, value})
		if !more {
			return tags, nil
		}
	}
}

func validTagName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		if c := n[i]; !isAlpha(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validDomain accepts a domain name or selector as DKIM uses them: dot-
// separated labels of letters, digits, '-' and '_' (RFC 6376 §3.5 d= and
// s=, §3.1 selectors), at most 253 characters.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// splitList cuts a colon-separated list (h=, q=, key h= and s=) into its
// FWS-trimmed, non-empty elements.
func splitList(s string) []string {
	var out []string
	for e := range strings.SplitSeq(s, ":") {
		if e = trimFWS(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// verdict is a result decided without (or before) the cryptography.
type verdict struct {
	status Status
	reason string
	err    error
}

func permerror(reason, format string, args ...any) *verdict {
	return &verdict{StatusPermError, reason, fmt.Errorf("dkim: "+reason+": "+format, args...)}
}

// signature is one DKIM-Signature field as verification needs it.
type signature struct {
	sigTags                // what is reported, read leniently
	field              int // index of the field in the header block
	keyAlg             string
	relaxedHead        bool
	relaxedBody        bool
	headers            []string  // h=
	bodyHash, sigBytes []byte    // decoded bh= and b=
	keyName            string    // "selector._domainkey.domain." lowercased
	bodyLen            int64     // l=, -1 without
	body               *bodyHash // own body hash when l= is set

	early *verdict // set if the signature is decided before hashing
}

// checkSignature checks the strictly parsed tags (RFC 6376 §3.5; err is
// their parse error) and sets s.early
// when the signature cannot or need not be verified. Policy (RFC 8301 §3.1
// rsa-sha1, x=/t=) comes first, as it does not depend on anything else.
func (v *Verifier) checkSignature(s *signature, tags tagList, err error) {
	if strings.HasSuffix(s.algorithm, "-sha1") {
		// RFC 8301 §3.1: rsa-sha1 "MUST NOT" be considered valid.
		// RFC 8601 §2.7.1 "policy": not acceptable here, rather than
		// unprocessable ("permerror"); both are non-pass for DMARC.
		s.early = &verdict{StatusPolicy, "rsa-sha1 not accepted", ErrSHA1}
		return
	}
	if s.early = v.checkTimes(s.sigTags); s.early != nil {
		return
	}
	if err != nil {
		s.early = permerror("malformed signature", "%w", err)
		return
	}
	if ver, ok := tags.get("v"); ok && ver != "1" {
		s.early = permerror("bad signature version", "v=%s", ver)
		return
	}
	for _, name := range []string{"v", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags.get(name); !ok {
			s.early = permerror("missing required tag", "no %s=", name)
			return
		}
	}

	a := strings.ToLower(stripFWS(mustGet(tags, "a")))
	keyAlg, hashAlg, ok := strings.Cut(a, "-")
	switch {
	case !ok:
		s.early = permerror("malformed signature", "a=%s", a)
		return
	case hashAlg != "sha256" || (keyAlg != "rsa" && keyAlg != "ed25519"):
		// RFC 6376 §3.3 rsa-sha256, RFC 8463 §3 ed25519-sha256.
		s.early = permerror("unsupported signature parameter", "a=%s", a)
		return
	}
	s.keyAlg = keyAlg

	// §3.5 c=: "simple/simple" by default; "relaxed" alone is
	// relaxed/simple.
	if c, ok := tags.get("c"); ok {
		head, body, _ := strings.Cut(strings.ToLower(stripFWS(c)), "/")
		if body == "" {
			body = "simple"
		}
		if (head != "simple" && head != "relaxed") || (body != "simple" && body != "relaxed") {
			s.early = permerror("unsupported signature parameter", "c=%s", c)
			return
		}
		s.relaxedHead, s.relaxedBody = head == "relaxed", body == "relaxed"
	}

	// §3.5 q=: "dns/txt" is the only method defined.
	if q, ok := tags.get("q"); ok {
		found := false
		for _, m := range splitList(q) {
			found = found || strings.EqualFold(m, "dns/txt")
		}
		if !found {
			s.early = permerror("unsupported signature parameter", "q=%s", q)
			return
		}
	}

	d := stripFWS(mustGet(tags, "d"))
	sel := stripFWS(mustGet(tags, "s"))
	if !validDomain(d) || !validDomain(sel) {
		s.early = permerror("malformed signature", "d=%s s=%s", d, sel)
		return
	}

	// §3.5 i=: "The domain part of the address MUST be the same as, or a
	// subdomain of, the value of the "d=" tag."
	if i, ok := tags.get("i"); ok {
		at := strings.LastIndexByte(stripFWS(i), '@')
		if at < 0 {
			s.early = permerror("malformed signature", "i=%s", i)
			return
		}
		id := strings.ToLower(stripFWS(i)[at+1:])
		ld := strings.ToLower(d)
		if id != ld && !strings.HasSuffix(id, "."+ld) {
			s.early = permerror("i= not within d=", "i=%s d=%s", i, d)
			return
		}
	}

	// §5.4: "The From header field MUST be signed".
	s.headers = splitList(mustGet(tags, "h"))
	from := false
	for _, h := range s.headers {
		from = from || strings.EqualFold(h, "from")
	}
	if !from {
		s.early = permerror("From not signed", "h=%s", mustGet(tags, "h"))
		return
	}

	s.bodyLen = -1
	if l, ok := tags.get("l"); ok {
		n, ok := parseBodyLength(stripFWS(l))
		switch {
		case !ok:
			s.early = permerror("malformed signature", "l=%s", l)
			return
		case v.opts.BodyLength == BodyLengthRefuse:
			// Local choice (RFC 6376 §8.2): not verified, so "policy".
			s.early = &verdict{StatusPolicy, "body length tag (l=) not accepted", ErrBodyLength}
			return
		}
		s.bodyLen = n
	}

	if s.bodyHash, err = base64.StdEncoding.DecodeString(stripFWS(mustGet(tags, "bh"))); err != nil {
		s.early = permerror("malformed signature", "bh=: %w", err)
		return
	}
	if s.sigBytes, err = base64.StdEncoding.DecodeString(stripFWS(mustGet(tags, "b"))); err != nil {
		s.early = permerror("malformed signature", "b=: %w", err)
		return
	}
	s.keyName = keyName(sel, d)
}

// parseBodyLength reads l= (RFC 6376 §3.5: 1*76DIGIT). A value beyond int64
// is longer than any body and is kept as the largest int64.
func parseBodyLength(s string) (int64, bool) {
	if s == "" || len(s) > 76 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

func mustGet(tags tagList, name string) string {
	v, _ := tags.get(name)
	return v
}

// checkTimes is RFC 6376 §3.5 t= and x= against Options.Now with
// Options.ClockDrift.
func (v *Verifier) checkTimes(st sigTags) *verdict {
	now := v.opts.Now()
	drift := v.opts.ClockDrift
	switch {
	case st.badTime:
		return &verdict{StatusPermError, "malformed t= or x=", ErrBadTimestamps}
	case st.hasT && st.hasX && st.x < st.t:
		// "The value of the "x=" tag MUST be greater than the value of
		// the "t=" tag if both are present."
		return &verdict{StatusPermError, "x= before t=", ErrBadTimestamps}
	case st.hasX && now.After(unixTime(st.x).Add(drift)):
		return &verdict{StatusPermError, "signature expired",
			fmt.Errorf("%w: x=%s", ErrExpired, unixTime(st.x).UTC().Format("2006-01-02T15:04:05Z07:00"))}
	case st.hasT && unixTime(st.t).After(now.Add(drift)):
		// "Verifiers MAY ignore signatures with a timestamp in the future."
		return &verdict{StatusPermError, "signature timestamp in the future",
			fmt.Errorf("%w: t=%s", ErrFutureTimestamp, unixTime(st.t).UTC().Format("2006-01-02T15:04:05Z07:00"))}
	}
	return nil
}
