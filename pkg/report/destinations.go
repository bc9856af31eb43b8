package report

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/dnserr"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Resolver is the DNS the destination check needs: TXT lookups for the
// verification record and what dmarc.OrgDomain uses. Errors must be
// *net.DNSError (IsNotFound for NXDOMAIN/NODATA, anything else temporary).
type Resolver = dmarc.Resolver

// Errors of destination checks. A Destination carries at most one.
var (
	// ErrInvalidURI: the rua URI is malformed (e.g. "mailto:0"); RFC 9990
	// §3.5 says malformed URIs SHOULD be ignored.
	ErrInvalidURI = errors.New("report: invalid reporting URI")
	// ErrUnsupportedScheme: a well-formed URI we do not deliver to (only
	// mailto: is defined, RFC 9990 §3.5.2–§3.5.3).
	ErrUnsupportedScheme = errors.New("report: unsupported URI scheme")
	// ErrNotAuthorized: an external destination without a verification
	// record (RFC 9990 §4); the URI MUST be ignored.
	ErrNotAuthorized = errors.New("report: external destination not authorized")
	// ErrTemporary: DNS failed while verifying; try again later (§4 step 5).
	ErrTemporary = errors.New("report: temporary DNS failure verifying destination")
)

// Destination is one rua URI after checking. Err is nil when the report
// may be sent to Address.
type Destination struct {
	URI     URI    // as published (after a §4 step 9 override: the override)
	Address string // the mailbox, e.g. "dmarc@example.com"
	MaxSize int64  // bytes; 0 when the URI has no size limit
	Err     error
}

// Destinations checks every rua URI of a policy in published order (RFC
// 9990 §3.5): mailto: URIs are parsed, and those whose host has a
// different Organizational Domain from the policy domain are verified as
// RFC 9990 §4 describes. Organizational Domains are found by the method the
// policy was discovered with (tree walk, or PSL for "psl").
func Destinations(ctx context.Context, r Resolver, pol PolicyPublished) []Destination {
	mode := dmarc.ModeRFC9989
	if pol.DiscoveryMethod == "psl" {
		mode = dmarc.ModeRFC7489
	}
	var out []Destination
	polDomain, perr := identity.ASCII(pol.Domain)
	var polOrg string
	var orgErr error
	orgDone := false
	for _, u := range pol.RUA {
		d := parseMailto(u)
		if d.Err != nil {
			out = append(out, d)
			continue
		}
		if perr != nil {
			d.Err = fmt.Errorf("%w: policy domain %q: %v", ErrInvalidURI, pol.Domain, perr)
			out = append(out, d)
			continue
		}
		host := d.Address[strings.LastIndexByte(d.Address, '@')+1:]
		if !orgDone {
			polOrg, orgErr = dmarc.OrgDomain(ctx, r, polDomain, mode)
			orgDone = true
		}
		if orgErr != nil {
			d.Err = fmt.Errorf("%w: organizational domain of %s: %v", ErrTemporary, polDomain, orgErr)
			out = append(out, d)
			continue
		}
		hostOrg, err := dmarc.OrgDomain(ctx, r, host, mode)
		if err != nil {
			d.Err = fmt.Errorf("%w: organizational domain of %s: %v", ErrTemporary, host, err)
			out = append(out, d)
			continue
		}
		if hostOrg == polOrg {
			out = append(out, d)
			continue
		}
		out = append(out, verifyExternal(ctx, r, polDomain, host, d)...)
	}
	return out
}

// verifyExternal is RFC 9990 §4 steps 1–9 for one URI whose destination
// host lies outside the policy domain's Organizational Domain.
func verifyExternal(ctx context.Context, r Resolver, polDomain, host string, d Destination) []Destination {
	name := polDomain + "._report._dmarc." + host // steps 1–3
	if len(name) > 253 {                          // step 4
		d.Err = fmt.Errorf("%w: %s is longer than DNS allows", ErrNotAuthorized, name)
		return []Destination{d}
	}
	txts, err := r.LookupTXT(ctx, name+".") // step 5
	if err != nil {
		if dnserr.IsNotFound(err) {
			d.Err = fmt.Errorf("%w: no TXT record at %s", ErrNotAuthorized, name)
		} else {
			d.Err = fmt.Errorf("%w: %s: %v", ErrTemporary, name, err)
		}
		return []Destination{d}
	}
	var override []URI
	authorized := false
	for _, t := range txts { // step 6: "v=DMARC1" first, else discard
		rec, err := dmarc.ParseRecord(t)
		if err != nil {
			continue
		}
		authorized = true // step 8
		if override == nil && len(rec.RUA) > 0 {
			for _, u := range rec.RUA {
				override = append(override, URI{Address: u.Address, MaxSize: u.MaxSize})
			}
		}
	}
	if !authorized { // step 7
		d.Err = fmt.Errorf("%w: no v=DMARC1 record at %s", ErrNotAuthorized, name)
		return []Destination{d}
	}
	if override == nil {
		return []Destination{d}
	}
	// Step 9: the override replaces the URI but must keep the destination
	// host; otherwise neither the original nor the override gets a report.
	var out []Destination
	for _, u := range override {
		o := parseMailto(u)
		if o.Err == nil && !strings.EqualFold(o.Address[strings.LastIndexByte(o.Address, '@')+1:], host) {
			d.Err = fmt.Errorf("%w: override %s at %s names another host", ErrNotAuthorized, u.Address, name)
			return []Destination{d}
		}
		out = append(out, o)
	}
	return out
}

// parseMailto turns a rua URI into a mailbox: "mailto:" with one address,
// query parts ignored, percent-encoding decoded, the domain in A-labels.
func parseMailto(u URI) Destination {
	d := Destination{URI: u}
	size, err := ParseSize(u.MaxSize)
	if err != nil {
		d.Err = fmt.Errorf("%w: %q: %v", ErrInvalidURI, u.Address+"!"+u.MaxSize, err)
		return d
	}
	d.MaxSize = size
	pu, err := url.Parse(strings.TrimSpace(u.Address))
	if err != nil || pu.Scheme == "" {
		d.Err = fmt.Errorf("%w: %q", ErrInvalidURI, u.Address)
		return d
	}
	if !strings.EqualFold(pu.Scheme, "mailto") {
		d.Err = fmt.Errorf("%w: %q", ErrUnsupportedScheme, u.Address)
		return d
	}
	raw := pu.Opaque
	if raw == "" {
		raw = pu.Path
	}
	addr, err := url.PathUnescape(raw)
	if err != nil || addr == "" {
		d.Err = fmt.Errorf("%w: %q", ErrInvalidURI, u.Address)
		return d
	}
	ma, err := mail.ParseAddress(addr)
	if err != nil || ma.Name != "" || strings.Count(ma.Address, "@") != 1 {
		d.Err = fmt.Errorf("%w: %q is not one mailbox", ErrInvalidURI, u.Address)
		return d
	}
	at := strings.LastIndexByte(ma.Address, '@')
	host, err := identity.ASCII(ma.Address[at+1:])
	if err != nil || !strings.Contains(host, ".") {
		d.Err = fmt.Errorf("%w: %q has no usable domain", ErrInvalidURI, u.Address)
		return d
	}
	local, err := envelopeLocalPart(ma.Address[:at])
	if err != nil {
		d.Err = fmt.Errorf("%w: %q: %v", ErrInvalidURI, u.Address, err)
		return d
	}
	d.Address = local + "@" + host
	return d
}

// envelopeLocalPart writes a local part, as net/mail returns it (quotes
// removed), the way RFC 5321 §4.1.2 wants it on the SMTP envelope:
// as a Dot-string when it is one, else as a Quoted-string. net/mail gives
// `"a> NOTIFY=SUCCESS"@example.com` back as `a> NOTIFY=SUCCESS@example.com`:
// sent as is, "RCPT TO:<a> NOTIFY=SUCCESS@…>" would carry a parameter
// the publisher of the rua chose (issue 16). What would need a
// quoted-pair ('"', '\'), what a careless server could take for the end
// of the path ('<', '>'), control characters and non-ASCII (SMTPUTF8,
// which the report sender does not use) are refused; so the address on the
// envelope holds no '>' but the one that ends it.
func envelopeLocalPart(l string) (string, error) {
	if l == "" || len(l) > 64 { // RFC 5321 §4.5.3.1.1
		return "", errors.New("local part empty or longer than 64 octets")
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c < 0x20 || c > 0x7e || strings.IndexByte(`<>"\`, c) >= 0 {
			return "", fmt.Errorf("local part holds %q, refused on the SMTP envelope", c)
		}
	}
	if isDotString(l) {
		return l, nil
	}
	return `"` + l + `"`, nil
}

// isDotString reports whether l is an RFC 5321 Dot-string: atoms of atext
// joined by single dots.
func isDotString(l string) bool {
	for atom := range strings.SplitSeq(l, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			c := atom[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// ParseSize reads the rua size limit ("10m"; RFC 7489 §6.2, kept as
// obs-dmarc-report-size in RFC 9989 §4.8): digits with an optional unit
// k, m, g or t (powers of 1024). "" means no limit (0).
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	s = strings.ToLower(s)
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k':
		mult = 1 << 10
	case 'm':
		mult = 1 << 20
	case 'g':
		mult = 1 << 30
	case 't':
		mult = 1 << 40
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
