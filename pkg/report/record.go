// Package report is the DMARC aggregate report model (RFC 9990, and the RFC
// 7489 format as an option): the per-message Record the milter keeps, the
// aggregation of records into reports, and their XML; and the reader of the
// reports other receivers send us (read.go, unpack.go: XML, gzip, zip and
// report mails, bounded and all-or-nothing).
package report

import "time"

// Record is what one evaluated message leaves for aggregate reporting: every
// field RFC 9990 §3.1 needs, as plain values. One Record per author domain
// that was evaluated (a message with several From domains gives several).
type Record struct {
	Time       time.Time // end of message, UTC
	Reporter   string    // our reporter identity (the authserv-id)
	QueueID    string    // the MTA's queue id, for tracing; not reported
	SourceIP   string    // the client address
	HeaderFrom string    // the author domain
	// EnvelopeFrom is the MAIL FROM domain (RFC 9990 identifiers/envelope_from);
	// empty for the null sender.
	EnvelopeFrom string
	EnvelopeTo   []string // recipient domains, distinct, lowercase

	SPF  []SPFResult  // the MAIL FROM check (scope mfrom); at most one today
	DKIM []DKIMResult // every signature, in header order

	Policy PolicyPublished

	// Disposition is the evaluated disposition: none, pass, quarantine or
	// reject (RFC 9990 ActionDispositionType).
	Disposition string
	DKIMAligned string // "pass" or "fail" (DMARCResultType)
	SPFAligned  string // "pass" or "fail"
	// Overrides are the local reasons that changed the disposition
	// (PolicyOverrideType: local_policy, mailing_list, other,
	// policy_test_mode, trusted_forwarder; sampled_out in RFC 7489 mode).
	Overrides []Override
	// DMARCResult is the dmarc= result (pass, fail, none, temperror,
	// permerror); temperror and permerror rows are kept but not reported.
	DMARCResult string
}

// SPFResult is one SPF check (RFC 9990 spf_auth_result).
type SPFResult struct {
	Domain string
	Scope  string // "mfrom" (RFC 9990 only reports the MAIL FROM check)
	Result string // none, neutral, pass, fail, softfail, temperror, permerror
}

// DKIMResult is one signature (RFC 9990 dkim_auth_result).
type DKIMResult struct {
	Domain   string
	Selector string
	Result   string // none, pass, fail, policy, neutral, temperror, permerror
}

// Override is one policy override reason with an optional comment.
type Override struct {
	Type    string
	Comment string
}

// PolicyPublished is the DMARC policy the evaluation used (RFC 9990
// policy_published).
type PolicyPublished struct {
	Domain          string // the domain where the record was found
	DiscoveryMethod string // "treewalk" or "psl"
	ADKIM, ASPF     string // "r" or "s"
	P, SP, NP       string // none, quarantine, reject; "" when absent
	Testing         string // "y" or "n"
	Pct             int    // RFC 7489 mode only; -1 when absent
	RUA             []URI  // where reports go, in published order
	FO              string
}

// URI is one rua destination: the URI and its optional size limit
// ("10m", RFC 9989 §4.7 tag rua), kept apart.
type URI struct {
	Address string
	MaxSize string
}
