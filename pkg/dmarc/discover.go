package dmarc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/authmilter/authmilter/pkg/dnserr"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Resolver is the DNS this package needs. Errors must be *net.DNSError
// (possibly wrapped): IsNotFound for NXDOMAIN/NODATA; anything else counts as
// a temporary failure.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// DomainExists is false only on NXDOMAIN (RFC 8020).
	DomainExists(ctx context.Context, name string) (bool, error)
}

// Mode selects how the Organizational Domain and the policy are found.
type Mode string

const (
	// ModeRFC9989 is the DNS tree walk of RFC 9989 §4.10 (the default).
	ModeRFC9989 Mode = "rfc9989"
	// ModeRFC7489 uses the Public Suffix List (ICANN section) and the pct
	// tag as RFC 7489 §3.2 and §6.6.3 describe.
	ModeRFC7489 Mode = "rfc7489"
)

// Discovery methods as named in RFC 9990 aggregate reports.
const (
	MethodTreeWalk = "treewalk"
	MethodPSL      = "psl"
)

// maxWalkQueries is the tree-walk query cap of RFC 9989 §4.10.
const maxWalkQueries = 8

// Errors of policy discovery.
var (
	// ErrNoPolicy: no DMARC Policy Record applies to the Author Domain; the
	// DMARC mechanism does not apply (RFC 9989 §5.3.2), result "none".
	ErrNoPolicy = errors.New("dmarc: no DMARC policy record")
	// ErrTemporary wraps DNS failures (SERVFAIL, timeouts, ...) during
	// discovery: the result is "temperror" (RFC 9989 §4.10.1, §5.3.6).
	ErrTemporary = errors.New("dmarc: temporary DNS failure")
)

// Discovery is the outcome of policy discovery for one Author Domain.
type Discovery struct {
	AuthorDomain string
	// PolicyDomain is where Record was found: the Author Domain, its
	// Organizational Domain or its Public Suffix Domain.
	PolicyDomain string
	// OrgDomain is the Organizational Domain of the Author Domain.
	OrgDomain string
	Record    *Record
	Method    string // MethodTreeWalk or MethodPSL
	// NonExistent is true when the Author Domain was checked and does not
	// exist (NXDOMAIN), which selects np. It is only checked when the record
	// came from a parent domain and has an np tag.
	NonExistent bool
	// Queries lists the names asked, in order, for explanations.
	Queries []string
	// Skipped lists names whose TXT answer held several DMARC records and
	// was therefore ignored (RFC 9989 §4.10 step 2).
	Skipped []string
}

// Published returns the policy that applies to the Author Domain ("" for no
// DMARC processing, see Record.Applicable).
func (d *Discovery) Published() Policy {
	if d == nil || d.Record == nil {
		return ""
	}
	return d.Record.Applicable(d.PolicyDomain != d.AuthorDomain, d.NonExistent)
}

// step is one query of a tree walk: the single DMARC record at _dmarc.<domain>
// (nil for none), or the DNS failure that left it unknown.
type step struct {
	domain string
	rec    *Record
	err    error // an ErrTemporary error; rec is then nil
}

// walker runs queries and records them.
type walker struct {
	r       Resolver
	queries []string
	skipped []string
}

// lookup fetches the single DMARC record at _dmarc.<domain>. It returns nil
// (no error) when there is none, or several (RFC 9989 §4.10 step 2: all are
// then discarded). Only TXT strings beginning "v=DMARC1" count.
func (w *walker) lookup(ctx context.Context, domain string) (*Record, error) {
	name := "_dmarc." + domain + "."
	w.queries = append(w.queries, strings.TrimSuffix(name, "."))
	txts, err := w.r.LookupTXT(ctx, name)
	if err != nil {
		if dnserr.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: TXT %s: %w", ErrTemporary, name, err)
	}
	var rec *Record
	n := 0
	for _, t := range txts {
		if !IsDMARCRecord(t) {
			continue
		}
		n++
		if n == 1 {
			rec, _ = ParseRecord(t) // cannot fail: IsDMARCRecord checked the version
		}
	}
	if n > 1 {
		w.skipped = append(w.skipped, domain)
		return nil, nil
	}
	return rec, nil
}

// walk is the DNS tree walk of RFC 9989 §4.10 from start: query start, then
// (cutting a name of 8 or more labels to 7) one label less at a time, at
// most 8 queries, stopping at a record with psd=y or psd=n. first, when not
// nil, is the answer for start already in hand (not asked again). With
// pastFailures false the walk ends at the first DNS failure (the failing
// step is the last one returned); with it true a failure is noted and the
// walk goes on, so that the names above can still settle the answer (see
// orgCandidates). The steps come longest name first.
func (w *walker) walk(ctx context.Context, start string, first *step, pastFailures bool) []step {
	var steps []step
	labels := strings.Split(start, ".")
	i := 0
	for q := 0; q < maxWalkQueries && i < len(labels); q++ {
		name := strings.Join(labels[i:], ".")
		s := step{domain: name}
		if q == 0 && first != nil {
			s = *first
		} else {
			s.rec, s.err = w.lookup(ctx, name)
		}
		steps = append(steps, s)
		if s.err != nil && !pastFailures {
			break
		}
		if s.rec != nil && (s.rec.PSD == 'y' || s.rec.PSD == 'n') { // steps 2 and 6: stop
			break
		}
		// Steps 4 and 7: x >= 8 labels → cut to 7, else drop one label.
		if x := len(labels) - i; x >= maxWalkQueries {
			i = len(labels) - (maxWalkQueries - 1)
		} else {
			i++
		}
	}
	return steps
}

// firstErr returns the first DNS failure of a walk, or nil.
func firstErr(steps []step) error {
	for _, s := range steps {
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

// guess is what a failed query of a walk could have answered.
type guess uint8

const (
	guessNoRecord guess = iota
	guessRecord         // a record without psd=y/n
	guessPSDn           // a record with psd=n
	guessPSDy           // a record with psd=y
	nGuesses
)

// selectOrg is the selection of RFC 9989 §4.10.2 over the steps of a walk
// started at start, longest name first: psd=n → that name; psd=y below the
// start → the name one label below it; otherwise the name with the fewest
// labels that has a record; with no record, start itself. A failed step
// counts as guesses says (no record when guesses is nil).
func selectOrg(start string, steps []step, guesses map[string]guess) string {
	fewest := start
	for _, s := range steps {
		has, psd := s.rec != nil, byte('u')
		if has {
			psd = s.rec.PSD
		}
		if s.err != nil {
			switch guesses[s.domain] {
			case guessNoRecord:
				has = false
			case guessRecord:
				has = true
			case guessPSDn:
				has, psd = true, 'n'
			case guessPSDy:
				has, psd = true, 'y'
			}
		}
		switch {
		case !has:
		case psd == 'n' || (psd == 'y' && s.domain == start):
			// A psd=y at the start is not rule 2; the walk stopped there, so
			// its record is the one with the fewest labels.
			return s.domain
		case psd == 'y':
			return oneBelow(start, s.domain)
		default:
			fewest = s.domain
		}
	}
	return fewest
}

// orgFromWalk is the Organizational Domain from the steps of a walk with no
// failure (RFC 9989 §4.10.2).
func orgFromWalk(start string, steps []step) string {
	return selectOrg(start, steps, nil)
}

// orgCandidates returns every name the Organizational Domain of start can be
// given the steps of its walk: exactly one without a failed step. A failed
// step could have held no record, a record without psd (a candidate for
// "fewest labels"), psd=n (that name) or psd=y (one below it), so each adds
// the names it could make the answer.
func orgCandidates(start string, steps []step) []string {
	var cands []string
	add := func(d string) {
		if !slices.Contains(cands, d) {
			cands = append(cands, d)
		}
	}
	for _, s := range steps {
		if s.err != nil {
			add(s.domain)
			if s.domain != start {
				add(oneBelow(start, s.domain))
			}
		}
	}
	// Every failed step without a record: the walk's own answer.
	add(selectOrg(start, steps, nil))
	return cands
}

// failedNames lists the names whose query failed in the given walks, once.
func failedNames(walks ...[]step) []string {
	var names []string
	for _, steps := range walks {
		for _, s := range steps {
			if s.err != nil && !slices.Contains(names, s.domain) {
				names = append(names, s.domain)
			}
		}
	}
	return names
}

// maxGuessed bounds the failed names whose answers are guessed jointly
// (nGuesses^maxGuessed combinations, 4096).
const maxGuessed = 6

// forEachGuess calls f with every combination of guesses for names until f
// returns false. It returns false without calling f when there are more
// than maxGuessed names.
func forEachGuess(names []string, f func(map[string]guess) bool) bool {
	if len(names) > maxGuessed {
		return false
	}
	g := make(map[string]guess, len(names))
	var rec func(i int) bool
	rec = func(i int) bool {
		if i == len(names) {
			return f(g)
		}
		for v := range nGuesses {
			g[names[i]] = v
			if !rec(i + 1) {
				return false
			}
		}
		return true
	}
	rec(0)
	return true
}

// oneBelow returns the name one label below parent on the way to d.
func oneBelow(d, parent string) string {
	prefix := strings.TrimSuffix(d, "."+parent)
	if i := strings.LastIndexByte(prefix, '.'); i >= 0 {
		prefix = prefix[i+1:]
	}
	return prefix + "." + parent
}

// Discover finds the DMARC Policy Record for authorDomain (lowercase A-label,
// see identity.ASCII) and, when the policy needs it, its Organizational
// Domain.
//
// ModeRFC9989 (RFC 9989 §4.10.1): _dmarc.<author> first. A record there
// settles the policy and no name above is asked: the Organizational Domain
// then matters only for relaxed alignment of an identifier other than the
// Author Domain, and EvaluateDiscovered walks for it only when one passed
// (RFC 9989 §4.10.2, §5.3.6) — a DNS failure above a domain with its own
// record cannot turn a spoofed message into temperror. Without a record at
// the author, the tree walk goes on up and gives both the Organizational
// Domain and the record applied: the first found of the Organizational
// Domain's and the Public Suffix Domain's (a psd=y record).
// ModeRFC7489 (RFC 7489 §6.6.3): _dmarc.<author>, then _dmarc.<org> with org
// from the Public Suffix List.
//
// It returns ErrNoPolicy when no record applies and an ErrTemporary error on
// DNS failure; both come with a non-nil Discovery holding the queries made.
//
// What others do (RFC 7489 lookups, which stop at the author's record too):
// mox's dmarc.Lookup asks _dmarc.<author>, then _dmarc.<org> from the Public
// Suffix List only when the first has no record, and any DNS error of the
// query it made is temperror; OpenDMARC's opendmarc_policy_query_dmarc does
// the same (from memory); go-msgauth's dmarc.Lookup asks _dmarc.<domain> only
// and leaves the fallback to the caller. None of them walks above a domain
// with its own record. We do the same for the policy and walk for the
// Organizational Domain only where RFC 9989 needs its answer.
func Discover(ctx context.Context, r Resolver, authorDomain string, mode Mode) (*Discovery, error) {
	author, err := identity.ASCII(authorDomain)
	if err != nil {
		return &Discovery{AuthorDomain: authorDomain}, err
	}
	d := &Discovery{AuthorDomain: author}
	w := &walker{r: r}
	defer func() { d.Queries, d.Skipped = w.queries, w.skipped }()

	if mode == ModeRFC7489 {
		d.Method = MethodPSL
		d.OrgDomain = pslOrgDomain(author)
		for _, name := range []string{author, d.OrgDomain} {
			rec, err := w.lookup(ctx, name)
			if err != nil {
				return d, err
			}
			if rec != nil {
				d.PolicyDomain, d.Record = name, rec
				break
			}
			if name == d.OrgDomain {
				break // author is the org domain: one query only
			}
		}
	} else {
		d.Method = MethodTreeWalk
		rec, err := w.lookup(ctx, author)
		if err != nil {
			return d, err
		}
		if rec != nil {
			d.PolicyDomain, d.Record = author, rec
			if rec.PSD == 'y' || rec.PSD == 'n' {
				d.OrgDomain = author // the walk would stop here (step 2)
			}
			return d, nil
		}
		steps := w.walk(ctx, author, &step{domain: author}, false)
		if err := firstErr(steps); err != nil {
			return d, err
		}
		d.OrgDomain = orgFromWalk(author, steps)
		d.PolicyDomain, d.Record = pickPolicy(d.OrgDomain, steps)
	}
	if d.Record == nil {
		return d, ErrNoPolicy
	}
	// np applies only to a non-existent Author Domain below the policy
	// domain (RFC 9989 §4.7 tag "np", §4.10.1). Without np the fallback is
	// sp, the same as for an existing subdomain, so only ask when it matters.
	if d.PolicyDomain != author && d.Record.NonexistentPolicy != "" {
		exists, err := r.DomainExists(ctx, author+".")
		w.queries = append(w.queries, author)
		if err != nil {
			return d, fmt.Errorf("%w: existence of %s: %w", ErrTemporary, author, err)
		}
		d.NonExistent = !exists
	}
	return d, nil
}

// pickPolicy chooses the record to apply when the Author Domain has none
// (RFC 9989 §4.10.1): the Organizational Domain's, else the Public Suffix
// Domain's — the psd=y record that ended the walk.
func pickPolicy(org string, steps []step) (string, *Record) {
	for _, s := range steps {
		if s.domain == org && s.rec != nil {
			return s.domain, s.rec
		}
	}
	if n := len(steps); n > 0 && steps[n-1].rec != nil && steps[n-1].rec.PSD == 'y' {
		return steps[n-1].domain, steps[n-1].rec
	}
	return "", nil
}

// OrgDomain returns the Organizational Domain of domain: in ModeRFC9989 by a
// tree walk starting at domain itself (RFC 9989 §4.10.2), in ModeRFC7489
// from the ICANN section of the Public Suffix List. DNS failures give an
// ErrTemporary error.
func OrgDomain(ctx context.Context, r Resolver, domain string, mode Mode) (string, error) {
	d, err := identity.ASCII(domain)
	if err != nil {
		return "", err
	}
	if mode == ModeRFC7489 {
		return pslOrgDomain(d), nil
	}
	w := &walker{r: r}
	steps := w.walk(ctx, d, nil, false)
	if err := firstErr(steps); err != nil {
		return "", err
	}
	return orgFromWalk(d, steps), nil
}

// pslOrgDomain is RFC 7489 §3.2: the public suffix (ICANN section only; a
// private-section entry such as blogspot.com does not make an
// Organizational Domain) plus one label. A name that is itself a public
// suffix is its own Organizational Domain. d must be lowercase A-labels.
func pslOrgDomain(d string) string {
	suffix, icann := publicsuffix.PublicSuffix(d)
	for !icann {
		// A private rule matched; the ICANN suffix is a proper suffix of it.
		i := strings.IndexByte(suffix, '.')
		if i < 0 {
			break // unlisted TLD: the default rule "*" (RFC 7489 §3.2 step 1)
		}
		suffix, icann = publicsuffix.PublicSuffix(suffix[i+1:])
	}
	if suffix == d || !strings.HasSuffix(d, "."+suffix) {
		return d
	}
	return oneBelow(d, suffix)
}

// Pending is a policy discovery running in the background, started as soon
// as the From field is seen so the answer is in by end of message.
type Pending struct {
	done chan struct{}
	d    *Discovery
	err  error
}

// StartDiscovery runs Discover in a new goroutine bound to ctx.
func StartDiscovery(ctx context.Context, r Resolver, authorDomain string, mode Mode) *Pending {
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer func() {
			if v := recover(); v != nil {
				p.d, p.err = &Discovery{AuthorDomain: authorDomain}, fmt.Errorf("%w: discovery panicked: %v", ErrTemporary, v)
			}
		}()
		p.d, p.err = Discover(ctx, r, authorDomain, mode)
	}()
	return p
}

// Wait returns the discovery's outcome, or an ErrTemporary error if ctx ends
// first.
func (p *Pending) Wait(ctx context.Context) (*Discovery, error) {
	select {
	case <-p.done:
		return p.d, p.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for policy discovery: %w", ErrTemporary, ctx.Err())
	}
}
