// Package failrep makes DMARC failure reports (RFC 9991, in the format of
// RFC 6591 and RFC 5965): it decides which failures of a checked message
// the policy domain asked to hear about (the fo= tag), keeps what the report
// may carry (header fields only, local parts redacted), applies the rate
// limits and queues one report per ruf destination in the store; the report
// mail itself is written by Compose when internal/reportmail sends it.
//
// Why so careful: a failure report sends header fields of a real message to
// a third party, and a spoofer who controls a DMARC record can ask for
// reports to anyone. Most large receivers stopped sending them for these
// reasons (RFC 9991 §7). So: off by default; only policy domains the site
// lists; external destinations verified (RFC 9990 §4, the same code as
// aggregate reports); no body ever; one report per (policy domain, source
// IP, failure kind) per interval, a global hourly cap and a cap per
// destination per day, all kept in the store so that restarts and several
// MX hosts share them; nothing about report mail (loops).
package failrep

import (
	"strings"
	"time"

	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// Kind is the failure a report is about; it is also the third part of the
// per-source rate-limit key.
type Kind string

// The failure kinds, by the fo= option that asks for them (RFC 9989 §4.7).
const (
	KindDMARC Kind = "dmarc" // fo=0 (nothing aligned passed) and fo=1 (something aligned failed)
	KindDKIM  Kind = "dkim"  // fo=d: a DKIM signature failed, aligned or not
	KindSPF   Kind = "spf"   // fo=s: SPF failed, aligned or not
)

// Report is one failure report as queued: everything the report mail
// needs, already redacted. It is stored as JSON (one row per destination)
// and turned into mail by Compose.
type Report struct {
	Kind             Kind      `json:"kind"`
	AuthFailure      string    `json:"auth_failure"` // RFC 6591 §3.2.2 / RFC 9991 §3: dmarc, spf, bodyhash, revoked, signature
	Arrival          time.Time `json:"arrival"`
	ReportingMTA     string    `json:"reporting_mta"` // our authserv-id
	SourceIP         string    `json:"source_ip"`
	AuthorDomain     string    `json:"author_domain"` // Reported-Domain
	PolicyDomain     string    `json:"policy_domain"`
	DiscoveryMethod  string    `json:"discovery_method"` // how the policy was found: treewalk or psl
	OriginalMailFrom string    `json:"original_mail_from"`
	// IdentityAlignment lists the mechanisms that did not authenticate an
	// aligned identifier ("dkim", "spf"); empty means "none" (RFC 9991 §3).
	IdentityAlignment []string `json:"identity_alignment"`
	DKIMDomain        string   `json:"dkim_domain,omitempty"`
	DKIMIdentity      string   `json:"dkim_identity,omitempty"`
	DKIMSelector      string   `json:"dkim_selector,omitempty"`
	SPFDomain         string   `json:"spf_domain,omitempty"`
	SPFDNS            []string `json:"spf_dns,omitempty"` // the SPF record(s) at SPFDomain, for SPF-DNS
	AuthResults       string   `json:"auth_results"`      // our Authentication-Results value
	DeliveryResult    string   `json:"delivery_result"`   // RFC 6591 §3.2: delivered, spam, policy, reject, other
	Subject           string   `json:"subject,omitempty"` // the reported message's, redacted like the rest
	Headers           string   `json:"headers"`           // the header block, CRLF, redacted
	URI               string   `json:"uri"`               // the ruf URI this copy goes to
}

// failureOptions parses a record's fo= value (colon-separated, validated
// by pkg/dmarc) into the set of options.
func failureOptions(fo string) map[string]bool {
	opts := map[string]bool{}
	for _, o := range strings.Split(fo, ":") {
		if o = strings.TrimSpace(strings.ToLower(o)); o != "" {
			opts[o] = true
		}
	}
	if len(opts) == 0 {
		opts["0"] = true
	}
	return opts
}

// Failure is one report a message warrants for one author domain.
type Failure struct {
	Kind              Kind
	AuthFailure       string
	IdentityAlignment []string
	DKIM              *dkimverify.Result // the failed signature a dkim report (or an aligned dkim failure) is about
}

// Failures decides which failure reports the DMARC evaluation res of one
// author domain asks for, by its record's fo= tag (RFC 9989 §4.7, RFC 7489
// §6.3):
//
//	0  all mechanisms failed to produce an aligned pass (DMARC fail)
//	1  any mechanism failed to produce an aligned pass
//	d  a DKIM signature failed verification, aligned or not
//	s  SPF failed, aligned or not
//
// Only pass and fail evaluations qualify: temperror, permerror and none
// are not failures of the domain's mail (there was no usable policy, or no
// answer). "Failed" for a DKIM signature means fail or permerror (it was
// evaluated and did not verify: body hash, signature, revoked or malformed
// key); a temperror is not a failure, a policy refusal is ours. For SPF it
// means fail or permerror; softfail is the domain's own "do not judge".
// What the others do: OpenDMARC reports fo=0/1 and reads d/s as 1;
// Mail::DMARC and rspamd send fo=0 style reports only.
func Failures(r *engine.Result, res dmarc.Result) []Failure {
	if res.Discovery == nil || res.Discovery.Record == nil {
		return nil
	}
	if res.Status != dmarc.StatusPass && res.Status != dmarc.StatusFail {
		return nil
	}
	opts := failureOptions(res.Discovery.Record.FO)
	var misaligned []string
	if !res.DKIMAligned {
		misaligned = append(misaligned, "dkim")
	}
	if !res.SPFAligned {
		misaligned = append(misaligned, "spf")
	}
	var out []Failure
	if (opts["0"] && res.Status == dmarc.StatusFail) || (opts["1"] && len(misaligned) > 0) {
		f := Failure{Kind: KindDMARC, AuthFailure: "dmarc", IdentityAlignment: misaligned}
		if !res.DKIMAligned {
			f.DKIM = alignedFailedSignature(r.DKIM, res.AuthorDomain, res.OrgDomainForAlignment())
		}
		out = append(out, f)
	}
	if opts["d"] {
		for i := range r.DKIM {
			if failed(r.DKIM[i].Status) {
				out = append(out, Failure{Kind: KindDKIM, AuthFailure: dkimAuthFailure(r.DKIM[i]),
					IdentityAlignment: misaligned, DKIM: &r.DKIM[i]})
				break // one per message: the rate limit would drop the rest
			}
		}
	}
	if opts["s"] && (r.SPF.Status == spfcheck.StatusFail || r.SPF.Status == spfcheck.StatusPermError) {
		out = append(out, Failure{Kind: KindSPF, AuthFailure: "spf", IdentityAlignment: misaligned})
	}
	return out
}

func failed(s dkimverify.Status) bool {
	return s == dkimverify.StatusFail || s == dkimverify.StatusPermError
}

// dkimAuthFailure names a DKIM failure as RFC 6591 §3.2.2 does: bodyhash
// (the body was changed), revoked (empty p=), signature (everything else).
func dkimAuthFailure(d dkimverify.Result) string {
	switch {
	case strings.HasPrefix(d.Reason, "body hash"):
		return "bodyhash"
	case strings.Contains(d.Reason, "revoked"):
		return "revoked"
	}
	return "signature"
}

// alignedFailedSignature returns the first failed signature whose d= is
// the author domain or shares its Organizational Domain (relaxed
// alignment, RFC 9989 §4.4.1): RFC 9991 §3 requires its DKIM-Domain,
// DKIM-Identity and DKIM-Selector in the report.
func alignedFailedSignature(sigs []dkimverify.Result, author, org string) *dkimverify.Result {
	for i := range sigs {
		d := sigs[i].Domain
		if !failed(sigs[i].Status) {
			continue
		}
		if d == author || (org != "" && (d == org || strings.HasSuffix(d, "."+org))) {
			return &sigs[i]
		}
	}
	return nil
}

// deliveryResult maps what the MTA was told onto RFC 6591 §3.2's
// Delivery-Result values.
func deliveryResult(action string) string {
	switch action {
	case "accept":
		return "delivered"
	case "quarantine":
		return "policy"
	case "reject":
		return "reject"
	}
	return "other"
}
