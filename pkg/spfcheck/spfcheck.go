// Package spfcheck evaluates SPF (RFC 7208) for the MAIL FROM and HELO
// identities of one SMTP transaction.
//
// It wraps blitiri.com.ar/go/spf (the check_host() engine) with what the
// library leaves to its caller: the null-sender rule (§2.4), the initial
// domain checks (§4.3), an overall time budget that ends in temperror, and
// results as plain values that say which identity and domain were checked;
// and it fixes what the library gets wrong by rewriting the records it
// reads: the syntax of §4.6 (syntax.go), a "/" inside a domain-spec and the
// %{p} macro (rewrite.go).
package spfcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/authmilter/authmilter/pkg/dnserr"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Status is an SPF result (RFC 7208 §2.6). The strings are the ones used in
// Authentication-Results and Received-SPF.
type Status string

// The SPF results, RFC 7208 §2.6.
const (
	StatusNone      Status = "none"      // §2.6.1: no record, or no valid domain to check
	StatusNeutral   Status = "neutral"   // §2.6.2: the domain makes no assertion
	StatusPass      Status = "pass"      // §2.6.3: the client is authorized
	StatusFail      Status = "fail"      // §2.6.4: the client is not authorized
	StatusSoftFail  Status = "softfail"  // §2.6.5: probably not authorized
	StatusTempError Status = "temperror" // §2.6.6: transient (DNS) error
	StatusPermError Status = "permerror" // §2.6.7: the records could not be interpreted
)

// Scopes of a check, as in RFC 8601 "smtp.mailfrom" / "smtp.helo" and the
// RFC 9990 report's SPF scope.
const (
	ScopeMailFrom = "mfrom"
	ScopeHELO     = "helo"
)

// DefaultTimeout is the overall budget of one check when Options.Timeout is
// zero. RFC 7208 §4.6.4 suggests at least 20 seconds.
const DefaultTimeout = 20 * time.Second

// Errors of a Result. DNS errors from the resolver come back unwrapped
// (*net.DNSError) for temperror.
var (
	ErrInvalidDomain = errors.New("spfcheck: invalid domain")
	ErrIPLiteral     = errors.New("spfcheck: HELO is an address literal")
	ErrInvalidIP     = errors.New("spfcheck: invalid client IP")
	ErrTimeout       = errors.New("spfcheck: time budget exceeded")
	ErrInternal      = errors.New("spfcheck: internal error")
	// ErrTemporary: a DNS lookup failed for a reason that proves nothing
	// (SERVFAIL, timeout, …): temperror (RFC 7208 §2.6.6). The DNS error
	// stays wrapped beside it.
	ErrTemporary = errors.New("spfcheck: temporary DNS failure")
)

// temporary marks a temperror's DNS error as ErrTemporary; its text stays
// the DNS error's, as the verify output and the logs have always shown it.
type temporary struct{ err error }

func (e temporary) Error() string   { return e.err.Error() }
func (e temporary) Unwrap() []error { return []error{ErrTemporary, e.err} }

// Resolver is the DNS access SPF needs; *resolver.Resolver satisfies it
// (so does *net.Resolver, though it folds SERVFAIL into not-found).
// Errors must be bare *net.DNSError values (IsNotFound / IsTemporary).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Options tune a check; nil means defaults.
type Options struct {
	// Timeout is the overall budget for the check; default 20 s. When it
	// runs out the result is temperror.
	Timeout time.Duration
}

// Result is the result of one check.
type Result struct {
	Status   Status
	Domain   string // the domain checked (lowercase), "" if there was none
	Identity string // the identity checked: the sender, or postmaster@<helo>
	Scope    string // ScopeMailFrom or ScopeHELO
	Reason   string // short: the matched mechanism, or what went wrong
	Err      error  // set for temperror and permerror, and for invalid input
}

// CheckMailFrom checks the MAIL FROM identity (RFC 7208 §2.4). A null
// sender ("" or "<>") is checked as postmaster@<helo>; its result is still
// the mfrom result.
func CheckMailFrom(ctx context.Context, r Resolver, ip net.IP, helo, sender string, o *Options) Result {
	sender = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(sender), "<"), ">")
	helo = strings.TrimSpace(helo)
	out := Result{Scope: ScopeMailFrom, Identity: sender}
	var domain string
	if sender == "" {
		// §2.4: the null reverse-path is checked as postmaster@<HELO>.
		out.Identity = "postmaster@" + helo
		domain = helo
		if isIPLiteral(helo) {
			out.Status, out.Reason, out.Err = StatusNone, "null sender and HELO is an address literal", ErrIPLiteral
			return out
		}
	} else {
		at := strings.LastIndexByte(sender, '@')
		if at < 0 {
			// §4.3: no valid domain to check.
			out.Status, out.Reason, out.Err = StatusNone, "sender has no domain", ErrInvalidDomain
			return out
		}
		domain = sender[at+1:]
		if at == 0 {
			// §4.3: an empty local-part is taken as "postmaster".
			sender = "postmaster" + sender
			out.Identity = sender
		}
	}
	out.Domain = identity.Fold(domain)
	return check(ctx, r, ip, helo, out.Identity, out, o)
}

// CheckHELO checks the HELO identity (RFC 7208 §2.3), as postmaster@<helo>.
// An address literal or a name that is not a fully qualified domain gives
// none. The HELO result never feeds DMARC.
func CheckHELO(ctx context.Context, r Resolver, ip net.IP, helo string, o *Options) Result {
	helo = strings.TrimSpace(helo)
	out := Result{Scope: ScopeHELO, Identity: "postmaster@" + helo}
	if isIPLiteral(helo) {
		out.Status, out.Reason, out.Err = StatusNone, "HELO is an address literal", ErrIPLiteral
		return out
	}
	out.Domain = identity.Fold(helo)
	return check(ctx, r, ip, helo, out.Identity, out, o)
}

// check runs check_host() for out.Domain with the time budget.
func check(ctx context.Context, r Resolver, ip net.IP, helo, sender string, out Result, o *Options) (res Result) {
	if ip.To16() == nil {
		out.Status, out.Reason, out.Err = StatusPermError, "invalid client IP", ErrInvalidIP
		return out
	}
	// §4.3: a malformed domain or one that is not fully qualified gives none.
	if err := validDomain(out.Domain); err != nil {
		out.Status, out.Reason, out.Err = StatusNone, err.Error(), fmt.Errorf("%w: %q: %v", ErrInvalidDomain, out.Domain, err)
		return out
	}
	timeout := DefaultTimeout
	if o != nil && o.Timeout > 0 {
		timeout = o.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	defer func() {
		// Bad input must never crash the milter. A panic inside the
		// library means a record it could not interpret: permerror.
		if p := recover(); p != nil {
			res = out
			res.Status, res.Reason, res.Err = StatusPermError, "internal error", fmt.Errorf("%w: %v", ErrInternal, p)
		}
	}()
	sr := &syntaxChecking{Resolver: r, ip: ip}
	result, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithContext(ctx), spf.WithResolver(sr))
	out.Status = Status(result)
	out.Reason = reason(err)

	switch {
	case ctx.Err() != nil && out.Status != StatusTempError:
		// The budget ran out: some lookups were cut short and the library
		// may have skipped them (e.g. §5.4 MX hosts) and reached a wrong
		// answer. Say temperror rather than a result we can't stand by.
		out.Status, out.Reason, out.Err = StatusTempError, "time budget exceeded", ErrTimeout
	case sr.err != nil:
		// §4.6: a syntax error anywhere in a record that was evaluated
		// is permerror, whatever an earlier term matched.
		out.Status, out.Reason, out.Err = StatusPermError, "syntax error", sr.err
	case out.Status == StatusTempError && err != nil:
		out.Err = temporary{err}
	case out.Status == StatusTempError || out.Status == StatusPermError:
		out.Err = err
	}
	return out
}

// syntaxChecking sits between the library and the resolver: it checks the
// syntax of every SPF record fetched, keeping the first error, and hands the
// library a rewritten equivalent of a valid record where the library would
// misread it (see rewrite.go). Names the library asks for are unmarked;
// errors stay bare *net.DNSError. The library looks records up one at a
// time, in order.
type syntaxChecking struct {
	Resolver
	ip  net.IP
	err error
	// valid holds the validated names of ip for %{p}, looked up once per
	// check when a record first needs them.
	valid     []string
	validDone bool
}

func (s *syntaxChecking) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = unmark(name)
	txts, err := s.Resolver.LookupTXT(ctx, name)
	if err != nil || s.err != nil {
		return txts, err
	}
	// Select records the way the library does (§4.5); with several the
	// library returns permerror itself.
	at := -1
	for i, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			if at >= 0 {
				return txts, nil
			}
			at = i
		}
	}
	if at < 0 {
		return txts, nil
	}
	if serr := CheckRecordSyntax(txts[at]); serr != nil {
		s.err = fmt.Errorf("%s: %w", name, serr)
		return txts, nil
	}
	domain := strings.TrimSuffix(name, ".")
	rec := rewriteRecord(txts[at], domain, func() string {
		if !s.validDone {
			s.valid, s.validDone = validatedNames(ctx, s.Resolver, s.ip), true
		}
		return pickValidated(s.valid, domain)
	})
	if rec != txts[at] {
		txts = slices.Clone(txts)
		txts[at] = rec
	}
	return txts, nil
}

func (s *syntaxChecking) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return s.Resolver.LookupIPAddr(ctx, unmark(host))
}

func (s *syntaxChecking) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return s.Resolver.LookupMX(ctx, unmark(name))
}

// reason turns the library's explanation into a short text.
func reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, spf.ErrMatchedAll):
		return "matched all"
	case errors.Is(err, spf.ErrMatchedA):
		return "matched a"
	case errors.Is(err, spf.ErrMatchedIP):
		return "matched ip"
	case errors.Is(err, spf.ErrMatchedMX):
		return "matched mx"
	case errors.Is(err, spf.ErrMatchedPTR):
		return "matched ptr"
	case errors.Is(err, spf.ErrMatchedExists):
		return "matched exists"
	case errors.Is(err, spf.ErrNoResult):
		return "no SPF record"
	}
	// A DNS failure, in words, without the resolver's addresses.
	if what, name, ok := dnserr.Describe(err); ok {
		if name != "" {
			what += " for " + name
		}
		return what
	}
	return err.Error()
}

// isIPLiteral reports whether a HELO name is an address literal, bracketed
// (RFC 5321 §4.1.3) or bare.
func isIPLiteral(helo string) bool {
	if strings.HasPrefix(helo, "[") && strings.HasSuffix(helo, "]") {
		return true
	}
	_, err := netip.ParseAddr(helo)
	return err == nil
}

// validDomain applies RFC 7208 §4.3: the domain must be a fully qualified
// domain name with no empty label and no label over 63 octets (RFC 1035
// §2.3.4), 253 octets at most.
func validDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty domain")
	case len(d) > 253:
		return errors.New("domain longer than 253 octets")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return errors.New("domain is not fully qualified")
	}

	for _, l := range labels {
		switch {
		case l == "":
			return errors.New("empty label in domain")
		case len(l) > 63:
			return errors.New("label longer than 63 octets")
		}
	}
	if _, err := identity.ASCII(d); err != nil {
		// Not a host name (RFC 5321 §4.1.2 Domain):
		// "legit.example(a.attacker.example" is no domain, and querying it
		// would ask the attacker's zone (issue #15 item 5).
		return errors.New("domain is not a host name")
	}
	return nil
}
