// Package authres writes and reads the Authentication-Results header field
// (RFC 8601): one folded header value from a list of results, and the
// authserv-id of an existing field so that forged ones can be removed.
//
// go-msgauth's authres package does no folding, no comments and no free-form
// properties such as header.b or policy.dmarc, so we write the field here.
package authres

import (
	"strings"
	"unicode"

	"github.com/authmilter/authmilter/pkg/identity"
)

// Result is one resinfo of RFC 8601 §2.2: method=result (reason) props…
type Result struct {
	Method string // "spf", "dkim", "dmarc"
	Value  string // "pass", "fail", …
	Reason string // written as a comment after the result; "" for none
	Props  []Prop
}

// Prop is one ptype.property=pvalue (RFC 8601 §2.3).
type Prop struct {
	Key   string // e.g. "smtp.mailfrom", "header.d"
	Value string
}

// HeaderName is the field name we add and remove.
const HeaderName = "Authentication-Results"

// MaxLine is the line length folding aims for (RFC 5322 §2.1.1 SHOULD 78).
const MaxLine = 78

// Format returns the field value for authservID and results, folded with
// CRLF + TAB before each result and, within a result, before a property
// that would pass MaxLine. The value has no leading space and no trailing
// CRLF. With no results it is "authserv-id; none" (RFC 8601 §2.2).
func Format(authservID string, results []Result) string {
	var b strings.Builder
	b.WriteString(quoteIfNeeded(authservID))
	b.WriteByte(';')
	if len(results) == 0 {
		b.WriteString(" none")
		return b.String()
	}
	for i, r := range results {
		b.WriteString("\r\n\t")
		lineLen := 8 // a TAB counts as up to 8 columns
		word := func(w string) {
			if lineLen > 8 {
				if lineLen+1+len(w) > MaxLine {
					b.WriteString("\r\n\t")
					lineLen = 8
				} else {
					b.WriteByte(' ')
					lineLen++
				}
			}
			b.WriteString(w)
			lineLen += len(w)
		}
		word(token(r.Method) + "=" + token(r.Value))
		props, reason := readable(r)
		if reason != "" {
			word(Comment(reason))
		}
		for _, p := range props {
			word(token(p.Key) + "=" + PValue(p.Value))
		}
		if i < len(results)-1 {
			b.WriteByte(';')
		}
	}
	return b.String()
}

// readable returns the properties of r that every reader reads back
// exactly, and the reason to write, which names the ones left out.
//
// go-msgauth's authres.Parse (and readers like it) split the field at every
// ';' and each result at white space, and know neither quoting nor
// comments: a quoted-string value with a space or ';' in it is misread, or
// breaks the results after it. RFC 8601 would allow it quoted; we avoid it:
// a value that is not address-like (AddressLike) is not written as a
// property (issue #15 item 8). Callers that have such a value (a MAIL
// FROM that is not an address) write what they can vouch for instead.
func readable(r Result) ([]Prop, string) {
	var omitted []string
	props := r.Props
	for i, p := range r.Props {
		if !AddressLike(clean(p.Value)) {
			if len(omitted) == 0 {
				props = append([]Prop(nil), r.Props[:i]...)
			}
			omitted = append(omitted, p.Key)
			continue
		}
		if len(omitted) > 0 {
			props = append(props, p)
		}
	}
	reason := r.Reason
	if len(omitted) > 0 {
		note := strings.Join(omitted, ", ") + " not shown: not a plain value"
		if reason != "" {
			reason += ", "
		}
		reason += note
	}
	return props, reason
}

// AddressLike reports whether a property value can be written without
// quoting and read back exactly by every reader: letters, digits and the
// punctuation of addresses, domains and base64 (the set go-msgauth's own
// writer leaves unquoted, without '\'), nothing else.
func AddressLike(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune("#$%&'*+,./-=@[]^_`{|}~", c) {
			return false
		}
	}
	return true
}

// Comment returns s as an RFC 5322 comment: backslashes and unbalanced
// parentheses escaped, control characters replaced by spaces. For readers
// that know no comments (go-msgauth), a ';' is written as ',' (it would end
// the result) and the '=' of a word shaped like a property
// ("header.from=x") as ':' (it would be read as one).
//
// Balanced parentheses are kept as nested comments (RFC 5322 §3.2.2 allows
// them), so "(DKIM aligned (header.d=x))" stays readable.
func Comment(s string) string {
	s = CommentText(s)
	balanced, depth := true, 0
	for _, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			balanced = balanced && depth >= 0
		}
	}
	balanced = balanced && depth == 0
	var b strings.Builder
	b.WriteByte('(')
	for _, c := range s {
		if c == '\\' || (!balanced && (c == '(' || c == ')')) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte(')')
	return b.String()
}

// CommentText is the text Comment writes between the parentheses, before
// escaping: cleaned, ';' as ',', a property-shaped word's '=' as ':'.
func CommentText(s string) string {
	s = strings.ReplaceAll(clean(s), ";", ",")
	if !strings.Contains(s, "=") {
		return s
	}
	words := strings.Split(s, " ")
	for i, w := range words {
		if k, _, ok := strings.Cut(w, "="); ok && IsProperty(k) {
			words[i] = strings.Replace(w, "=", ":", 1)
		}
	}
	return strings.Join(words, " ")
}

// IsProperty reports whether k is ptype "." property of RFC 8601 §2.2
// (ptype one of smtp, header, body, policy), the shape a reader that splits
// at white space takes a comment word "k=v" for.
func IsProperty(k string) bool {
	ptype, prop, ok := strings.Cut(strings.ToLower(k), ".")
	switch {
	case !ok || prop == "":
		return false
	case ptype != "smtp" && ptype != "header" && ptype != "body" && ptype != "policy":
		return false
	}
	for _, c := range prop {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// PValue writes a property value: as is when it is address-like
// (AddressLike: a token, an addr-spec-like local@domain, a domain, a
// base64 prefix), otherwise as a quoted-string (Format writes only
// address-like values; Received-SPF quotes the rest).
func PValue(s string) string {
	s = clean(s)
	if s == "" {
		return `""`
	}
	if AddressLike(s) {
		return s
	}
	return quote(s)
}

func quoteIfNeeded(s string) string { return PValue(s) }

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// token keeps method, result and property names to the token characters
// RFC 8601 allows; they come from our own code, so this only guards typos.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>,;:\"/[]?=`, r) {
			return '_'
		}
		return r
	}, s)
}

// clean replaces control characters (and invalid UTF-8) with spaces and
// collapses the result to one line.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0xFFFD {
			return ' '
		}
		return r
	}, s)
}

// ServID returns the authserv-id of an Authentication-Results field value
// (RFC 8601 §2.2), lowercased for comparison. It is lenient on purpose: a
// malformed field that starts with our id must still be found and removed
// (§5), so it reads the first token or quoted-string after any leading
// whitespace and comments, and stops at ';', whitespace or '('.
func ServID(value string) string {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return strings.ToLower(b.String())
			default:
				b.WriteByte(s[i])
			}
		}
		return strings.ToLower(b.String())
	}
	end := strings.IndexAny(s, "; \t\r\n(")
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(strings.TrimSuffix(s[:end], "."))
}

// skipCFWS skips folding white space and (nested) comments.
func skipCFWS(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
	loop:
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					i++
					break loop
				}
			}
		}
		if depth != 0 {
			return ""
		}
		s = s[i:]
	}
}

// SameServID reports whether an A-R value carries authservID as any
// mainstream reader would read it, so that the field is removed as forged
// (RFC 8601 §5). Two readings are tried:
//
//   - RFC 8601 §2.2 (ServID), with "white space" widened to what readers
//     skip: every rune unicode.IsSpace accepts (VT, FF, U+0085 NEL, U+00A0
//     NO-BREAK SPACE, U+2000–U+200A, U+3000 …), control characters, and
//     invisible format characters (U+200B, U+2060, U+FEFF …);
//   - go-msgauth's authres.Parse: the text before the first ';', trimmed
//     with strings.TrimSpace, cut at the first unicode.IsSpace rune (no
//     comment handling). Perl's Mail::AuthenticationResults splits on \s,
//     which matches the same Unicode white space.
//
// The id is compared like a Go consumer would (strings.EqualFold: Unicode
// simple folding, so U+212A KELVIN SIGN matches "k"), ignoring a trailing
// dot. The rule comes from those readers, not from a list: FuzzServIDGoMsgauth
// checks that whatever go-msgauth reads as our id is found here.
func SameServID(value, authservID string) bool {
	want := strings.TrimSuffix(authservID, ".")
	if want == "" {
		return false
	}
	same := func(id string) bool {
		return id != "" && strings.EqualFold(strings.TrimSuffix(id, "."), want)
	}
	if same(ServID(value)) || same(ServID(widenSpace(value))) {
		return true
	}
	// go-msgauth v0.7's reading.
	first, _, _ := strings.Cut(value, ";")
	first = strings.TrimSpace(first)
	if i := strings.IndexFunc(first, unicode.IsSpace); i > 0 {
		first = first[:i]
	}
	return same(first)
}

// widenSpace replaces every rune a reader may take for white space or skip
// as invisible by a plain space, so that ServID reads past it.
func widenSpace(s string) string {
	if !strings.ContainsFunc(s, isWideSpace) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isWideSpace(r) {
			return ' '
		}
		return r
	}, s)
}

func isWideSpace(r rune) bool {
	return r < ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.IsControl(r)
}

// Parse reads an Authentication-Results value into its authserv-id and
// results. It is lenient (comments are kept as Reason, unknown syntax is
// skipped) and meant for reading fields back: tests, `verify`, a milter
// placed after another one.
func Parse(value string) (servID string, results []Result) {
	parts := splitOutside(value, ';')
	if len(parts) == 0 {
		return "", nil
	}
	servID = ServID(parts[0])
	for _, p := range parts[1:] {
		var r Result
		for _, w := range words(p) {
			if strings.HasPrefix(w, "(") {
				if r.Reason == "" {
					r.Reason = unComment(w)
				}
				continue
			}
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				continue
			}
			v = unQuote(v)
			if r.Method == "" {
				r.Method, r.Value = strings.ToLower(k), strings.ToLower(v)
				continue
			}
			r.Props = append(r.Props, Prop{Key: strings.ToLower(k), Value: v})
		}
		if r.Method != "" && r.Method != "none" {
			results = append(results, r)
		}
	}
	return servID, results
}

// Prop returns the value of the property key ("smtp.mailfrom"), or "".
func (r Result) Prop(key string) string {
	for _, p := range r.Props {
		if strings.EqualFold(p.Key, key) {
			return p.Value
		}
	}
	return ""
}

// splitOutside splits s at sep outside comments and quoted strings.
func splitOutside(s string, sep byte) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0: // a quote inside a comment is plain text
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// words splits at whitespace outside comments and quoted strings; a comment
// is one word.
func words(s string) []string {
	var out []string
	var cur strings.Builder
	depth, quoted := 0, false
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(c)
			i++
			c = s[i]
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			if depth == 0 {
				flush()
			}
			depth++
		case c == ')' && depth > 0:
			depth--
			if depth == 0 {
				cur.WriteByte(c)
				flush()
				continue
			}
		case depth == 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			flush()
			continue
		}
		cur.WriteByte(c)
	}
	flush()
	return out
}

func unComment(w string) string {
	w = strings.TrimSuffix(strings.TrimPrefix(w, "("), ")")
	return identity.UnescapeQuotedPairs(w)
}

func unQuote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return identity.UnescapeQuotedPairs(v[1 : len(v)-1])
	}
	return v
}
