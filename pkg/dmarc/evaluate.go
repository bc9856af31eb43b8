package dmarc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/authmilter/authmilter/pkg/identity"
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
	TestMode bool
	// TestModeFromPct: TestMode comes from pct=0 in a record without a t
	// tag, read as t=y in ModeRFC9989 (see EvaluateDiscovered).
	TestModeFromPct bool
	// SPFAlignment and DKIMAlignment (one per Input.DKIM, in its order) say
	// how each authenticated identifier relates to the Author Domain. Every
	// identifier that passed is checked in the mode the record asks for,
	// also when another one already aligned (RFC 9989 §5.3.4: "for each
	// Authenticated Identifier"), so that records, aggregate reports,
	// Authentication-Results and explanations all say the same complete
	// thing. SPFAligned and DKIMAligned summarise them.
	SPFAlignment      Alignment
	DKIMAlignment     []Alignment
	SPFAligned        bool
	DKIMAligned       bool
	AlignedDKIMDomain string // d= of the first exactly aligned passing signature, else of the first relaxed one
	// OrgDomain is the Author Domain's Organizational Domain when discovery
	// or a relaxed alignment check needed it and DNS answered; "" when
	// nothing did (the Author Domain's own record settled the policy and no
	// identifier needed it, RFC 9989 §4.10.1).
	OrgDomain string
	Reason    string // one line for logs and A-R comments
	Err       error  // the DNS or parse error behind temperror / permerror
}

// OrgDomainForAlignment is the name to compare other identifiers with where
// no more DNS may be asked (ARC vouching, failure reports): the
// Organizational Domain when discovery or alignment found it; otherwise,
// when the Author Domain has a record of its own (RFC 9989 §4.10.1 then
// leaves the names above unasked), the Author Domain itself. Its
// Organizational Domain is it or a parent, so a caller that accepts names
// at or below the result never accepts more than the full walk would.
// "" when discovery did not finish.
func (r *Result) OrgDomainForAlignment() string {
	d := r.Discovery
	switch {
	case r.OrgDomain != "":
		return r.OrgDomain
	case d == nil:
		return ""
	case d.OrgDomain != "":
		return d.OrgDomain
	case d.Record != nil && d.PolicyDomain != "" && d.PolicyDomain == d.AuthorDomain:
		return d.AuthorDomain
	}
	return ""
}

// Alignment says how one authenticated identifier relates to the Author
// Domain (RFC 9989 §3.2.10).
type Alignment string

// The alignments of one identifier.
const (
	AlignNotPassed Alignment = ""        // SPF or DKIM did not pass: the identifier does not count
	AlignExact     Alignment = "exact"   // equal to the Author Domain: aligned in both modes
	AlignRelaxed   Alignment = "relaxed" // same Organizational Domain, and the record allows relaxed
	AlignNone      Alignment = "none"    // not aligned in the record's mode
	AlignUnknown   Alignment = "unknown" // a DNS failure left relaxed alignment undecided
)

// Aligned reports whether the identifier counts for a DMARC pass.
func (a Alignment) Aligned() bool { return a == AlignExact || a == AlignRelaxed }

// Options tune the evaluation (EvaluateDiscovered, EvaluateEach); nil means defaults.
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

// Evaluate waits for the discovery and evaluates in against it.
func (p *Pending) Evaluate(ctx context.Context, r Resolver, in Input, o *Options) Result {
	d, err := p.Wait(ctx)
	return EvaluateDiscovered(ctx, r, in, d, err, o)
}

// EvaluateDiscovered evaluates in against a finished discovery (d and derr as
// Discover returned them). r is still needed for the Organizational Domains
// of the authenticated identifiers under relaxed alignment (RFC 9989
// §4.10.2).
func EvaluateDiscovered(ctx context.Context, r Resolver, in Input, d *Discovery, derr error, o *Options) (res Result) {
	res = Result{AuthorDomain: in.AuthorDomain, Discovery: d}
	if d != nil && d.AuthorDomain != "" {
		res.AuthorDomain, res.OrgDomain = d.AuthorDomain, d.OrgDomain
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
		return res
	}
	res.Published = d.Published()
	if res.Published == "" {
		res.Status = StatusNone
		res.Reason = "record without valid p/sp/np and without rua: no DMARC processing"
		return res
	}

	a := newAligner(ctx, r, d, o.mode())
	defer func() { res.OrgDomain = a.authorOrgKnown() }()
	if a.evaluate(in, &res) {
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
	case o.mode() == ModeRFC9989 && rec.Pct == 0 && !rec.HasT:
		// RFC 9989 drops pct and makes t=y "analogous" to pct=0 (Appendix
		// A.6, removal of the "pct" tag). Records still publish "p=reject;
		// pct=0" to test; RFC 7489 receivers never apply that policy. So
		// pct=0 without a t tag is t=y; other pct values are ignored, as
		// RFC 9989 has no pct.
		// What others do (RFC 7489 sampling; from memory where not noted):
		// mox does not use the result of sampled-out mail (its Verify's
		// useResult, read in its code); OpenDMARC delivers it; RFC 7489
		// §6.6.4 steps it down one level, as our rfc7489 mode does.
		res.TestMode, res.TestModeFromPct = true, true
		res.Applied = res.Published.stepDown()
		res.Reason += "; pct=0 without t read as t=y: policy stepped down"
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
	orgs map[string]orgWalk
	err  error // the DNS failure behind the first undecided relaxed check
}

// orgWalk is what a walk for one domain's Organizational Domain found.
type orgWalk struct {
	start string
	steps []step   // nil when the answer needed no walk (PSL, or known from discovery)
	cands []string // see orgCandidates
	err   error    // the first failed query, if any
}

// org is the Organizational Domain if the failed queries had answered as
// guesses says.
func (w orgWalk) org(guesses map[string]guess) string {
	if w.steps == nil {
		return w.cands[0]
	}
	return selectOrg(w.start, w.steps, guesses)
}

func newAligner(ctx context.Context, r Resolver, d *Discovery, mode Mode) *aligner {
	return &aligner{ctx: ctx, r: r, d: d, mode: mode, orgs: map[string]orgWalk{}}
}

// evaluate checks the alignment of every identifier that passed (RFC 9989
// §5.3.4) and reports whether one aligned. An identifier equal to the
// Author Domain aligns in both modes (strict alignment is an exact,
// case-insensitive compare, §3.2.10.2); relaxed alignment compares
// Organizational Domains (§3.2.10.1) and is only tried where the record
// asks for it (aspf/adkim, default r).
//
// What others do: OpenDMARC checks SPF and DKIM alignment each on its own
// and reports both in policy_evaluated; mox stops at the first aligned
// identifier (its Verify returns on an aligned SPF pass without looking at
// DKIM); go-msgauth's dmarc has no evaluation. We check them all, because
// the aggregate report's policy_evaluated and the explanations name each.
func (a *aligner) evaluate(in Input, res *Result) bool {
	rec := a.d.Record
	res.SPFAlignment = a.align(in.SPFDomain, spfPassed(in), rec.ASPF)
	res.SPFAligned = res.SPFAlignment.Aligned()
	res.DKIMAlignment = make([]Alignment, len(in.DKIM))
	relaxedDomain := ""
	for i, k := range in.DKIM {
		al := a.align(k.Domain, dkimPassed(k), rec.ADKIM)
		res.DKIMAlignment[i] = al
		switch {
		case al == AlignExact && !res.DKIMAligned:
			res.DKIMAligned, res.AlignedDKIMDomain = true, a.d.AuthorDomain
		case al == AlignRelaxed && relaxedDomain == "":
			relaxedDomain = normalizeID(k.Domain)
		}
	}
	if !res.DKIMAligned && relaxedDomain != "" {
		res.DKIMAligned, res.AlignedDKIMDomain = true, relaxedDomain
	}
	return res.SPFAligned || res.DKIMAligned
}

// align is the alignment of one identifier; mode is the record's aspf or
// adkim.
func (a *aligner) align(id string, passed bool, mode byte) Alignment {
	if !passed {
		return AlignNotPassed
	}
	switch id = normalizeID(id); {
	case id == "":
		return AlignNone
	case id == a.d.AuthorDomain:
		return AlignExact
	case mode != 'r':
		return AlignNone
	}
	return a.relaxed(id)
}

// passReason describes which identifiers aligned, and any whose alignment
// DNS left open.
func passReason(in Input, res *Result) string {
	var parts []string
	how := func(al Alignment) string {
		if al == AlignRelaxed {
			return ", relaxed"
		}
		return ""
	}
	switch res.SPFAlignment {
	case AlignExact, AlignRelaxed:
		parts = append(parts, "SPF aligned (smtp.mailfrom="+normalizeID(in.SPFDomain)+how(res.SPFAlignment)+")")
	case AlignUnknown:
		parts = append(parts, "SPF alignment unknown (DNS failure)")
	}
	var ds []string
	unknown := false
	for i, al := range res.DKIMAlignment {
		switch al {
		case AlignExact, AlignRelaxed:
			if d := "header.d=" + normalizeID(in.DKIM[i].Domain) + how(al); !slices.Contains(ds, d) {
				ds = append(ds, d)
			}
		case AlignUnknown:
			unknown = true
		}
	}
	if len(ds) > 0 {
		parts = append(parts, "DKIM aligned ("+strings.Join(ds, "; ")+")")
	}
	if unknown {
		parts = append(parts, "DKIM alignment of some signatures unknown (DNS failure)")
	}
	return strings.Join(parts, ", ")
}

// relaxed tells whether id (normalised, not the Author Domain) has the
// Author Domain's Organizational Domain (RFC 9989 §3.2.10.1, §4.10.2). It
// walks the DNS only when the answer can change the outcome, and goes on
// past a failed query: the check is left undecided (a.err set,
// AlignUnknown) only when some answers the failed queries could have given
// make the two Organizational Domains equal and others do not (RFC 9989
// §5.3.6: a query whose answer cannot change the result is not one
// "required to perform DMARC validation").
func (a *aligner) relaxed(id string) Alignment {
	author := a.d.AuthorDomain
	// The Organizational Domain of a name is the name or one of its
	// parents, so the two can only meet at a common parent: none (another
	// TLD) needs no DNS at all.
	if !sharesParent(id, author) {
		return AlignNone
	}
	aw := a.authorOrg()
	if !slices.ContainsFunc(aw.cands, func(o string) bool { return isSelfOrParent(o, id) }) {
		return AlignNone // no candidate is id or above it: not aligned, whatever failed
	}
	iw := a.orgOf(id)
	if aw.err == nil && iw.err == nil {
		return sameOrg(aw.cands[0] == iw.cands[0])
	}
	if !slices.ContainsFunc(iw.cands, func(o string) bool { return slices.Contains(aw.cands, o) }) {
		return AlignNone
	}
	// Both walks ask the same names above their common parent: guess the
	// failed answers jointly and see whether any guess changes the outcome.
	var outcomes [2]bool
	complete := forEachGuess(failedNames(aw.steps, iw.steps), func(g map[string]guess) bool {
		outcomes[b2i(aw.org(g) == iw.org(g))] = true
		return !(outcomes[0] && outcomes[1])
	})
	if complete && outcomes[0] != outcomes[1] {
		return sameOrg(outcomes[1])
	}
	if a.err == nil {
		a.err = cmp.Or(aw.err, iw.err)
	}
	return AlignUnknown
}

func sameOrg(same bool) Alignment {
	if same {
		return AlignRelaxed
	}
	return AlignNone
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// authorOrg returns what is known of the Author Domain's Organizational
// Domain. Discovery found it when the Author Domain had no record of its
// own (or one with psd=y/n); otherwise the walk starts now, from the record
// in hand (RFC 9989 §4.10.2).
func (a *aligner) authorOrg() orgWalk {
	if d := a.d; d.OrgDomain != "" {
		return orgWalk{start: d.AuthorDomain, cands: []string{d.OrgDomain}}
	}
	return a.orgOf(a.d.AuthorDomain)
}

// authorOrgKnown returns the Author Domain's Organizational Domain if it was
// needed and found, else "".
func (a *aligner) authorOrgKnown() string {
	if a.d.OrgDomain != "" {
		return a.d.OrgDomain
	}
	if w, ok := a.orgs[a.d.AuthorDomain]; ok && w.err == nil {
		return w.cands[0]
	}
	return ""
}

// orgOf walks for the Organizational Domain of id, going on past failed
// queries (see orgCandidates); the walk from the Author Domain reuses its
// record instead of asking again.
func (a *aligner) orgOf(id string) orgWalk {
	if w, ok := a.orgs[id]; ok {
		return w
	}
	w := orgWalk{start: id}
	if a.mode == ModeRFC7489 {
		w.cands = []string{pslOrgDomain(id)}
	} else {
		var first *step
		if id == a.d.AuthorDomain && a.d.PolicyDomain == id {
			first = &step{domain: id, rec: a.d.Record}
		}
		w.steps = (&walker{r: a.r}).walk(a.ctx, id, first, true)
		w.cands, w.err = orgCandidates(id, w.steps), firstErr(w.steps)
	}
	a.orgs[id] = w
	return w
}

// isSelfOrParent reports whether p is d or a parent domain of d.
func isSelfOrParent(p, d string) bool {
	return p == d || strings.HasSuffix(d, "."+p)
}

// sharesParent reports whether a and b have their last label in common.
func sharesParent(a, b string) bool {
	return a[strings.LastIndexByte(a, '.')+1:] == b[strings.LastIndexByte(b, '.')+1:]
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
