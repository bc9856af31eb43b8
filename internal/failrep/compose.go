package failrep

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Compose writes the report mail for rep to one destination (RFC 6591 §3,
// RFC 5965 §2, RFC 9991 §3): multipart/report; report-type=feedback-report
// with a human-readable part, the machine-readable message/feedback-report
// part and the reported header fields as text/rfc822-headers (never the
// body). from is the reporter address (report.from), to the destination
// mailbox, userAgent names us (RFC 5965 User-Agent). The Message-ID and the
// MIME boundary are derived from id, so a retry sends the same message.
func Compose(rep Report, id, from, to, userAgent string, date time.Time) []byte {
	sum := sha256.Sum256([]byte(id + "\x00" + to))
	tag := hex.EncodeToString(sum[:12])
	boundary := "dmarc-failure-" + tag
	var b strings.Builder
	h := func(name, value string) { b.WriteString(fold(name+": "+value) + "\r\n") }
	h("From", from)
	h("To", to)
	h("Date", date.UTC().Format(time.RFC1123Z))
	h("Subject", "DMARC failure report for "+oneLine(rep.AuthorDomain)+" (source "+oneLine(rep.SourceIP)+")")
	h("Message-ID", "<"+tag+"@"+oneLine(rep.ReportingMTA)+">")
	h("MIME-Version", "1.0")
	// RFC 3834: automatic mail; nothing should answer it, and our own
	// failure reports skip mail carrying it (loop prevention).
	h("Auto-Submitted", "auto-generated")
	h("Content-Type", `multipart/report; report-type=feedback-report; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n")

	// 1: for people (RFC 5965 §2 (b)).
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	fmt.Fprintf(&b, "This is a DMARC failure report (RFC 9991) from %s.\r\n", ascii(rep.ReportingMTA))
	fmt.Fprintf(&b, "A message from %s claiming to be from %s failed authentication (%s)\r\n",
		ascii(rep.SourceIP), ascii(rep.AuthorDomain), ascii(rep.AuthFailure))
	fmt.Fprintf(&b, "on %s; what the receiving MTA did: %s.\r\n", rep.Arrival.UTC().Format(time.RFC1123Z), ascii(rep.DeliveryResult))
	b.WriteString("Only the header fields are included, with the local parts of addresses\r\n")
	b.WriteString("redacted as the reporting site chose (RFC 6590); never the body.\r\n")

	// 2: for machines (RFC 5965 §3.1, RFC 6591 §3.1, RFC 9991 §3).
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: message/feedback-report\r\n\r\n")
	h("Feedback-Type", "auth-failure")
	h("User-Agent", oneLine(userAgent))
	h("Version", "1")
	if rep.OriginalMailFrom != "" {
		h("Original-Mail-From", "<"+oneLine(rep.OriginalMailFrom)+">")
	} else {
		h("Original-Mail-From", "<>")
	}
	h("Arrival-Date", rep.Arrival.UTC().Format(time.RFC1123Z))
	h("Reporting-MTA", "dns; "+oneLine(rep.ReportingMTA))
	if rep.SourceIP != "" {
		h("Source-IP", oneLine(rep.SourceIP))
	}
	h("Reported-Domain", oneLine(rep.AuthorDomain))
	if rep.AuthResults != "" {
		h("Authentication-Results", oneLine(rep.AuthResults))
	}
	h("Auth-Failure", oneLine(rep.AuthFailure))
	if len(rep.IdentityAlignment) == 0 {
		h("Identity-Alignment", "none")
	} else {
		h("Identity-Alignment", oneLine(strings.Join(rep.IdentityAlignment, ", ")))
	}
	if rep.DeliveryResult != "" {
		h("Delivery-Result", oneLine(rep.DeliveryResult))
	}
	if rep.DKIMDomain != "" {
		h("DKIM-Domain", oneLine(rep.DKIMDomain))
		if rep.DKIMIdentity != "" {
			h("DKIM-Identity", oneLine(rep.DKIMIdentity))
		}
		h("DKIM-Selector", oneLine(rep.DKIMSelector))
	}
	for _, txt := range rep.SPFDNS {
		h("SPF-DNS", "txt : "+oneLine(rep.SPFDomain)+" : "+quote(txt))
	}

	// 3: the reported header fields (RFC 6591 §3.1 allows text/rfc822-headers).
	b.WriteString("\r\n--" + boundary + "\r\n")
	cte := "7bit"
	if !isASCII(rep.Headers) {
		cte = "8bit"
	}
	b.WriteString("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n")
	b.WriteString(crlf(rep.Headers))
	if !strings.HasSuffix(rep.Headers, "\n") {
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return []byte(b.String())
}

// oneLine makes a header value of text that may come from the message or
// DNS: folds become spaces, other control bytes are dropped, so nothing
// can end the field or start another (header injection).
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || c == '\t' || c == ' ':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case c < 0x20 || c == 0x7f:
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return strings.TrimRight(b.String(), " ")
}

// fold breaks a header line longer than 78 bytes at spaces (RFC 5322
// §2.2.3), so that no line comes near SMTP's 1000-byte limit however long
// the A-R or a DNS record is. A word longer than a line stays whole.
func fold(line string) string {
	if len(line) <= 78 {
		return line
	}
	var b strings.Builder
	n := 0
	for i, w := range strings.Split(line, " ") {
		if i > 0 {
			if n+1+len(w) > 78 && n > 0 {
				b.WriteString("\r\n\t")
				n = 1
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// ascii keeps printable ASCII only (the text part is us-ascii, 7bit).
func ascii(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// quote writes an RFC 5322 quoted-string.
func quote(s string) string {
	s = oneLine(s)
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// crlf turns every line end into CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
