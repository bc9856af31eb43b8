package spfcheck

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by the errors of CheckRecordSyntax.
var ErrSyntax = errors.New("spfcheck: SPF record syntax error")

// CheckRecordSyntax checks one SPF record against the ABNF of RFC 7208 §12
// (and §6: redirect and exp at most once each). It returns nil for a valid
// record.
//
// Why this exists: RFC 7208 §4.6 says a record with a syntax error anywhere
// gives permerror before any term is evaluated. blitiri.com.ar/go/spf
// evaluates left to right and stops at the first match, so "ip4:1.2.3.4
// bogus" passes 1.2.3.4; it also accepts bad domain-specs (all-numeric top
// labels, control characters, c/r/t macros outside exp) and CIDR lengths
// with leading zeros. We check every record the library fetches and turn the
// result into permerror if one of them is invalid. pyspf and the RFC test
// suite behave this way; Mail::SPF too.
func CheckRecordSyntax(record string) error {
	terms := strings.Split(record, " ")
	// §4.5: the record starts with "v=spf1" followed by a space or its end
	// (records are selected by that prefix, case-insensitively, §12).
	if !strings.EqualFold(terms[0], "v=spf1") {
		return fmt.Errorf("%w: does not start with v=spf1", ErrSyntax)
	}
	seen := map[string]bool{}
	for _, term := range terms[1:] {
		if term == "" { // several spaces, or trailing spaces: allowed (§12 *SP)
			continue
		}
		if err := checkTerm(term, seen); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrSyntax, term, err)
		}
	}
	return nil
}

func checkTerm(term string, seen map[string]bool) error {
	for i := 0; i < len(term); i++ {
		// Terms are visible ASCII; anything else (control characters,
		// non-ASCII octets) is a syntax error (§4.6.1, §12).
		if term[i] < 0x21 || term[i] > 0x7e {
			return fmt.Errorf("invalid octet 0x%02x", term[i])
		}
	}
	// §4.6.1: a modifier is name "=" ...; name = ALPHA *( ALPHA / DIGIT /
	// "-" / "_" / "." ). A "=" before any ":" or "/" makes it a modifier.
	if eq := strings.IndexByte(term, '='); eq > 0 && isModifierName(term[:eq]) {
		name, value := strings.ToLower(term[:eq]), term[eq+1:]
		switch name {
		case "redirect", "exp":
			// §6: each may appear at most once.
			if seen[name] {
				return fmt.Errorf("%s= more than once", name)
			}
			seen[name] = true
			return checkDomainSpec(value)
		}
		return checkMacroString(value)
	}
	if term[0] == '+' || term[0] == '-' || term[0] == '~' || term[0] == '?' {
		term = term[1:] // §4.6.2 qualifier
	}
	name, arg, hasArg := term, "", false
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg, hasArg = term[:i], term[i:], true
	}
	switch strings.ToLower(name) {
	case "all":
		if hasArg {
			return errors.New("all takes no argument")
		}
		return nil
	case "include", "exists":
		d, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("domain-spec required")
		}
		return checkDomainSpec(d)
	case "ptr":
		if !hasArg {
			return nil
		}
		d, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("ptr takes no CIDR length")
		}
		return checkDomainSpec(d)
	case "a", "mx":
		// [ ":" domain-spec ] [ dual-cidr-length ]
		rest, err := cutDualCIDR(arg)
		if err != nil {
			return err
		}
		if rest == "" {
			return nil
		}
		d, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return errors.New("bad argument")
		}
		return checkDomainSpec(d)
	case "ip4":
		v, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("address required")
		}
		addr, cidr, hasCIDR := strings.Cut(v, "/")
		if !isIP4Network(addr) {
			return errors.New("bad IPv4 network")
		}
		if hasCIDR {
			return checkCIDR(cidr, 32)
		}
		return nil
	case "ip6":
		v, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("address required")
		}
		addr, cidr, hasCIDR := strings.Cut(v, "/")
		a, err := netip.ParseAddr(addr)
		if err != nil || !a.Is6() || a.Zone() != "" || strings.Contains(addr, "%") {
			return errors.New("bad IPv6 network")
		}
		if hasCIDR {
			return checkCIDR(cidr, 128)
		}
		return nil
	}
	return errors.New("unknown mechanism")
}

// cutDualCIDR removes a trailing dual-cidr-length from the argument of a or
// mx: [ "/" ip4-cidr-length ] [ "//" ip6-cidr-length ]. A trailing "/" plus
// digits is always taken as a CIDR length, so it must then be a valid one.
func cutDualCIDR(arg string) (string, error) {
	if i := strings.LastIndex(arg, "//"); i >= 0 && isDigits(arg[i+2:]) {
		if err := checkCIDR(arg[i+2:], 128); err != nil {
			return "", err
		}
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 && isDigits(arg[i+1:]) {
		if err := checkCIDR(arg[i+1:], 32); err != nil {
			return "", err
		}
		arg = arg[:i]
	}
	return arg, nil
}

// checkCIDR: "0" / %x31-39 0*nDIGIT, at most limit (§12).
func checkCIDR(s string, limit int) error {
	if !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("bad CIDR length %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > limit {
		return fmt.Errorf("CIDR length %q over %d", s, limit)
	}
	return nil
}

// isIP4Network: qnum "." qnum "." qnum "." qnum, no leading zeros (§12).
func isIP4Network(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if !isDigits(p) || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return false
		}
		if n, _ := strconv.Atoi(p); n > 255 {
			return false
		}
	}
	return true
}

// checkDomainSpec: domain-spec = macro-string domain-end;
// domain-end = ( "." toplabel [ "." ] ) / macro-expand (§7.1, §12).
// Macro letters c, r and t are allowed only in exp text (§7.3), not here.
func checkDomainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain-spec")
	}
	endsInMacro, tail, err := scanMacroString(s, "slodiphv")
	if err != nil || endsInMacro {
		return err
	}
	tail = strings.TrimSuffix(tail, ".")
	dot := strings.LastIndexByte(tail, '.')
	if dot < 0 {
		return errors.New("domain-spec does not end in a top label")
	}
	if !isTopLabel(tail[dot+1:]) {
		return fmt.Errorf("bad top label %q", tail[dot+1:])
	}
	return nil
}

// checkMacroString checks the value of an unknown modifier (§6, §12).
func checkMacroString(s string) error {
	_, _, err := scanMacroString(s, "slodiphcrtv")
	return err
}

// scanMacroString checks macro-string = *( macro-expand / macro-literal )
// (§7.1). It reports whether the string ends in a macro-expand and the
// literal text after the last macro-expand. letters are the macro letters
// allowed (case-insensitive; an upper-case letter asks for URL escaping).
func scanMacroString(s, letters string) (endsInMacro bool, tail string, err error) {
	tailStart := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue // visible ASCII was checked per term
		}
		endsInMacro = false
		if i+1 >= len(s) {
			return false, "", errors.New("lone % at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			tailStart, endsInMacro = i+1, i+1 == len(s)
			continue
		case '{':
		default:
			return false, "", fmt.Errorf("bad macro %%%c", s[i+1])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return false, "", errors.New("unterminated macro")
		}
		body := s[i+2 : i+end]
		i += end
		tailStart, endsInMacro = i+1, i+1 == len(s)
		// "%{" macro-letter transformers *delimiter "}";
		// transformers = *DIGIT [ "r" ]
		if body == "" || !strings.ContainsRune(letters, rune(lower(body[0]))) {
			return false, "", fmt.Errorf("macro %%{%s} not allowed here", body)
		}
		rest := body[1:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j > 0 {
			// §7.3: the digit transformer is a non-zero count.
			if n, err := strconv.Atoi(rest[:j]); err != nil || n == 0 || n > 128 {
				return false, "", errors.New("bad macro digit transformer")
			}
		}
		if j < len(rest) && lower(rest[j]) == 'r' {
			j++
		}
		for ; j < len(rest); j++ {
			if !strings.ContainsRune(".-+,/_=", rune(rest[j])) {
				return false, "", fmt.Errorf("bad macro delimiter %q", rest[j])
			}
		}
	}
	return endsInMacro, s[tailStart:], nil
}

func isModifierName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
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

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isTopLabel: ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) (§7.1, after RFC 3696 §2):
// not all-numeric, no hyphen at either end.
func isTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	ok := false
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case isAlpha(c), c == '-':
			ok = true
		case c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return ok
}
