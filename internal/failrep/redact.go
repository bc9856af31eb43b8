package failrep

import "strings"

// Redacted replaces a local part (RFC 6590 §4 lets the generator choose the
// replacement; a fixed string tells the consumer nothing about the person).
const Redacted = "redacted"

// RedactLocalParts replaces the local part of every address in s by
// Redacted and keeps its domain, as RFC 6590 describes for failure reports.
// It reads s as text, not as RFC 5322 syntax: anything that looks like
// local@domain counts (From, To, Cc, Received "for <…>", Return-Path,
// Message-ID, DKIM-Signature i=), including quoted local parts, so that
// nothing a parser might read as an address escapes. Linear in len(s).
func RedactLocalParts(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return redactDotAtoms(redactQuoted(s))
}

// redactQuoted replaces quoted local parts ("…"@domain) first, so that an
// '@' inside the quotes is not taken for the end of another local part.
func redactQuoted(s string) string {
	if !strings.Contains(s, `"@`) {
		return s
	}
	var b strings.Builder
	done := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			continue
		}
		end := closingQuote(s, i)
		if end < 0 {
			break
		}
		if end+1 < len(s) && s[end+1] == '@' && domainFollows(s, end+2) {
			b.WriteString(s[done:i])
			b.WriteString(Redacted)
			done = end + 1
		}
		i = end
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// closingQuote returns the index of the '"' that ends the quoted string
// opened at open (a quoted-pair "\x" does not end it), or -1.
func closingQuote(s string, open int) int {
	for j := open + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// redactDotAtoms replaces every run of local-part bytes directly before an
// '@' that a domain follows.
func redactDotAtoms(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	done := 0 // s[:done] is written
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		start := i
		for start > done && localByte(s[start-1]) {
			start--
		}
		if start == i || !domainFollows(s, i+1) || s[start:i] == Redacted {
			continue
		}
		b.WriteString(s[done:start])
		b.WriteString(Redacted)
		done = i // the '@' and the domain are kept
	}
	b.WriteString(s[done:])
	return b.String()
}

// domainFollows reports whether what follows an '@' at i could be read as
// a domain: a domain literal, a quote, or any byte a local part may hold (which
// covers letters, digits and U-labels). Being generous here keeps the
// function idempotent: what it writes ("redacted") is itself such a byte.
func domainFollows(s string, i int) bool {
	return i < len(s) && (s[i] == '[' || s[i] == '"' || localByte(s[i]))
}

// localByte: atext (RFC 5322 §3.2.3) but '=', '.', and 8-bit bytes (RFC
// 6532 UTF-8 local parts). '=' ends the run so that tag=value syntax
// (DKIM-Signature i=user@…) keeps its tag, and SRS/BATV addresses
// (SRS0=hash=tt=example.org=alice@…) lose the user but keep the rest,
// which names no person.
func localByte(c byte) bool {
	if c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
		return true
	}
	return strings.IndexByte("!#$%&'*+-/?^_`{|}~.", c) >= 0
}
