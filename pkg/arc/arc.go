// Package arc validates the Authenticated Received Chain (RFC 8617) of one
// inbound message while its body streams through, and returns the chain's
// status, its sets and what each sealer said, as a plain value.
//
// It verifies; it does not seal. Start reads the ARC header fields and
// checks the chain's structure (RFC 8617 §5.2 steps 1-3) and starts the key
// lookups; Write feeds the body to the ARC-Message-Signature body hashes;
// Result verifies the most recent ARC-Message-Signature (step 4), the older
// ones for the oldest-pass value (step 5) and every ARC-Seal (step 6).
// Canonicalisation, key lookup, the key cache, the algorithms (rsa-sha256,
// ed25519-sha256) and the RSA key size floor are pkg/dkimverify's.
//
// Whether a passing chain changes anything is local policy (RFC 8617 §7.2),
// not decided here.
package arc

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
)

// Status is the chain validation status (RFC 8617 §4.4, the cv= values and
// the arc= result of RFC 8617 §10.1).
type Status string

// The chain validation statuses.
const (
	StatusNone Status = "none" // no ARC sets
	StatusPass Status = "pass" // every seal and the most recent message signature verified
	StatusFail Status = "fail" // anything else
)

// MaxInstances is the highest instance a chain may have (RFC 8617 §4.2.1:
// "The maximum value for the instance tag is 50").
const MaxInstances = 50

// Errors in Result.Err, for callers that want more than the Status.
var (
	ErrStructure  = errors.New("arc: malformed chain")
	ErrTooMany    = errors.New("arc: not verified: too many ARC sets")
	ErrCVFail     = errors.New("arc: chain already marked cv=fail")
	ErrSignature  = errors.New("arc: signature did not verify")
	ErrKey        = errors.New("arc: no usable key")
	ErrTemporary  = errors.New("arc: key lookup failed temporarily")
	ErrOverBudget = errors.New("arc: not verified: time budget exhausted")
	ErrInternal   = errors.New("arc: verification failed")
)

// Options tune validation. A nil *Options, or a zero field, means the
// default.
type Options struct {
	// MinRSABits is the smallest RSA key accepted (default and floor
	// 1024, RFC 8301 §3.2).
	MinRSABits int
	// MaxSets bounds the cost of one message: a chain of more ARC sets
	// is not verified and fails (default 10; at most MaxInstances). Each
	// set costs two signature checks and up to two key lookups.
	MaxSets int
}

func (o *Options) withDefaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	d.MinRSABits = max(d.MinRSABits, 1024)
	if d.MaxSets <= 0 {
		d.MaxSets = 10
	}
	d.MaxSets = min(d.MaxSets, MaxInstances)
	return d
}

// Set is one ARC set (RFC 8617 §4.1) as found, and what verification made
// of it.
type Set struct {
	Instance int
	// CV is the seal's cv= value: none, pass or fail.
	CV string
	// SealDomain, SealSelector and SealAlgorithm are the ARC-Seal's d=,
	// s= and a=: who vouches for the set.
	SealDomain, SealSelector, SealAlgorithm string
	// MessageDomain and MessageSelector are the ARC-Message-Signature's
	// d= and s=.
	MessageDomain, MessageSelector string
	// AuthServID and Results are the ARC-Authentication-Results: what the
	// sealer found when the message reached it (RFC 8617 §4.1.1).
	AuthServID string
	Results    []authres.Result
	// MessagePass and SealPass say whether the ARC-Message-Signature and
	// the ARC-Seal verified; both false when they were not checked.
	MessagePass, SealPass bool
}

// Result is the outcome of chain validation.
type Result struct {
	Status Status
	Reason string // short human reason for fail
	Err    error  // nil on pass and none
	// Sets holds the sets by instance (Sets[0] is i=1) when the chain's
	// structure was valid; nil otherwise.
	Sets []Set
	// OldestPass is the lowest instance from which every
	// ARC-Message-Signature up to the most recent verified; 0 when all of
	// them did (RFC 8617 §5.2 step 5, header.oldest-pass of §10.2).
	OldestPass int
	// RemoteIP is the client address the first hop recorded in its
	// ARC-Authentication-Results (smtp.remote-ip, else iprev's
	// policy.iprev); "" when it named none.
	RemoteIP string
}

// Latest returns the most recent set, or nil.
func (r *Result) Latest() *Set {
	if len(r.Sets) == 0 {
		return nil
	}
	return &r.Sets[len(r.Sets)-1]
}

// field kinds, in the order a seal covers them within one set (§5.1.1).
const (
	kindAAR = iota
	kindAMS
	kindAS
)

var fieldNames = [3]string{"ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal"}

// kind returns the ARC field kind of a header field name, or -1.
func kind(name string) int {
	for k, n := range fieldNames {
		if strings.EqualFold(name, n) {
			return k
		}
	}
	return -1
}

// IsARCField reports whether a header field name is one of the three ARC
// fields; the engine counts them to know whether to start a Validator.
func IsARCField(name string) bool { return kind(name) >= 0 }

// sigFields is what verification needs of an AMS or AS.
type sigFields struct {
	field     int // index in the header
	domain    string
	selector  string
	algorithm string
	sig       []byte
	// AMS only
	headers     []string
	relaxedHead bool
	relaxedBody bool
	bodyHash    []byte
}

type set struct {
	fields [3]int // header index of AAR, AMS, AS
	ams    sigFields
	as     sigFields
	cv     string
}

// Validator validates one message's chain. It is fed by one goroutine
// (Write, then Result or Abort).
type Validator struct {
	opts   Options
	header dkimverify.Header
	sets   []set
	result Result // decided early when non-empty Status

	bodies [2]*dkimverify.BodyHash // simple, relaxed; nil if unused
	sums   [2][]byte
	keys   map[string]*keyLookup
	cancel context.CancelFunc
	budget context.Context // the caller's: its end stops the CPU work too

	ended      bool
	broken     error
	resultOnce sync.Once
}

type keyLookup struct {
	done chan struct{}
	key  *dkimverify.PublicKey
	err  error
}

// Start begins validation of a message whose complete header block (each
// field "Name:value\r\n" byte-exact, see pkg/headerblock, then the
// empty line) is header; the header is copied. Key lookups start at once,
// bound to ctx; the caller ends with Result or Abort.
func Start(ctx context.Context, r dkimverify.TXTResolver, header []byte, o *Options) (v *Validator) {
	v = &Validator{opts: o.withDefaults()}
	defer func() {
		if p := recover(); p != nil {
			v.result = Result{Status: StatusFail, Reason: "verification not completed",
				Err: fmt.Errorf("%w: panic while reading the chain: %v", ErrInternal, p)}
			if v.cancel != nil {
				v.cancel()
			}
		}
	}()
	v.header = dkimverify.SplitHeader(append([]byte(nil), header...))
	if v.readChain(); v.result.Status != "" {
		return v
	}
	v.budget = ctx
	ctx, v.cancel = context.WithCancel(ctx)
	v.keys = make(map[string]*keyLookup, 2*len(v.sets))
	for i := range v.sets {
		for _, sf := range []*sigFields{&v.sets[i].ams, &v.sets[i].as} {
			name := sf.selector + "._domainkey." + sf.domain
			if _, ok := v.keys[name]; ok {
				continue
			}
			k := &keyLookup{done: make(chan struct{})}
			v.keys[name] = k
			go func(sel, dom string) {
				defer close(k.done)
				defer func() {
					if p := recover(); p != nil {
						k.err = fmt.Errorf("%w: panic in key lookup: %v", ErrInternal, p)
					}
				}()
				k.key, k.err = dkimverify.FetchKey(ctx, r, sel, dom)
			}(sf.selector, sf.domain)
		}
		b := btoi(v.sets[i].ams.relaxedBody)
		if v.bodies[b] == nil {
			v.bodies[b] = dkimverify.NewBodyHash(b == 1)
		}
	}
	return v
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (v *Validator) fail(why string, err error) {
	v.result = Result{Status: StatusFail, Reason: why, Err: err}
}

// readChain collects the ARC sets and checks the chain's structure
// (RFC 8617 §5.2 steps 1-3). It sets v.result when the outcome is known
// without cryptography.
func (v *Validator) readChain() {
	type found struct {
		inst, kind, field int
	}
	var all []found
	n := 0
	for i := 0; i < v.header.Len(); i++ {
		k := kind(v.header.Name(i))
		if k < 0 {
			continue
		}
		inst, ok := instance(k, v.header.Raw(i))
		if !ok {
			// §4.2.1: i= is required in all three; a field whose
			// instance cannot be read makes the chain invalid.
			v.fail("ARC field without a valid i= tag", fmt.Errorf("%w: %s without a valid i=", ErrStructure, fieldNames[k]))
			return
		}
		all = append(all, found{inst, k, i})
		n = max(n, inst)
		if len(all) > 3*MaxInstances {
			v.fail("more than 50 ARC sets", fmt.Errorf("%w: more than %d ARC fields", ErrStructure, 3*MaxInstances))
			return
		}
	}
	if len(all) == 0 {
		v.result = Result{Status: StatusNone}
		return
	}
	// Step 1: at most 50 sets.
	if n > MaxInstances {
		v.fail("more than 50 ARC sets", fmt.Errorf("%w: instance %d", ErrStructure, n))
		return
	}
	// Step 3: exactly one of each field per instance, 1..N without gaps.
	v.sets = make([]set, n)
	for i := range v.sets {
		v.sets[i].fields = [3]int{-1, -1, -1}
	}
	for _, f := range all {
		s := &v.sets[f.inst-1]
		if s.fields[f.kind] >= 0 {
			v.fail("duplicate ARC field", fmt.Errorf("%w: two %s with i=%d", ErrStructure, fieldNames[f.kind], f.inst))
			return
		}
		s.fields[f.kind] = f.field
	}
	for i, s := range v.sets {
		for k, f := range s.fields {
			if f < 0 {
				v.fail("incomplete ARC set", fmt.Errorf("%w: no %s with i=%d", ErrStructure, fieldNames[k], i+1))
				return
			}
		}
	}
	// Step 2 (needs the most recent seal's cv=): a chain marked failed
	// stays failed. Then step 3's cv rules: i=1 none, later ones pass.
	for i := n - 1; i >= 0; i-- {
		s := &v.sets[i]
		var err error
		if s.as, s.cv, err = v.parseSeal(s.fields[kindAS], i+1); err != nil {
			v.fail("malformed ARC-Seal", err)
			return
		}
		want := "pass"
		if i == 0 {
			want = "none"
		}
		switch {
		case s.cv == "fail":
			v.fail("chain marked cv=fail", fmt.Errorf("%w: ARC-Seal i=%d", ErrCVFail, i+1))
			return
		case s.cv != want:
			v.fail("wrong cv= in ARC-Seal", fmt.Errorf("%w: ARC-Seal i=%d has cv=%s, want %s", ErrStructure, i+1, s.cv, want))
			return
		}
	}
	if n > v.opts.MaxSets {
		// The cost cap: unverified, so it cannot pass.
		v.fail("not verified: too many ARC sets", fmt.Errorf("%w: %d, limit %d", ErrTooMany, n, v.opts.MaxSets))
		return
	}
	for i := range v.sets {
		s := &v.sets[i]
		var err error
		if s.ams, err = v.parseMessageSignature(s.fields[kindAMS], i+1); err != nil {
			v.fail("malformed ARC-Message-Signature", err)
			return
		}
	}
}

// instance reads the i= of an ARC field: the first tag of an
// ARC-Authentication-Results (RFC 8617 §4.1.1: "i=" instance ";"
// authres-payload), a tag of the tag-list of the other two.
func instance(k int, raw []byte) (int, bool) {
	_, value, _ := strings.Cut(string(raw), ":")
	if k == kindAAR {
		value, _, _ = strings.Cut(value, ";")
		name, num, ok := strings.Cut(value, "=")
		if !ok || dkimverify.StripFWS(name) != "i" {
			return 0, false
		}
		return parseInstance(dkimverify.StripFWS(num))
	}
	tags, err := dkimverify.ParseTagList(value)
	if err != nil {
		return 0, false
	}
	for _, t := range tags {
		if t.Name == "i" {
			return parseInstance(t.Value)
		}
	}
	return 0, false
}

// parseInstance reads 1*2DIGIT in 1..50 (RFC 8617 §4.2.1).
func parseInstance(s string) (int, bool) {
	if len(s) == 0 || len(s) > 2 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxInstances || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	return n, true
}

func (v *Validator) tags(field int) (map[string]string, error) {
	_, value, _ := strings.Cut(string(v.header.Raw(field)), ":")
	l, err := dkimverify.ParseTagList(value)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(l))
	for _, t := range l {
		m[t.Name] = t.Value
	}
	return m, nil
}

// common reads the tags an AMS and an AS share: a=, d=, s=, b=.
func common(t map[string]string, field int, what string, inst int) (sigFields, error) {
	sf := sigFields{field: field}
	sf.algorithm = strings.ToLower(dkimverify.StripFWS(t["a"]))
	sf.domain = strings.ToLower(dkimverify.StripFWS(t["d"]))
	sf.selector = dkimverify.StripFWS(t["s"])
	if sf.algorithm != "rsa-sha256" && sf.algorithm != "ed25519-sha256" {
		// RFC 8617 §4.1.2, §4.1.3: the algorithms of DKIM; rsa-sha1
		// is never valid (RFC 8301). dkimpy 1.1.4 accepts only
		// rsa-sha256 in ARC; we also accept RFC 8463's Ed25519.
		return sf, fmt.Errorf("%w: %s i=%d: a=%s not supported", ErrStructure, what, inst, sf.algorithm)
	}
	if !dkimverify.ValidDomain(sf.domain) || !dkimverify.ValidDomain(sf.selector) {
		return sf, fmt.Errorf("%w: %s i=%d: bad d=%q or s=%q", ErrStructure, what, inst, sf.domain, sf.selector)
	}
	var err error
	if sf.sig, err = base64.StdEncoding.DecodeString(dkimverify.StripFWS(t["b"])); err != nil || len(sf.sig) == 0 {
		return sf, fmt.Errorf("%w: %s i=%d: bad b=", ErrStructure, what, inst)
	}
	return sf, nil
}

// parseSeal reads an ARC-Seal (RFC 8617 §4.1.3): i, cv, a, b, d, s
// required; h= is not allowed.
func (v *Validator) parseSeal(field, inst int) (sigFields, string, error) {
	t, err := v.tags(field)
	if err != nil {
		return sigFields{}, "", fmt.Errorf("%w: ARC-Seal i=%d: %w", ErrStructure, inst, err)
	}
	for _, name := range []string{"i", "cv", "a", "b", "d", "s"} {
		if _, ok := t[name]; !ok {
			return sigFields{}, "", fmt.Errorf("%w: ARC-Seal i=%d: no %s=", ErrStructure, inst, name)
		}
	}
	if _, ok := t["h"]; ok {
		return sigFields{}, "", fmt.Errorf("%w: ARC-Seal i=%d: h= not allowed", ErrStructure, inst)
	}
	sf, err := common(t, field, "ARC-Seal", inst)
	return sf, strings.ToLower(t["cv"]), err
}

// parseMessageSignature reads an ARC-Message-Signature (RFC 8617 §4.1.2):
// a DKIM-Signature with i= the instance and no v=.
func (v *Validator) parseMessageSignature(field, inst int) (sigFields, error) {
	t, err := v.tags(field)
	if err != nil {
		return sigFields{}, fmt.Errorf("%w: ARC-Message-Signature i=%d: %w", ErrStructure, inst, err)
	}
	for _, name := range []string{"i", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := t[name]; !ok {
			return sigFields{}, fmt.Errorf("%w: ARC-Message-Signature i=%d: no %s=", ErrStructure, inst, name)
		}
	}
	sf, err := common(t, field, "ARC-Message-Signature", inst)
	if err != nil {
		return sf, err
	}
	// c= as in DKIM (RFC 6376 §3.5): simple/simple when absent. (dkimpy
	// assumes relaxed/relaxed for a missing c=; every signer writes it.)
	if c, ok := t["c"]; ok {
		head, body, _ := strings.Cut(strings.ToLower(dkimverify.StripFWS(c)), "/")
		if body == "" {
			body = "simple"
		}
		if (head != "simple" && head != "relaxed") || (body != "simple" && body != "relaxed") {
			return sf, fmt.Errorf("%w: ARC-Message-Signature i=%d: c=%s", ErrStructure, inst, c)
		}
		sf.relaxedHead, sf.relaxedBody = head == "relaxed", body == "relaxed"
	}
	if _, ok := t["l"]; ok {
		// As for DKIM here: an unsigned tail could be anything.
		return sf, fmt.Errorf("%w: ARC-Message-Signature i=%d: l= not accepted", ErrStructure, inst)
	}
	sf.headers = dkimverify.SplitList(t["h"])
	for _, h := range sf.headers {
		// §4.1.2: the AMS "MUST NOT" sign ARC-Seal fields.
		if strings.EqualFold(h, "ARC-Seal") {
			return sf, fmt.Errorf("%w: ARC-Message-Signature i=%d signs ARC-Seal", ErrStructure, inst)
		}
	}
	if sf.bodyHash, err = base64.StdEncoding.DecodeString(dkimverify.StripFWS(t["bh"])); err != nil {
		return sf, fmt.Errorf("%w: ARC-Message-Signature i=%d: bad bh=", ErrStructure, inst)
	}
	return sf, nil
}

// Write passes a chunk of the body (CRLF line ends) to the body hashes. It
// never fails; after Result or Abort it discards.
func (v *Validator) Write(body []byte) (n int, _ error) {
	if v.ended || v.broken != nil || v.result.Status != "" {
		return len(body), nil
	}
	defer func() {
		if p := recover(); p != nil {
			v.broken = fmt.Errorf("%w: panic while hashing the body: %v", ErrInternal, p)
		}
	}()
	for _, b := range v.bodies {
		if b != nil {
			b.Write(body)
		}
	}
	return len(body), nil
}

// Abort releases a validation that will not be finished.
func (v *Validator) Abort() {
	v.ended = true
	if v.cancel != nil {
		v.cancel()
	}
}

// Result ends the body, waits for the key lookups and returns the outcome.
// Call it once.
func (v *Validator) Result() Result {
	v.resultOnce.Do(func() {
		if v.result.Status != "" {
			return
		}
		defer func() {
			if p := recover(); p != nil {
				v.fail("verification not completed", fmt.Errorf("%w: panic: %v", ErrInternal, p))
			}
		}()
		if !v.ended && v.broken == nil {
			for i, b := range v.bodies {
				if b != nil {
					v.sums[i] = b.Sum()
				}
			}
		}
		aborted := v.ended
		v.ended = true
		for _, k := range v.keys {
			<-k.done
		}
		v.cancel()
		switch {
		case aborted:
			v.fail("verification aborted", fmt.Errorf("%w: aborted", ErrInternal))
		case v.broken != nil:
			v.fail("verification not completed", v.broken)
		default:
			v.validate()
		}
	})
	return v.result
}

// validate is RFC 8617 §5.2 steps 4-6 on a structurally valid chain.
func (v *Validator) validate() {
	n := len(v.sets)
	out := make([]Set, n)
	for i, s := range v.sets {
		out[i] = Set{
			Instance: i + 1, CV: s.cv,
			SealDomain: s.as.domain, SealSelector: s.as.selector, SealAlgorithm: s.as.algorithm,
			MessageDomain: s.ams.domain, MessageSelector: s.ams.selector,
		}
		out[i].AuthServID, out[i].Results = readAAR(v.header.Raw(s.fields[kindAAR]))
	}
	res := Result{Sets: out, RemoteIP: remoteIP(out[0].Results)}

	// Step 4: the most recent AMS must verify.
	if err := v.verifyMessage(&v.sets[n-1]); err != nil {
		v.result = Result{Status: StatusFail, Reason: fmt.Sprintf("ARC-Message-Signature i=%d: %s", n, reason(err)), Err: err, Sets: out}
		return
	}
	out[n-1].MessagePass = true
	// Step 5: oldest-pass, the older AMSes in descending order; their
	// failure is expected (that is what ARC is for) and only lowers it.
	res.OldestPass = 0
	for i := n - 2; i >= 0; i-- {
		if v.verifyMessage(&v.sets[i]) != nil {
			res.OldestPass = i + 2
			break
		}
		out[i].MessagePass = true
	}
	// Step 6: every seal, most recent first.
	for i := n - 1; i >= 0; i-- {
		if err := v.verifySeal(i); err != nil {
			res.Status, res.Reason, res.Err = StatusFail, fmt.Sprintf("ARC-Seal i=%d: %s", i+1, reason(err)), err
			v.result = res
			return
		}
		out[i].SealPass = true
	}
	res.Status = StatusPass
	v.result = res
}

func reason(err error) string {
	var ke *dkimverify.KeyError
	if errors.As(err, &ke) {
		return ke.Reason
	}
	return err.Error()
}

// key waits for nothing (Result has joined the lookups) and returns the
// key of selector/domain.
func (v *Validator) key(sf *sigFields) (*dkimverify.PublicKey, error) {
	k := v.keys[sf.selector+"._domainkey."+sf.domain]
	if k == nil {
		return nil, fmt.Errorf("%w: key lookup lost", ErrInternal)
	}
	if k.err != nil {
		var ke *dkimverify.KeyError
		if errors.As(k.err, &ke) && ke.Status == dkimverify.StatusTempError {
			// RFC 8617 has no temperror: a chain that cannot be
			// verified now does not pass.
			return nil, fmt.Errorf("%w: %w", ErrTemporary, k.err)
		}
		return nil, fmt.Errorf("%w: %w", ErrKey, k.err)
	}
	return k.key, nil
}

// overBudget returns why when the context given to Start has ended (the
// message budget): no more signatures are checked, as in dkimverify.
func (v *Validator) overBudget() error {
	if err := v.budget.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrOverBudget, context.Cause(v.budget))
	}
	return nil
}

func (v *Validator) verifyMessage(s *set) error {
	if err := v.overBudget(); err != nil {
		return err
	}
	sf := &s.ams
	key, err := v.key(sf)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(v.sums[btoi(sf.relaxedBody)], sf.bodyHash) != 1 {
		return &dkimverify.KeyError{Status: dkimverify.StatusFail, Reason: "body hash mismatch",
			Err: fmt.Errorf("%w: body hash mismatch", ErrSignature)}
	}
	digest := v.header.SignatureDigest(sf.field, sf.headers, sf.relaxedHead)
	if err := key.Verify(sf.algorithm, sf.domain, v.opts.MinRSABits, digest, sf.sig); err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return nil
}

// verifySeal checks the ARC-Seal of set i (0-based): it signs the fields of
// sets 1..i+1, in instance order and AAR, AMS, AS within a set, its own
// field last without b= (RFC 8617 §5.1.1).
func (v *Validator) verifySeal(i int) error {
	if err := v.overBudget(); err != nil {
		return err
	}
	sf := &v.sets[i].as
	key, err := v.key(sf)
	if err != nil {
		return err
	}
	covered := make([]int, 0, 3*(i+1))
	for j := 0; j <= i; j++ {
		covered = append(covered, v.sets[j].fields[kindAAR], v.sets[j].fields[kindAMS])
		if j < i {
			covered = append(covered, v.sets[j].fields[kindAS])
		}
	}
	digest := v.header.SealDigest(sf.field, covered)
	if err := key.Verify(sf.algorithm, sf.domain, v.opts.MinRSABits, digest, sf.sig); err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return nil
}

// readAAR reads an ARC-Authentication-Results value: "i=N;" then an
// Authentication-Results payload (RFC 8617 §4.1.1).
func readAAR(raw []byte) (string, []authres.Result) {
	_, value, _ := strings.Cut(string(raw), ":")
	_, payload, _ := strings.Cut(value, ";")
	return authres.Parse(strings.TrimRight(payload, "\r\n"))
}

// remoteIP is the client address the first hop saw: the smtp.remote-ip of
// RFC 8617 §10.2 where a sealer wrote it, else iprev's policy.iprev
// (RFC 8601 §2.7.3), as dkimpy's and OpenARC's sealers record it.
func remoteIP(rs []authres.Result) string {
	for _, key := range []string{"smtp.remote-ip", "policy.iprev", "smtp.client-ip"} {
		for _, r := range rs {
			if ip := net.ParseIP(r.Prop(key)); ip != nil {
				return ip.String()
			}
		}
	}
	return ""
}
