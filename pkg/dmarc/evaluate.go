package dmarc

import (
	"github.com/authmilter/authmilter/pkg/identity"

	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Status is the DMARC result of RFC 9989 §5.3.5 as written in
// Authentication-Results (RFC 8601 §2.7.1).
type Status string

// The DMARC results.
const (
	StatusPass      Status = "pass"      // an aligned identifier passed
	StatusFail      Status = "fail"      // a policy applies and nothing aligned
	StatusNone      Status = "none"      // no policy applies (no record, or a record calling for no processing)
	StatusTempError Status = "temperror" // DNS failure; no policy may be applied (RFC 9989 §5.3.6)
	StatusPermError Status = "permerror" // unusable Author Domain, or too many to evaluate
)

// DKIMInput is one verified DKIM signature (RFC 9989 §5.3.3: the d and s tags
// and the result).
type DKIMInput struct {
	Domain   string // d=
	Selector string // s=
	Result   string // "pass", "fail", "temperror", ...
}

// Input is what DMARC needs of a message besides DNS.
type Input struct {
	AuthorDomain string
	// SPFResult is the SPF result for the MAIL FROM identity ("pass", ...).
	// Never the HELO check (RFC 9989 §4.4.2).
	SPFResult string
	// SPFDomain is the MAIL FROM domain, or the HELO domain for a null
	// sender (RFC 7208 §2.4).
	SPFDomain string
	DKIM      []DKIMInput
}

// Result is the DMARC verdict for one Author Domain.
type Result struct {
	Status       Status
	AuthorDomain string
	Discovery    *Discovery // nil only when discovery never ran
	// Published is the p, sp or np value that applies to the Author Domain
	// (RFC 9989 §4.10.1); "" when no policy applies.
	Published Policy
	// Applied is the policy to enforce: for StatusFail, Published after the
	// t=y step-down or (RFC 7489 mode) pct sampling; PolicyNone for
	// StatusPass; "" otherwise.
	Applied Policy
	// SampledOut: RFC 7489 pct sampling chose the next-lower policy.
	SampledOut bool
	// TestMode: the record has t=y and a policy other than none (RFC 9989
	// §4.7 tag "t"), so Applied is one level below Published.
	TestMode          bool
	SPFAligned        bool
	DKIMAligned       bool
	AlignedDKIMDomain string // d= of the first aligned passing signature
	Reason            string // one line for logs and A-R comments
	Err               error  // the DNS or parse error behind temperror / permerror
}

// Options tune Evaluate; nil means defaults.
type Options struct {
	Mode Mode // ModeRFC9989 when empty
	// Rand returns 0..99 for pct sampling in ModeRFC7489; nil uses math/rand.
	Rand func() int
}

func (o *Options) mode() Mode {
	if o == nil || o.Mode == "" {
		return ModeRFC9989
	}
	return o.Mode
}

func (o *Options) rand() int {
	if o == nil || o.Rand == nil {
		return rand.IntN(100)
	}
	return o.Rand()
}

// Evaluate runs policy discovery and alignment for in.AuthorDomain.
func Evaluate(ctx context.Context, r Resolver, in Input, o *Options) Result {
	d, err := Discover(ctx, r, in.AuthorDomain, o.mode())
	return EvaluateDiscovered(ctx, r, in, d, err, o)
}

// Evaluate waits for the discovery and evaluates in against it.
func (p *Pending) Evaluate(ctx context.Context, r Resolver, in Input, o *Options) Result {
	d, err := p.Wait(ctx)
	return EvaluateDiscovered(ctx, r, in, d, err, o)
}

// EvaluateDiscovered evaluates in against a finished discovery (d and derr as
// Discover returned them). r is still needed for the Organizational Domains
// of the authenticated identifiers under relaxed alignment (RFC 9989
// §4.10.2).
func EvaluateDiscovered(ctx context.Context, r Resolver, in Input, d *Discovery, derr error, o *Options) Result {
	res := Result{AuthorDomain: in.AuthorDomain, Discovery: d}
	if d != nil && d.AuthorDomain != "" {
		res.AuthorDomain = d.AuthorDomain
	}
	switch {
	case derr == nil && d != nil && d.Record != nil:
	case errors.Is(derr, ErrNoPolicy):
		res.Status, res.Reason = StatusNone, "no DMARC policy record"
		return res
	case errors.Is(derr, ErrInvalidDomain):
		res.Status, res.Err = StatusPermError, derr
		res.Reason = "invalid author domain"
		return res
	default:
		if derr == nil {
			derr = fmt.Errorf("%w: no discovery", ErrTemporary)
		}
		res.Status, res.Err = StatusTempError, derr
		res.Reason = "DNS failure during policy discovery"
		// The Author Domain's own record was read before the failure: an
		// identifier equal to the Author Domain aligns under either mode
		// and needs no more DNS, so the message can still pass.
		if d != nil && d.Record != nil && d.PolicyDomain == d.AuthorDomain {
			a := newAligner(ctx, r, d, o.mode())
			if a.evaluateExact(in, &res) {
				res.Status, res.Err = StatusPass, nil
				res.Reason = passReason(in, &res) + " despite DNS failure"
				res.Published, res.Applied = d.Published(), PolicyNone
			}
		}
		return res
	}
	res.Published = d.Published()
	if res.Published == "" {
		res.Status = StatusNone
		res.Reason = "record without valid p/sp/np and without rua: no DMARC processing"
		return res
	}

	a := newAligner(ctx, r, d, o.mode())
	if a.evaluateExact(in, &res) || a.evaluateRelaxed(in, &res) {
		res.Status, res.Applied = StatusPass, PolicyNone
		res.Reason = passReason(in, &res)
		return res
	}
	if a.err != nil {
		res.Status, res.Err = StatusTempError, a.err
		res.Reason = "DNS failure during alignment"
		return res
	}
	res.Status = StatusFail
	res.Reason = "no aligned identifier passed"
	res.Applied = res.Published
	rec := d.Record
	switch {
	case res.Published == PolicyNone:
	case rec.Testing:
		// RFC 9989 §4.7 tag "t": one level below the published policy.
		res.TestMode = true
		res.Applied = res.Published.stepDown()
		res.Reason += "; t=y: policy stepped down"
	case o.mode() == ModeRFC7489 && rec.Pct >= 0 && rec.Pct < 100:
		// RFC 7489 §6.6.4: apply the policy to pct% of failing mail, the
		// next-lower policy to the rest.
		if o.rand() >= rec.Pct {
			res.SampledOut = true
			res.Applied = res.Published.stepDown()
			res.Reason += fmt.Sprintf("; sampled out (pct=%d)", rec.Pct)
		}
	}
	return res
}

// aligner checks identifiers against one discovery, caching the
// Organizational Domains it walks for.
type aligner struct {
	ctx  context.Context
	r    Resolver
	d    *Discovery
	mode Mode
	orgs map[string]string
	err  error // first DNS failure of a relaxed check
}

func newAligner(ctx context.Context, r Resolver, d *Discovery, mode Mode) *aligner {
	return &aligner{ctx: ctx, r: r, d: d, mode: mode, orgs: map[string]string{}}
}

// evaluateExact marks identifiers equal to the Author Domain: aligned in
// both modes (strict alignment is an exact, case-insensitive compare, RFC
// 9989 §3.2.10.2).
func (a *aligner) evaluateExact(in Input, res *Result) bool {
	author := a.d.AuthorDomain
	if spfPassed(in) && normalizeID(in.SPFDomain) == author {
		res.SPFAligned = true
	}
	for _, k := range in.DKIM {
		if dkimPassed(k) && normalizeID(k.Domain) == author {
			res.DKIMAligned = true
			res.AlignedDKIMDomain = author
			break
		}
	}
	return res.SPFAligned || res.DKIMAligned
}

// evaluateRelaxed tries the identifiers not equal to the Author Domain under
// relaxed alignment: same Organizational Domain (RFC 9989 §3.2.10.1).
func (a *aligner) evaluateRelaxed(in Input, res *Result) bool {
	rec := a.d.Record
	if rec.ASPF == 'r' && spfPassed(in) && a.relaxed(in.SPFDomain) {
		res.SPFAligned = true
	}
	if rec.ADKIM == 'r' {
		for _, k := range in.DKIM {
			if dkimPassed(k) && a.relaxed(k.Domain) {
				res.DKIMAligned = true
				res.AlignedDKIMDomain = normalizeID(k.Domain)
				break
			}
		}
	}
	return res.SPFAligned || res.DKIMAligned
}

// passReason describes which identifiers aligned.
func passReason(in Input, res *Result) string {
	var parts []string
	if res.SPFAligned {
		parts = append(parts, "SPF aligned (smtp.mailfrom="+normalizeID(in.SPFDomain)+")")
	}
	if res.DKIMAligned {
		parts = append(parts, "DKIM aligned (header.d="+res.AlignedDKIMDomain+")")
	}
	return strings.Join(parts, ", ")
}

// relaxed reports whether id has the Author Domain's Organizational Domain.
func (a *aligner) relaxed(id string) bool {
	id = normalizeID(id)
	org := a.d.OrgDomain
	if id == "" || org == "" {
		return false
	}
	// The Organizational Domain of id is id or one of its parents, so it can
	// only equal org when org is id or a parent of id: no DNS needed otherwise.
	if id != org && !strings.HasSuffix(id, "."+org) {
		return false
	}
	got, ok := a.orgs[id]
	if !ok {
		var err error
		got, err = OrgDomain(a.ctx, a.r, id, a.mode)
		if err != nil {
			if a.err == nil {
				a.err = err
			}
			return false
		}
		a.orgs[id] = got
	}
	return got == org
}

func spfPassed(in Input) bool { return strings.EqualFold(strings.TrimSpace(in.SPFResult), "pass") }

func dkimPassed(k DKIMInput) bool { return strings.EqualFold(strings.TrimSpace(k.Result), "pass") }

// normalizeID brings an identifier's domain to the Author Domain's form; an
// invalid one becomes "" and never aligns.
func normalizeID(s string) string {
	d, err := identity.ASCII(strings.TrimSpace(s))
	if err != nil {
		return ""
	}
	return d
}

// DefaultMaxAuthorDomains is EvaluateEach's cap when max <= 0.
const DefaultMaxAuthorDomains = 5

// EvaluateEach evaluates each of several Author Domains (a From field with
// several domains) against the same SPF and DKIM results and returns the
// verdict to act on plus every single result, as RFC 9989 §11.5 suggests:
// the failing result with the strictest policy wins; without a failure,
// temperror, then permerror, then pass, then none. At most max domains are
// evaluated (the rest would make a denial-of-service vector); when some are
// left out and nothing failed, the verdict is permerror because the
// evaluation is incomplete. Discoveries run in parallel.
func EvaluateEach(ctx context.Context, r Resolver, authorDomains []string, in Input, max int, o *Options) (Result, []Result) {
	if max <= 0 {
		max = DefaultMaxAuthorDomains
	}
	if len(authorDomains) == 0 {
		return Result{Status: StatusPermError, Reason: "no author domain", Err: ErrNoAuthorDomain}, nil
	}
	doms := authorDomains
	if len(doms) > max {
		doms = doms[:max]
	}
	pend := make([]*Pending, len(doms))
	for i, dom := range doms {
		pend[i] = StartDiscovery(ctx, r, dom, o.mode())
	}
	all := make([]Result, len(doms))
	for i, dom := range doms {
		one := in
		one.AuthorDomain = dom
		all[i] = pend[i].Evaluate(ctx, r, one, o)
	}
	best := all[0]
	for _, res := range all[1:] {
		if stricter(res, best) {
			best = res
		}
	}
	if len(authorDomains) > max && best.Status != StatusFail {
		best = Result{Status: StatusPermError, AuthorDomain: authorDomains[0], Err: ErrTooManyAuthors,
			Reason: fmt.Sprintf("%d author domains, only %d evaluated: evaluation incomplete", len(authorDomains), max)}
	}
	return best, all
}

// ErrTooManyAuthors: EvaluateEach met more Author Domains than its cap.
var ErrTooManyAuthors = errors.New("dmarc: too many author domains")

// statusRank orders results for EvaluateEach when none fails.
func statusRank(s Status) int {
	switch s {
	case StatusFail:
		return 5
	case StatusTempError:
		return 4
	case StatusPermError:
		return 3
	case StatusPass:
		return 2
	}
	return 1
}

// stricter reports whether a should win over b in EvaluateEach.
func stricter(a, b Result) bool {
	if ra, rb := statusRank(a.Status), statusRank(b.Status); ra != rb {
		return ra > rb
	}
	if a.Status != StatusFail {
		return false
	}
	if a.Applied.rank() != b.Applied.rank() {
		return a.Applied.rank() > b.Applied.rank()
	}
	return a.Published.rank() > b.Published.rank()
}
