package dmarc

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/authmilter/authmilter/pkg/identity"
)

// Errors of AuthorDomains and domain normalisation.
var (
	// ErrNoFrom: no RFC5322.From field, or only empty ones.
	ErrNoFrom = errors.New("dmarc: no From field")
	// ErrNoAuthorDomain: the From field holds no address with a usable
	// domain (e.g. an empty group, a domain literal, garbage).
	ErrNoAuthorDomain = errors.New("dmarc: no author domain in From")
	// ErrInvalidDomain: a domain name that is not a valid DNS host name
	// (identity.ErrInvalidDomain, the one error for it).
	ErrInvalidDomain = identity.ErrInvalidDomain
)

// addrParser decodes RFC 2047 encoded words in display names. Unknown
// charsets are passed through undecoded: the display name does not matter
// for DMARC and must not make the address unparseable.
var addrParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
		return input, nil
	},
}}

// AuthorDomains returns the distinct Author Domains (RFC 9989 §5.3.1) of the
// RFC5322.From fields whose raw values are given, as lowercase A-labels in
// order of appearance.
//
// Values may arrive as the MTA sends them: leading space, folded with "\n" or
// "\r\n", with comments, display names, quoted local parts, RFC 2047 encoded
// words, group syntax and UTF-8 (RFC 6532) domains. A value that net/mail
// cannot parse (obsolete or broken syntax, which MUAs still display) falls
// back to a lenient scan that collects every "local@domain" outside quoted
// strings and comments: a message whose From is unparseable must not escape
// DMARC, and listing every domain a reader might see lets the caller apply
// the strictest policy (RFC 9989 §11.5).
//
// It fails with ErrNoFrom for no or only empty values, ErrNoAuthorDomain when
// no address with a domain is found, and ErrInvalidDomain for a domain that
// is not a valid host name.
func AuthorDomains(fromValues []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	nonEmpty := false
	for _, v := range fromValues {
		v = unfold(v)
		if strings.TrimSpace(v) == "" {
			continue
		}
		nonEmpty = true
		raw, err := fieldDomains(v)
		if err != nil {
			return nil, err
		}
		for _, d := range raw {
			nd, err := identity.ASCII(d)
			if err != nil {
				return nil, fmt.Errorf("from domain %q: %w", d, err)
			}
			if !seen[nd] {
				seen[nd] = true
				out = append(out, nd)
			}
		}
	}
	if !nonEmpty {
		return nil, ErrNoFrom
	}
	if len(out) == 0 {
		return nil, ErrNoAuthorDomain
	}
	return out, nil
}

// unfold removes the line breaks of a folded header value (RFC 5322 §2.2.3);
// with OptHeaderLeadingSpace Postfix sends folds as a bare "\n".
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
}

// fieldDomains returns the raw domains of one From value.
func fieldDomains(v string) ([]string, error) {
	list, err := addrParser.ParseList(v)
	if err != nil {
		ds := scanDomains(v)
		if len(ds) == 0 {
			return nil, fmt.Errorf("%w: %q: %w", ErrNoAuthorDomain, v, err)
		}
		return ds, nil
	}
	var ds []string
	for _, a := range list {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 || at == len(a.Address)-1 {
			return nil, fmt.Errorf("%w: %q", ErrNoAuthorDomain, a.Address)
		}
		ds = append(ds, a.Address[at+1:])
	}
	return ds, nil
}

// scanDomains is the lenient fallback: every "@" outside quoted strings,
// comments and domain literals that follows a local part starts a domain.
// An "@" right after "<", ",", ":" or whitespace (a source route, a stray
// sign) does not count.
func scanDomains(v string) []string {
	var ds []string
	depth := 0 // comment nesting
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++ // quoted-pair
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '(':
			depth = 1
		case c == '"':
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
		case c == '@':
			if i == 0 || strings.IndexByte(" \t<,:;@", v[i-1]) >= 0 {
				continue
			}
			j := i + 1
			for j < len(v) && isDomainByte(v[j]) {
				j++
			}
			if d := v[i+1 : j]; d != "" {
				ds = append(ds, d)
			}
			i = j - 1
		}
	}
	return ds
}

func isDomainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c >= 0x80
}
