// Package identity normalises the names that mail authentication compares:
// domains and addresses. Its one job is that every check, the policy, the
// configuration, the records and the reports agree on what "the same
// domain" means, by reading each name once, at the edge, into a Domain.
//
// A Domain has two forms (RFC 5890 §2.3): ASCII, the lowercase A-label form
// without a trailing dot, which is what is compared, queried and stored; and
// Unicode, the U-label form for people to read. mox's dns.Domain and
// chasquid's normalize package keep the same two forms.
package identity

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalidDomain: a domain name that is not a valid DNS host name.
var ErrInvalidDomain = errors.New("invalid domain name")

// Domain is a DNS domain read once: ASCII for comparison, Unicode for
// display. The zero Domain is "no domain".
type Domain struct {
	// ASCII is lowercase, A-labels (xn--...), no trailing dot.
	ASCII string
	// Unicode is the same name with U-labels, for display; equal to
	// ASCII for a name without A-labels.
	Unicode string
}

// String returns the ASCII form.
func (d Domain) String() string { return d.ASCII }

// IsZero reports whether d is the zero Domain.
func (d Domain) IsZero() bool { return d.ASCII == "" }

// profile maps U-labels for lookup (RFC 5891 §5) but, unlike idna.Lookup,
// allows "_", which appears in real host names (and in DKIM selectors).
var profile = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.Transitional(false))

// display turns A-labels back into U-labels; when a name does not decode,
// its Unicode form stays the ASCII one.
var display = idna.New(idna.StrictDomainName(false), idna.Transitional(false))

// ParseDomain reads a domain name as DMARC, SPF and DKIM compare it:
// lowercase, U-labels mapped to A-labels (RFC 5891 §5, RFC 9989 §5.3.1), the
// trailing dot removed. It rejects, wrapping ErrInvalidDomain, an empty
// name, domain literals, IP addresses and names that are not host names
// (labels of 1..63 letters, digits, "-" or "_"; at most 253 octets).
func ParseDomain(s string) (Domain, error) {
	a, err := ASCII(s)
	if err != nil {
		return Domain{}, err
	}
	d := Domain{ASCII: a, Unicode: a}
	if strings.Contains(a, "xn--") {
		if u, err := display.ToUnicode(a); err == nil {
			d.Unicode = u
		}
	}
	return d, nil
}

// ASCII returns the ASCII form of a domain name (see ParseDomain), for
// callers that need only the form that is compared.
func ASCII(s string) (string, error) {
	d := strings.TrimSuffix(s, ".")
	if d == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidDomain)
	}
	if d[0] == '[' || net.ParseIP(d) != nil {
		return "", fmt.Errorf("%w: %q is an address literal", ErrInvalidDomain, d)
	}
	ascii := true
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		d = strings.ToLower(d)
	} else {
		if !utf8.ValidString(d) {
			return "", fmt.Errorf("%w: not UTF-8", ErrInvalidDomain)
		}
		a, err := profile.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrInvalidDomain, d, err)
		}
		d = strings.ToLower(strings.TrimSuffix(a, "."))
	}
	if len(d) > 253 {
		return "", fmt.Errorf("%w: longer than 253 octets", ErrInvalidDomain)
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%w: %q: bad label length", ErrInvalidDomain, d)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%w: %q: bad character %q", ErrInvalidDomain, d, c)
			}
		}
	}
	return d, nil
}

// Fold returns the form in which a name that may not be a valid domain is
// compared and stored: its ASCII form when it has one, otherwise (odd input
// from the wire, kept so that it still compares with itself) lowercased
// without the trailing dot. For a plain ASCII name both are the same, and
// cheap: the hot path does not validate.
func Fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			if a, err := ASCII(s); err == nil {
				return a
			}
			break
		}
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// SplitAddress cuts an address ("local@domain", with or without the angle
// brackets and surrounding space of an SMTP path) at its last "@" (the
// local-part may contain quoted "@", the domain cannot). ok is false when
// there is no "@"; domain is returned as written (see ParseDomain).
func SplitAddress(addr string) (local, domain string, ok bool) {
	a := StripPath(addr)
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, "", false
	}
	return a[:at], a[at+1:], true
}

// StripPath removes the space and the angle brackets around an SMTP path
// ("<a@b>" → "a@b", "<>" → "").
func StripPath(addr string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")
}

// DomainOf returns the domain part of an address as written, "" when it has
// no "@".
func DomainOf(addr string) string {
	_, d, _ := SplitAddress(addr)
	return d
}

// UnescapeQuotedPairs removes the backslash of each quoted-pair (RFC 5322
// §3.2.1: "\" and the character after it stand for that character), as in
// the text of a quoted-string or a comment. A lone backslash at the end is
// kept. The A-R reader (pkg/authres) and the From reader (pkg/dmarc) both
// read quoted-pairs with it. (DNS presentation format's "\DDD" escapes,
// RFC 1035 §5.1, are another fact: internal/resolver.)
func UnescapeQuotedPairs(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
