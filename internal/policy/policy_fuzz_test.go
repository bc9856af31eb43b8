package policy

import (
	"regexp"
	"strings"
	"testing"
)

// replyShape is what Postfix accepts from a milter as a reply (it checks
// "^[45]dd[ -]" and an enhanced code of the same class, else it logs
// "malformed reply" and answers 451 4.3.5): one line, a 4xx/5xx code, an enhanced code of the
// same class (RFC 3463 §2), text without control characters.
var replyShape = regexp.MustCompile(`^([45])\d\d ([45])\.\d{1,3}\.\d{1,3} [^\x00-\x1f\x7f]*$`)

// FuzzReply: whatever text a sender gets into a reply (a domain from MAIL
// FROM or From, the configured reject text), the reply stays one well-formed
// line: no CR/LF to start a second reply, no NUL to cut it short, and every
// '%' doubled so Postfix's %-expansion can't be triggered. Seeds:
// testdata/fuzz/FuzzReply.
func FuzzReply(f *testing.F) {
	f.Add(550, "5.7.1", "Email rejected per DMARC policy for example.com")
	f.Add(451, "4.7.5", "x\r\n250 2.0.0 Ok: queued as FORGED")
	f.Add(550, "5.7.23", "100% %s %%d \x00 tail")
	f.Fuzz(func(t *testing.T, code int, _, text string) {
		// Codes and enhanced codes come from our code, not the sender:
		// the fuzzed one is not used.
		codes := map[int]string{550: "5.7.1", 451: "4.7.5"}
		if _, ok := codes[code]; !ok {
			code = 550
		}
		enhanced := codes[code]
		r := Reply(code, enhanced, text)
		m := replyShape.FindStringSubmatch(r)
		if m == nil || m[1] != m[2] {
			t.Fatalf("Reply(%d, %q, %q) = %q: not one well-formed reply line", code, enhanced, text, r)
		}
		if strings.Contains(strings.ReplaceAll(r, "%%", ""), "%") {
			t.Fatalf("Reply = %q: a single %% left", r)
		}
	})
}
