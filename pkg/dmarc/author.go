package dmarc

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/authmilter/authmilter/pkg/identity"
)

// Errors of ParseFrom, AuthorDomains and domain normalisation. Every one
// of them means the Author Domain cannot be known with certainty; the
// engine fails closed on each (RFC 9989 §11.5, our ROBUSTNESS.md).
var (
	// ErrNoFrom: no RFC5322.From field, or only empty ones.
	ErrNoFrom = errors.New("dmarc: no From field")
	// ErrNoAuthorDomain: the From field holds no address with a usable
	// domain (an empty group, a domain literal, no "@").
	ErrNoAuthorDomain = errors.New("dmarc: no author domain in From")
	// ErrInvalidDomain: a domain name that is not a valid DNS host name
	// (identity.ErrInvalidDomain, the one error for it).
	ErrInvalidDomain = identity.ErrInvalidDomain
	// ErrUnreadableFrom: the From value is not an RFC 5322 §3.4 address
	// list (obsolete syntax of §4.4 included), or its bytes are not UTF-8:
	// readers may disagree about which address it holds.
	ErrUnreadableFrom = errors.New("dmarc: From field not readable with certainty")
)

// From is what ParseFrom read from the RFC5322.From field(s).
type From struct {
	// Fields is the number of non-empty From fields.
	Fields int
	// Domains are the distinct Author Domains: the domains of the
	// addr-specs, lowercase A-labels, in order of appearance.
	Domains []string
	// Shown are other domains a reader may be shown as the author: an
	// address written in a display name, a comment or an RFC 2047
	// encoded-word ("=?utf-8?q?ceo=40bank.example?= <x@attacker.example>"),
	// distinct and not among Domains. They are evaluated like Author
	// Domains so that the message fails for every domain it might show.
	Shown []string
}

// All returns Domains followed by Shown.
func (f From) All() []string {
	return append(append([]string(nil), f.Domains...), f.Shown...)
}

// ParseFrom reads the raw values of the RFC5322.From fields as the MTA
// sends them (leading space kept, folds as "\n" or "\r\n").
//
// Each value is parsed as an RFC 5322 §3.4 address-list (RFC 6854 allows
// group syntax in From) including the obsolete syntax of §4.4 that readers
// still accept: CFWS between every token ("ceo @ bank. example",
// "ceo@bank(x).example" are bank.example, as Python's email package and
// Perl's Mail::Address read them), obs-local-part, obs-domain, obs-route
// ("<@relay.example:alice@example.org>" is example.org), empty list
// elements. Anything else fails with ErrUnreadableFrom: no fallback scan
// guesses a domain. A domain literal fails with ErrNoAuthorDomain, a
// domain that is not a host name with ErrInvalidDomain.
func ParseFrom(fromValues []string) (From, error) {
	var f From
	seen := map[string]bool{}
	var shown []string
	for _, v := range fromValues {
		v = unfold(v)
		if strings.Trim(v, " \t") == "" {
			continue
		}
		f.Fields++
		if !utf8.ValidString(v) {
			return From{}, fmt.Errorf("%w: not UTF-8", ErrUnreadableFrom)
		}
		if strings.ContainsFunc(v, isBidiControl) {
			return From{}, fmt.Errorf("%w: bidirectional control character", ErrUnreadableFrom)
		}
		p := addrParser{s: v}
		if err := p.parse(); err != nil {
			return From{}, fmt.Errorf("%w: %w", ErrUnreadableFrom, err)
		}
		if len(p.addrs) == 0 {
			return From{}, fmt.Errorf("%w: no address", ErrNoAuthorDomain)
		}
		for _, a := range p.addrs {
			if a.literal {
				return From{}, fmt.Errorf("%w: %q is a domain literal", ErrNoAuthorDomain, short(a.domain))
			}
			if len(a.domain) > 253 {
				return From{}, fmt.Errorf("%w: %q longer than 253 octets", ErrInvalidDomain, short(a.domain))
			}
			nd, err := identity.ASCII(a.domain)
			if err != nil {
				return From{}, fmt.Errorf("from domain %q: %w", short(a.domain), err)
			}
			if !seen[nd] {
				seen[nd] = true
				f.Domains = append(f.Domains, nd)
			}
		}
		for _, t := range p.shown {
			t = decodeShown(t)
			if strings.ContainsFunc(t, isBidiControl) {
				// An override or isolate makes a reader show the text in
				// another order ("moc.knab@oec" read as "ceo@bank.com"):
				// what is shown cannot be known.
				return From{}, fmt.Errorf("%w: bidirectional control character in a display name or comment", ErrUnreadableFrom)
			}
			shown = append(shown, shownDomains(t)...)
		}
	}
	if f.Fields == 0 {
		return From{}, ErrNoFrom
	}
	for _, d := range shown {
		if !seen[d] {
			seen[d] = true
			f.Shown = append(f.Shown, d)
		}
	}
	return f, nil
}

// AuthorDomains returns the distinct Author Domains (RFC 9989 §5.3.1) of
// the From values: ParseFrom's Domains.
func AuthorDomains(fromValues []string) ([]string, error) {
	f, err := ParseFrom(fromValues)
	if err != nil {
		return nil, err
	}
	return f.Domains, nil
}

// unfold removes the line breaks of a folded header value (RFC 5322
// §2.2.3): CRLF, and a stray CR or LF too.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
}

// A token of RFC 5322 §3.2 after CFWS is skipped: an atom, a
// quoted-string (text unquoted), a domain-literal, or one special.
type tokenKind byte

const (
	tokAtom tokenKind = iota + 1
	tokQuoted
	tokLiteral
	tokSpecial
)

type token struct {
	kind       tokenKind
	text       string
	start, end int // the raw bytes in the value
}

type address struct {
	domain  string
	literal bool
}

// addrParser is a recursive-descent reader of one From value. It is
// linear in the value: each byte is looked at a bounded number of times.
type addrParser struct {
	s     string
	toks  []token
	i     int
	addrs []address
	shown []string // display names and comments, raw
}

// maxCommentDepth bounds comment nesting (RFC 5322 sets none; real mail
// never nests more than a few).
const maxCommentDepth = 64

// isAtext: RFC 5322 §3.2.3 atext, with RFC 6532 §3.2's UTF8-non-ascii.
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 || c >= 0x80
}

// tokenize splits the value into tokens, dropping CFWS and keeping the
// comments' text for shownDomains. Control characters other than HTAB are
// not in any RFC 5322 production and fail (a VT or NUL that one reader
// skips and another keeps would make them disagree).
func (p *addrParser) tokenize() error {
	s := p.s
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			depth, start := 0, i+1
			for ; i < len(s); i++ {
				switch s[i] {
				case '\\':
					i++
				case '(':
					depth++
					if depth > maxCommentDepth {
						return errors.New("comments nested too deep")
					}
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
				if i < len(s) && s[i] < ' ' && s[i] != '\t' {
					return errors.New("control character in comment")
				}
			}
			if depth != 0 || i >= len(s) {
				return errors.New("unterminated comment")
			}
			p.shown = append(p.shown, identity.UnescapeQuotedPairs(s[start:i]))
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
					if j == len(s) {
						break
					}
				}
				if s[j] < ' ' && s[j] != '\t' || s[j] == 0x7f {
					return errors.New("control character in quoted-string")
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return errors.New("unterminated quoted-string")
			}
			p.toks = append(p.toks, token{tokQuoted, b.String(), i, j + 1})
			i = j + 1
		case c == '[':
			j := i + 1
			for ; j < len(s) && s[j] != ']'; j++ {
				if s[j] == '[' || s[j] == '\\' || s[j] < ' ' && s[j] != '\t' {
					return errors.New("bad character in domain literal")
				}
			}
			if j >= len(s) {
				return errors.New("unterminated domain literal")
			}
			p.toks = append(p.toks, token{tokLiteral, s[i : j+1], i, j + 1})
			i = j + 1
		case strings.IndexByte("<>@,;:.", c) >= 0:
			p.toks = append(p.toks, token{tokSpecial, s[i : i+1], i, i + 1})
			i++
		case isAtext(c):
			j := i
			for j < len(s) && isAtext(s[j]) {
				j++
			}
			p.toks = append(p.toks, token{tokAtom, s[i:j], i, j})
			i = j
		default:
			return fmt.Errorf("character %q outside quotes and comments", c)
		}
	}
	return nil
}

func (p *addrParser) peek() token {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return token{}
}

func (p *addrParser) isSpecial(c string) bool {
	t := p.peek()
	return t.kind == tokSpecial && t.text == c
}

func (p *addrParser) expect(c string) error {
	if !p.isSpecial(c) {
		return fmt.Errorf("expected %q, found %s", c, p.describe())
	}
	p.i++
	return nil
}

func (p *addrParser) describe() string {
	t := p.peek()
	if t.kind == 0 {
		return "end of field"
	}
	return fmt.Sprintf("%q", short(t.text))
}

// short cuts what an error quotes from the message to a readable length:
// errors end up in replies and A-R comments.
func short(s string) string {
	if len(s) <= 40 {
		return s
	}
	i := 40
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// parse reads address-list (RFC 5322 §3.4, obs-addr-list §4.4: empty
// elements between commas are allowed).
func (p *addrParser) parse() error {
	if err := p.tokenize(); err != nil {
		return err
	}
	for p.i < len(p.toks) {
		if p.isSpecial(",") {
			p.i++
			continue
		}
		if err := p.address(); err != nil {
			return err
		}
		if p.i < len(p.toks) {
			if err := p.expect(","); err != nil {
				return err
			}
		}
	}
	return nil
}

// address reads a mailbox or a group.
func (p *addrParser) address() error {
	// A group is display-name ":" …: the first special after the phrase
	// is ":". A phrase runs to the first special other than ".".
	j := p.i
	for j < len(p.toks) && (p.toks[j].kind == tokAtom || p.toks[j].kind == tokQuoted ||
		p.toks[j].kind == tokSpecial && p.toks[j].text == ".") {
		j++
	}
	if j > p.i && j < len(p.toks) && p.toks[j].kind == tokSpecial && p.toks[j].text == ":" {
		return p.group()
	}
	return p.mailbox()
}

// group: display-name ":" [group-list] ";" — the mailboxes inside count;
// an empty group gives none.
func (p *addrParser) group() error {
	if err := p.phrase(); err != nil {
		return err
	}
	if err := p.expect(":"); err != nil {
		return err
	}
	for !p.isSpecial(";") {
		if p.i >= len(p.toks) {
			return errors.New("group without ';'")
		}
		if p.isSpecial(",") {
			p.i++
			continue
		}
		if err := p.mailbox(); err != nil {
			return err
		}
		if !p.isSpecial(";") {
			if err := p.expect(","); err != nil {
				return err
			}
		}
	}
	p.i++
	return nil
}

// phrase: display-name = 1*word / obs-phrase (word *(word / "." / CFWS)).
func (p *addrParser) phrase() error {
	start := p.i
	for {
		t := p.peek()
		if !(t.kind == tokAtom || t.kind == tokQuoted || t.kind == tokSpecial && t.text == "." && p.i > start) {
			break
		}
		p.i++
	}
	if p.i == start {
		return fmt.Errorf("expected a display name, found %s", p.describe())
	}
	// What a reader shows: the raw phrase, which it decodes even where
	// RFC 2047 §5 does not allow an encoded-word (inside quotes, next to
	// a ".").
	p.shown = append(p.shown, p.s[p.toks[start].start:p.toks[p.i-1].end])
	return nil
}

// mailbox: name-addr / addr-spec.
func (p *addrParser) mailbox() error {
	t := p.peek()
	if t.kind == tokSpecial && t.text == "<" {
		return p.angleAddr()
	}
	// A phrase followed by "<" is a name-addr; otherwise an addr-spec.
	j := p.i
	for j < len(p.toks) && (p.toks[j].kind == tokAtom || p.toks[j].kind == tokQuoted ||
		p.toks[j].kind == tokSpecial && p.toks[j].text == ".") {
		j++
	}
	if j < len(p.toks) && p.toks[j].kind == tokSpecial && p.toks[j].text == "<" {
		if err := p.phrase(); err != nil {
			return err
		}
		return p.angleAddr()
	}
	return p.addrSpec()
}

// angleAddr: "<" [obs-route] addr-spec ">".
func (p *addrParser) angleAddr() error {
	if err := p.expect("<"); err != nil {
		return err
	}
	if p.isSpecial("@") || p.isSpecial(",") {
		// obs-route = obs-domain-list ":"; obs-domain-list =
		// *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain]). The route's
		// domains are relays, not authors.
		for {
			if p.isSpecial(",") {
				p.i++
				continue
			}
			if !p.isSpecial("@") {
				break
			}
			p.i++
			if _, err := p.domain(); err != nil {
				return fmt.Errorf("source route: %w", err)
			}
		}
		if err := p.expect(":"); err != nil {
			return fmt.Errorf("source route: %w", err)
		}
	}
	if err := p.addrSpec(); err != nil {
		return err
	}
	return p.expect(">")
}

// addrSpec: local-part "@" domain, local-part a dot-atom, a quoted-string
// or obs-local-part (word *("." word)).
func (p *addrParser) addrSpec() error {
	start := p.i
	for n := 0; ; n++ {
		t := p.peek()
		if t.kind != tokAtom && t.kind != tokQuoted {
			if n == 0 {
				return fmt.Errorf("expected an address, found %s", p.describe())
			}
			return fmt.Errorf("expected a word after '.', found %s", p.describe())
		}
		p.i++
		if !p.isSpecial(".") {
			break
		}
		p.i++
	}
	if local := p.s[p.toks[start].start:p.toks[p.i-1].end]; strings.Contains(local, "=?") {
		// An encoded-word in a local part is not decoded (RFC 2047 §5),
		// but some readers do. A quoted local part ("a@b"@example.org) is
		// shown as written, quotes and all: not an extra domain.
		p.shown = append(p.shown, local)
	}
	if err := p.expect("@"); err != nil {
		return err
	}
	a, err := p.domain()
	if err != nil {
		return err
	}
	p.addrs = append(p.addrs, a)
	return nil
}

// domain: dot-atom / domain-literal / obs-domain (atom *("." atom)). A
// trailing dot ("example.com.") is no RFC 5322 domain and Python's email
// package reads no domain there: it fails like any other unreadable From.
func (p *addrParser) domain() (address, error) {
	t := p.peek()
	if t.kind == tokLiteral {
		p.i++
		return address{domain: t.text, literal: true}, nil
	}
	var labels []string
	for {
		t := p.peek()
		if t.kind != tokAtom {
			return address{}, fmt.Errorf("expected a domain label, found %s", p.describe())
		}
		labels = append(labels, t.text)
		p.i++
		if !p.isSpecial(".") {
			break
		}
		p.i++
	}
	return address{domain: strings.Join(labels, ".")}, nil
}

// wordDecoder decodes RFC 2047 encoded-words the way mail readers do
// before they show a name. Unknown charsets pass through undecoded.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(_ string, input io.Reader) (io.Reader, error) {
	return input, nil
}}

// decodeShown decodes the encoded-words of a display name or comment as a
// mail reader does before showing it.
func decodeShown(text string) string {
	if strings.Contains(text, "=?") {
		if d, err := wordDecoder.DecodeHeader(text); err == nil {
			return d
		}
	}
	return text
}

// isBidiControl: the explicit embeddings, overrides and isolates of
// Unicode's bidirectional algorithm (U+202A–U+202E, U+2066–U+2069). The
// marks U+200E and U+200F, common in right-to-left names, reorder nothing
// by themselves and are allowed.
func isBidiControl(r rune) bool {
	return r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// shownDomains returns the domains of the addresses a reader sees in a
// display name or comment, after decoding encoded-words: each "@" (or its
// full-width and small forms, U+FF20 and U+FE6B) followed by a name with a
// dot that is a valid host name. Names without a dot ("John@Doe") are not
// domains anyone spoofs.
func shownDomains(text string) []string {
	var out []string
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if r != '@' && r != '\uFF20' && r != '\uFE6B' {
			continue
		}
		j := i
		for j < len(text) {
			r, n := utf8.DecodeRuneInString(text[j:])
			if !(r == '.' || r == '-' || r == '_' || r == '\uFF0E' || r == '\u3002' ||
				r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r >= 0x80 && r != '\uFF20' && r != '\uFE6B' && !isSpaceRune(r)) {
				break
			}
			j += n
		}
		name := strings.TrimRight(text[i:j], ".\uFF0E\u3002")
		if !strings.ContainsAny(name, ".\uFF0E\u3002") {
			continue
		}
		if d, err := identity.ASCII(name); err == nil {
			out = append(out, d)
		}
	}
	return out
}

func isSpaceRune(r rune) bool {
	return r == '\u00a0' || r == '\u0085' || r >= '\u2000' && r <= '\u200b' || r == '\u3000' || r == '\u202f' || r == '\u205f' || r == '\ufeff'
}
