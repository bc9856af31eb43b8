package store

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/report"
)

// Message is what the service knows of one message at its end: the checks'
// result, the policy's decision and the envelope.
type Message struct {
	Result     *engine.Result
	Decision   policy.Decision
	Reporter   string     // our authserv-id
	QueueID    string     // the MTA's queue id
	ClientIP   netip.Addr // invalid when unknown
	MailFrom   string     // without angle brackets; "" for the null sender
	Recipients []string   // RCPT TO addresses as the MTA sent them
	Time       time.Time  // end of message
}

// Exclusions is the report-loop protection list: recipients whose mail
// leaves no record, by full address ("dmarc-reports@example.net") or by
// domain ("@example.net"). Compared case-insensitively.
type Exclusions struct {
	addrs   map[string]bool
	domains map[string]bool
}

// ParseExclusions reads the exclude_recipients option.
func ParseExclusions(list []string) (Exclusions, error) {
	e := Exclusions{addrs: map[string]bool{}, domains: map[string]bool{}}
	for _, s := range list {
		v := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
		at := strings.LastIndexByte(v, '@')
		switch {
		case at < 0 || at == len(v)-1 || strings.ContainsAny(v, " \t<>"):
			return Exclusions{}, fmt.Errorf("store: %q is neither an address nor @domain", s)
		case at == 0:
			e.domains[v[1:]] = true
		default:
			e.addrs[v] = true
		}
	}
	return e, nil
}

// Excluded reports whether mail to addr leaves no record.
func (e Exclusions) Excluded(addr string) bool {
	a := normAddr(addr)
	if e.addrs[a] {
		return true
	}
	if at := strings.LastIndexByte(a, '@'); at >= 0 {
		return e.domains[a[at+1:]]
	}
	return false
}

func normAddr(addr string) string {
	return identity.Fold(identity.StripPath(addr))
}

// domainOf returns the lowercase domain of an address, "" when it has none.
func domainOf(addr string) string {
	return identity.Fold(identity.DomainOf(addr))
}

// Build turns one message into its records, one per evaluated author domain
// (engine.Result.DMARCAll), and returns nil when nothing is worth keeping.
//
// What is recorded, and why:
//   - Only author domains whose discovery found a DMARC Policy Record with at
//     least one rua URI. Aggregate reports go to the rua addresses of the
//     policy domain (RFC 9990 §2, RFC 9989 §4.7 tag rua); a record without a
//     policy domain or without rua can never be reported, so keeping it would
//     only fill the disk. Messages without a DMARC evaluation (no From, DMARC
//     off, multi_from = skip) leave nothing for the same reason.
//   - temperror and permerror evaluations that did find a record are kept
//     with their DMARCResult; the report builder decides what to send.
//   - Recipients on the exclusion list are left out of envelope_to; a message
//     whose recipients are all excluded leaves no record (report-loop
//     protection: the reports we receive must not generate reports).
//
// The disposition of the author domain that decided the message is the
// policy's (Decision.Disposition, with its override reason). With several
// author domains (RFC 9989 §11.5) a domain that passed says "pass"; every
// other domain gets what happened to the message, with an "other" override
// when that is not its own policy.
func Build(m Message, excl Exclusions) []report.Record {
	r := m.Result
	if r == nil || len(r.DMARCAll) == 0 {
		return nil
	}
	var to []string
	seen := map[string]bool{}
	for _, rc := range m.Recipients {
		if excl.Excluded(rc) {
			continue
		}
		d := domainOf(rc)
		if !seen[d] {
			seen[d] = true
			to = append(to, d)
		}
	}
	if len(m.Recipients) > 0 && len(seen) == 0 {
		return nil
	}
	// Domain-less recipients (e.g. "postmaster") add nothing reportable.
	to = removeEmpty(to)
	slices.Sort(to)

	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	base := report.Record{
		Time:         t.UTC(),
		Reporter:     m.Reporter,
		QueueID:      m.QueueID,
		EnvelopeFrom: domainOf(m.MailFrom),
		EnvelopeTo:   to,
	}
	if m.ClientIP.IsValid() {
		base.SourceIP = m.ClientIP.Unmap().String()
	}
	// RFC 9990 spf element: only the MAIL FROM identity, scope mfrom (for the
	// null sender that is postmaster@HELO, RFC 7208 §2.4).
	if r.SPF.Status != "" {
		base.SPF = []report.SPFResult{{Domain: r.SPF.Domain, Scope: "mfrom", Result: string(r.SPF.Status)}}
	}
	for _, k := range r.DKIM {
		base.DKIM = append(base.DKIM, report.DKIMResult{Domain: k.Domain, Selector: k.Selector, Result: string(k.Status)})
	}

	var out []report.Record
	for _, res := range r.DMARCAll {
		d := res.Discovery
		if d == nil || d.Record == nil || d.PolicyDomain == "" || len(d.Record.RUA) == 0 {
			continue
		}
		rec := base
		rec.SPF = append([]report.SPFResult(nil), base.SPF...)
		rec.DKIM = append([]report.DKIMResult(nil), base.DKIM...)
		rec.EnvelopeTo = append([]string(nil), base.EnvelopeTo...)
		rec.HeaderFrom = res.AuthorDomain
		rec.Policy = published(d)
		rec.DMARCResult = string(res.Status)
		rec.DKIMAligned, rec.SPFAligned = passFail(res.DKIMAligned), passFail(res.SPFAligned)

		decisive := res.AuthorDomain == r.DMARC.AuthorDomain
		switch {
		case decisive:
			rec.Disposition = m.Decision.Disposition
			if m.Decision.Override != "" {
				rec.Overrides = []report.Override{{Type: m.Decision.Override, Comment: m.Decision.Why}}
			}
		case res.Status == dmarc.StatusPass:
			rec.Disposition = "pass"
		default:
			rec.Disposition = m.Decision.Disposition
			own := string(res.Applied)
			if own == "" {
				own = "none"
			}
			if own != rec.Disposition {
				rec.Overrides = []report.Override{{Type: "other",
					Comment: "several author domains; the strictest policy applied (RFC 9989 §11.5)"}}
			}
		}
		if rec.Disposition == "" {
			rec.Disposition = "none"
		}
		out = append(out, rec)
	}
	return out
}

func removeEmpty(s []string) []string {
	out := s[:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// passFail is a policy_evaluated value. dmarc checks every identifier
// (RFC 9989 §5.3.4), so "fail" means it did not align — or, in a message
// that passed through another identifier, that DNS left its relaxed
// alignment open (dmarc.AlignUnknown): not established, so not a pass.
func passFail(b bool) string {
	if b {
		return "pass"
	}
	return "fail"
}

// published copies the policy the evaluation used (RFC 9990
// policy_published).
func published(d *dmarc.Discovery) report.PolicyPublished {
	rec := d.Record
	p := report.PolicyPublished{
		Domain:          d.PolicyDomain,
		DiscoveryMethod: d.Method,
		ADKIM:           alignMode(rec.ADKIM),
		ASPF:            alignMode(rec.ASPF),
		P:               string(rec.Policy),
		SP:              string(rec.SubdomainPolicy),
		NP:              string(rec.NonexistentPolicy),
		Testing:         "n",
		Pct:             -1,
		FO:              rec.FO,
	}
	if rec.Testing {
		p.Testing = "y"
	}
	// pct exists only in RFC 7489 mode, whose discovery is the PSL.
	if d.Method == dmarc.MethodPSL {
		p.Pct = rec.Pct
	}
	for _, u := range rec.RUA {
		p.RUA = append(p.RUA, report.URI{Address: u.Address, MaxSize: u.MaxSize})
	}
	return p
}

func alignMode(b byte) string {
	if b == 's' {
		return "s"
	}
	return "r"
}
