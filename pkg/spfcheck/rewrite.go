package spfcheck

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Two rules of RFC 7208 that blitiri.com.ar/go/spf v1.6.0 does not follow,
// fixed around it: the wrapping resolver (syntaxChecking) hands the library
// an equivalent of each SPF record it fetches, and undoes the encoding in
// the names the library then asks for. The record as published is what the
// syntax check of §4.6 sees.
//
//  1. A "/" inside a domain-spec is part of the domain (macro-literal is any
//     visible character but "%", §7.1); only a trailing "/digits" or
//     "//digits" after a: or mx: is a CIDR length (§5.3, §5.4). The library
//     cuts a:/mx: at the first "/" and refuses a "/" in any other
//     domain-spec. We write each such "/" (but in ptr:, see rewriteTerm) as
//     slashMark, which the library
//     passes through as an ordinary character, and turn it back into "/" in
//     every name it looks up. A NUL cannot be in a record we accept (the
//     syntax check refuses it: the result is then permerror anyway) nor in
//     an SMTP sender, so the mark cannot be confused with input.
//  2. The %{p} macro expands to the validated domain name of the client
//     (§7.3 with the procedure of §5.5); the library always writes
//     "unknown". We expand it ourselves, before the library sees the
//     record, for the <domain> whose record it is.
//
// What others do: pyspf (the suite's reference) passes these cases and
// Mail::SPF implements both (from memory); the library's authors skip the
// five suite cases ("not worth the complexity", "p macro is not
// supported"); mox expands %{p} itself, the <domain> first, then its
// subdomains, then any validated name, and counts the PTR query against the
// ten DNS-querying terms (read in its code). We look the validated names up
// once per check (one PTR query and at most ten address queries) and do not
// count them as a term: §4.6.4 names only mechanisms and redirect.
const slashMark = "\x00"

// unmark turns slashMark back into "/" in a name the library asks for.
func unmark(name string) string {
	if strings.Contains(name, slashMark) {
		return strings.ReplaceAll(name, slashMark, "/")
	}
	return name
}

// rewriteRecord returns the record the library should evaluate for domain:
// every "/" inside a domain-spec marked, every %{p} macro in a domain-spec
// expanded with p() (called at most once, and only when the record has
// one). The record must have passed CheckRecordSyntax.
func rewriteRecord(record, domain string, p func() string) string {
	terms := strings.Split(record, " ")
	changed := false
	pValue := ""
	expandP := func(spec string) string {
		if !hasPMacro(spec) {
			return spec
		}
		if pValue == "" {
			pValue = p()
		}
		return expandPMacros(spec, pValue)
	}
	for i, term := range terms[1:] {
		if term == "" { // several or trailing spaces (§12 *SP)
			continue
		}
		t := rewriteTerm(term, expandP)
		if t != term {
			terms[i+1], changed = t, true
		}
	}
	if !changed {
		return record
	}
	return strings.Join(terms, " ")
}

// rewriteTerm applies rewriteRecord to one term.
func rewriteTerm(term string, expandP func(string) string) string {
	if eq := strings.IndexByte(term, '='); eq > 0 && isModifierName(term[:eq]) {
		if strings.EqualFold(term[:eq], "redirect") {
			return term[:eq+1] + markSlashes(expandP(term[eq+1:]))
		}
		return term // exp= is not evaluated; unknown modifiers are ignored
	}
	q := ""
	if strings.ContainsRune("+-~?", rune(term[0])) {
		q, term = term[:1], term[1:]
	}
	colon := strings.IndexByte(term, ':')
	if colon < 0 {
		return q + term // no domain-spec
	}
	name, arg := strings.ToLower(term[:colon]), term[colon+1:]
	switch name {
	case "a", "mx":
		// §5.3, §5.4: a trailing dual-cidr-length is the CIDR; what is
		// before it, "/" included, is the domain-spec.
		spec, err := cutDualCIDR(arg)
		if err != nil {
			return q + term
		}
		return q + term[:colon+1] + markSlashes(expandP(spec)) + arg[len(spec):]
	case "include", "exists":
		return q + term[:colon+1] + markSlashes(expandP(arg))
	case "ptr":
		// The library compares PTR names with this domain itself, where
		// a mark would never match: a "/" here stays the library's
		// permerror (ptr is deprecated, §5.5, and such names do not occur).
		return q + term[:colon+1] + expandP(arg)
	}
	return q + term
}

func markSlashes(s string) string { return strings.ReplaceAll(s, "/", slashMark) }

// hasPMacro reports whether a domain-spec holds a %{p...} macro.
func hasPMacro(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' {
			if s[i+1] == '{' && lower(s[i+2]) == 'p' {
				return true
			}
			i++ // %%, %_, %- or the "{" of another macro
		}
	}
	return false
}

// expandPMacros replaces each %{p...} macro of a syntactically valid
// domain-spec with the value v after its transformers (§7.3): split at the
// delimiters ("." by default), reversed for "r", the last n parts kept for a
// digit n, joined with "."; an upper-case P also URL-escapes. Other macros
// stay for the library.
func expandPMacros(s, v string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] != '{' || i+2 >= len(s) || lower(s[i+2]) != 'p' {
			b.WriteString(s[i : i+2])
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 { // cannot happen after the syntax check
			b.WriteString(s[i:])
			break
		}
		body := s[i+2 : i+end]
		i += end
		b.WriteString(escapeMacroValue(transform(body, v)))
	}
	return b.String()
}

// transform applies a macro's transformers and delimiters (body is the
// letter and what follows it inside the braces) to v.
func transform(body, v string) string {
	rest := body[1:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(rest[:j])
	reverse := j < len(rest) && lower(rest[j]) == 'r'
	if reverse {
		j++
	}
	delims := rest[j:]
	if delims == "" {
		delims = "."
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if reverse {
		slices.Reverse(parts)
	}
	if n > 0 && n < len(parts) {
		parts = parts[len(parts)-n:]
	}
	out := strings.Join(parts, ".")
	if body[0] == 'P' {
		out = url.QueryEscape(out)
	}
	return out
}

// escapeMacroValue keeps an expanded value literal for the library: "%" is
// written "%%" (a validated name never holds one, see validatedName).
func escapeMacroValue(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// maxPTRNames is the cap on names from a PTR answer that are checked
// (RFC 7208 §4.6.4: "no more than 10").
const maxPTRNames = 10

// validatedNames returns the validated domain names of ip (RFC 7208 §5.5):
// the names of its PTR answer (at most 10) whose address records include
// ip. A DNS error gives none. Names that are not plain host names (letters,
// digits, "-", "_", ".") are skipped: they could not be written into a
// domain-spec literally.
func validatedNames(ctx context.Context, r Resolver, ip net.IP) []string {
	names, err := r.LookupAddr(ctx, ip.String())
	if err != nil {
		return nil
	}
	var valid []string
	for _, n := range names[:min(len(names), maxPTRNames)] {
		n = strings.TrimSuffix(n, ".")
		if !isHostName(n) {
			continue
		}
		addrs, err := r.LookupIPAddr(ctx, n+".")
		if err == nil && slices.ContainsFunc(addrs, func(a net.IPAddr) bool { return a.IP.Equal(ip) }) {
			valid = append(valid, n)
		}
	}
	return valid
}

// pickValidated is the "p" macro's value for domain (RFC 7208 §7.3): of the
// validated names, domain itself, else a subdomain of domain, else the
// first; "unknown" when there is none.
func pickValidated(valid []string, domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if i := slices.IndexFunc(valid, func(n string) bool { return strings.EqualFold(n, domain) }); i >= 0 {
		return valid[i]
	}
	if i := slices.IndexFunc(valid, func(n string) bool { return strings.HasSuffix(strings.ToLower(n), "."+domain) }); i >= 0 {
		return valid[i]
	}
	if len(valid) > 0 {
		return valid[0]
	}
	return "unknown"
}

// isHostName: dot-separated non-empty labels of letters, digits, "-" and "_".
func isHostName(n string) bool {
	if n == "" {
		return false
	}
	for l := range strings.SplitSeq(n, ".") {
		if l == "" {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}
