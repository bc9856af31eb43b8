package dmarc

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Policy is a Domain Owner Assessment Policy: the value of the p, sp and np
// tags (RFC 9989 §4.7).
type Policy string

// The three policies of RFC 9989 §4.7, from lenient to strict.
const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// rank orders policies by strictness; "" (no policy) ranks lowest.
func (p Policy) rank() int {
	switch p {
	case PolicyNone:
		return 1
	case PolicyQuarantine:
		return 2
	case PolicyReject:
		return 3
	}
	return 0
}

// stepDown returns the next-lower policy: reject→quarantine, quarantine→none
// (RFC 9989 §4.7 tag "t"; RFC 7489 §6.6.4 for pct sampling).
func (p Policy) stepDown() Policy {
	switch p {
	case PolicyReject:
		return PolicyQuarantine
	case PolicyQuarantine:
		return PolicyNone
	}
	return p
}

// URI is one DMARC reporting URI from rua or ruf. MaxSize holds the obsolete
// size suffix ("10m" from "!10m", RFC 9989 §4.8 obs-dmarc-report-size) apart
// from the address; reporters should ignore it.
type URI struct {
	Address string // the URI, e.g. "mailto:dmarc@example.com"
	MaxSize string // "" or digits with an optional k/m/g/t unit
}

// Record is a parsed DMARC Policy Record (RFC 9989 §4.7, §4.8).
type Record struct {
	// Policy, SubdomainPolicy and NonexistentPolicy are the p, sp and np
	// tags, "" when the tag is absent or its value is invalid (an invalid
	// value is listed in Invalid). Use Record.Applicable for the policy that
	// applies to a message.
	Policy, SubdomainPolicy, NonexistentPolicy Policy
	PSD                                        byte // 'y', 'n' or 'u' (default)
	Testing                                    bool // t=y
	ADKIM, ASPF                                byte // 'r' (default) or 's'
	RUA, RUF                                   []URI
	FO                                         string // "0" by default; colon-separated, lowercase
	// Pct is the RFC 7489 pct tag (0..100), -1 when absent or invalid. RFC
	// 9989 removed it (Appendix A.6); only ModeRFC7489 uses it.
	Pct int
	// HasT: the t tag was present with a valid value (t=n included), which
	// keeps pct=0 from meaning t=y (see TestModeFromPct).
	HasT bool
	// Invalid lists the names of known tags whose values were not valid and
	// were replaced by their defaults (RFC 9989 §4.8: syntax errors in the
	// remainder of the record are discarded in favour of default values).
	Invalid []string
	// Ignored lists tag-list items that were skipped: unknown tags, later
	// duplicates, items without "=", bad reporting URIs. For explanations.
	Ignored []string
	Raw     string // the record text as published
}

// Errors of ParseRecord.
var (
	// ErrNotDMARC means the text does not start with the version tag
	// "v=DMARC1" (RFC 9989 §4.7 tag "v"): it is not a DMARC Policy Record at
	// all and must be ignored entirely.
	ErrNotDMARC = errors.New("dmarc: not a DMARC record (must start with v=DMARC1)")
)

// IsDMARCRecord reports whether txt begins with a valid version tag, i.e.
// whether it counts as a DMARC Policy Record when choosing among the TXT
// records at a name (RFC 9989 §4.10 step 2).
func IsDMARCRecord(txt string) bool {
	_, ok := versionRest(txt)
	return ok
}

// versionRest checks the leading "v=DMARC1" tag and returns the text after
// it. The tag name is case-insensitive (RFC 5234 literal), the value "DMARC1"
// is case-sensitive (RFC 9989 §4.8: %s"DMARC1"). Whitespace around "=" is
// allowed (equals = *WSP "=" *WSP). We also tolerate leading whitespace before
// "v", which some zone editors produce; OpenDMARC does the same.
func versionRest(txt string) (string, bool) {
	s := strings.TrimLeft(txt, " \t")
	if len(s) == 0 || (s[0] != 'v' && s[0] != 'V') {
		return "", false
	}
	s = strings.TrimLeft(s[1:], " \t")
	if len(s) == 0 || s[0] != '=' {
		return "", false
	}
	s = strings.TrimLeft(s[1:], " \t")
	if !strings.HasPrefix(s, "DMARC1") {
		return "", false
	}
	s = s[len("DMARC1"):]
	rest := strings.TrimLeft(s, " \t")
	if rest != "" && rest[0] != ';' {
		return "", false // e.g. "v=DMARC10" or "v=DMARC1 p=reject"
	}
	return rest, true
}

// ParseRecord parses a DMARC Policy Record (RFC 9989 §4.7, ABNF in §4.8).
//
// Only a wrong or missing version tag is an error (ErrNotDMARC). Everything
// else follows §4.8: unknown tags are ignored and invalid values fall back to
// their defaults (listed in Record.Invalid). Tag names and values are
// case-insensitive, except the version value and URIs.
//
// Duplicate tags: RFC 9989 does not say. RFC 6376 §3.2 (whose tag-value syntax
// DMARC borrows) would invalidate the whole record, which would silently
// disable a published p=reject because of a typo elsewhere. We treat the
// later duplicate as the syntax error §4.8 tells us to discard: the first
// occurrence wins and the duplicate is listed in Record.Ignored.
func ParseRecord(txt string) (*Record, error) {
	rest, ok := versionRest(txt)
	if !ok {
		return nil, ErrNotDMARC
	}
	rec := &Record{PSD: 'u', ADKIM: 'r', ASPF: 'r', FO: "0", Pct: -1, Raw: txt}
	seen := map[string]bool{}
	for _, item := range strings.Split(rest, ";") {
		item = strings.Trim(item, " \t")
		if item == "" {
			continue // empty items: the separator after v, a trailing ";"
		}
		eq := strings.IndexByte(item, '=')
		if eq < 0 {
			rec.Ignored = append(rec.Ignored, item)
			continue
		}
		name := strings.ToLower(strings.TrimRight(item[:eq], " \t"))
		value := strings.TrimLeft(item[eq+1:], " \t")
		if !isAlpha(name) {
			rec.Ignored = append(rec.Ignored, item)
			continue
		}
		if !knownTag(name) {
			rec.Ignored = append(rec.Ignored, item) // RFC 9989 §4.7: unknown tags MUST be ignored
			continue
		}
		if seen[name] {
			rec.Ignored = append(rec.Ignored, item)
			continue
		}
		seen[name] = true
		if !rec.setTag(name, value) {
			rec.Invalid = append(rec.Invalid, name)
		}
	}
	return rec, nil
}

func knownTag(name string) bool {
	switch name {
	case "p", "sp", "np", "psd", "t", "adkim", "aspf", "rua", "ruf", "fo", "pct", "v":
		return true
	}
	return false
}

// setTag stores one tag value; it reports false when the value is invalid and
// the default stays in place.
func (rec *Record) setTag(name, value string) bool {
	lv := strings.ToLower(value)
	switch name {
	case "v":
		return false // a second v tag is not allowed anywhere but first
	case "p", "sp", "np":
		p, ok := parsePolicy(lv)
		if !ok {
			return false
		}
		switch name {
		case "p":
			rec.Policy = p
		case "sp":
			rec.SubdomainPolicy = p
		default:
			rec.NonexistentPolicy = p
		}
	case "psd":
		if lv != "y" && lv != "n" && lv != "u" {
			return false
		}
		rec.PSD = lv[0]
	case "t":
		if lv != "y" && lv != "n" {
			return false
		}
		rec.Testing, rec.HasT = lv == "y", true
	case "adkim", "aspf":
		if lv != "r" && lv != "s" {
			return false
		}
		if name == "adkim" {
			rec.ADKIM = lv[0]
		} else {
			rec.ASPF = lv[0]
		}
	case "fo":
		if !validFO(lv) {
			return false
		}
		rec.FO = lv
	case "pct":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > 100 {
			return false
		}
		rec.Pct = n
	case "rua", "ruf":
		uris, bad := parseURIList(value)
		if len(bad) > 0 {
			rec.Ignored = append(rec.Ignored, bad...)
		}
		if name == "rua" {
			rec.RUA = uris
		} else {
			rec.RUF = uris
		}
		return len(uris) > 0
	}
	return true
}

func parsePolicy(v string) (Policy, bool) {
	switch p := Policy(v); p {
	case PolicyNone, PolicyQuarantine, PolicyReject:
		return p, true
	}
	return "", false
}

func isAlpha(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// validFO checks dmarc-fo (RFC 9989 §4.8): colon-separated items from
// 0, 1, d, s; 0 and 1 exclusive; each at most once.
func validFO(v string) bool {
	seen := map[string]bool{}
	for _, it := range strings.Split(v, ":") {
		it = strings.Trim(it, " \t")
		switch it {
		case "0", "1", "d", "s":
		default:
			return false
		}
		if seen[it] {
			return false
		}
		seen[it] = true
	}
	return !(seen["0"] && seen["1"])
}

// parseURIList splits a dmarc-urilist (RFC 9989 §4.8). Commas and "!" must be
// percent-encoded inside a URI, so the first "!" starts the obsolete size
// suffix. A URI must be absolute (have a scheme); bad entries are returned
// apart so the caller can list them.
func parseURIList(v string) (uris []URI, bad []string) {
	for _, part := range strings.Split(v, ",") {
		part = strings.Trim(part, " \t")
		if part == "" {
			continue
		}
		u := URI{Address: part}
		if i := strings.IndexByte(part, '!'); i >= 0 {
			u.Address, u.MaxSize = part[:i], strings.ToLower(part[i+1:])
			if !validSize(u.MaxSize) {
				bad = append(bad, part)
				continue
			}
		}
		pu, err := url.Parse(u.Address)
		if err != nil || pu.Scheme == "" || (pu.Opaque == "" && pu.Host == "" && pu.Path == "") {
			bad = append(bad, part)
			continue
		}
		uris = append(uris, u)
	}
	return uris, bad
}

// validSize checks obs-dmarc-report-size without the "!": 1*DIGIT [k/m/g/t].
func validSize(s string) bool {
	if s == "" {
		return false
	}
	if c := s[len(s)-1]; c == 'k' || c == 'm' || c == 'g' || c == 't' {
		s = s[:len(s)-1]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// policyValid reports whether p, sp and np are usable as published. RFC
// 9989 §4.10.1: a record without a valid p, or with an invalid sp or np, is
// treated as p=none when rua holds at least one valid URI; otherwise no DMARC
// processing applies.
func (rec *Record) policyValid() bool {
	if rec.Policy == "" {
		return false
	}
	for _, n := range rec.Invalid {
		if n == "sp" || n == "np" {
			return false
		}
	}
	return true
}

// Applicable returns the Domain Owner Assessment Policy this record gives an
// Author Domain (RFC 9989 §4.10.1): p when the record was found at the
// Author Domain itself; for a subdomain sp (falling back to p), or np when
// the Author Domain does not exist (falling back to sp, then p). It returns
// "" when the record calls for no DMARC processing (no valid p and no valid
// rua); a record without a valid p but with a rua gives "none".
func (rec *Record) Applicable(subdomain, nonexistent bool) Policy {
	if !rec.policyValid() {
		if len(rec.RUA) > 0 {
			return PolicyNone
		}
		return ""
	}
	if !subdomain {
		return rec.Policy
	}
	if nonexistent && rec.NonexistentPolicy != "" {
		return rec.NonexistentPolicy
	}
	if rec.SubdomainPolicy != "" {
		return rec.SubdomainPolicy
	}
	return rec.Policy
}

// String gives a short summary for logs.
func (rec *Record) String() string {
	return fmt.Sprintf("p=%s sp=%s np=%s psd=%c t=%v adkim=%c aspf=%c", rec.Policy,
		rec.SubdomainPolicy, rec.NonexistentPolicy, rec.PSD, rec.Testing, rec.ADKIM, rec.ASPF)
}
