package report

import (
	"net/mail"
	"strings"
	"testing"
)

// FuzzMailtoEnvelope: whatever a rua URI holds, an accepted destination is
// one mailbox that can go between '<' and '>' on the SMTP envelope as it
// is: no angle bracket, quote inside the local part or line break, the
// local part a Dot-string or one Quoted-string (RFC 5321 §4.1.2), and
// net/mail reads it back as the same mailbox (issue 16).
func FuzzMailtoEnvelope(f *testing.F) {
	for _, s := range []string{
		"mailto:dmarc@example.com", "mailto:%22john%20doe%22@example.com", "mailto:%22a%3E%20NOTIFY%3DSUCCESS%22@example.com",
		"mailto:%22a..b%22@example.com", "mailto:a%3E@example.com", "mailto:%C3%A9@example.com", "mailto:%22%22@example.com",
		"mailto:a.@example.com", "mailto:(c)a@example.com", "mailto:%22a%5C%22b%22@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		d := parseMailto(URI{Address: uri})
		if d.Err != nil {
			return
		}
		a := d.Address
		if strings.ContainsAny(a, "<>\r\n\x00") {
			t.Fatalf("%q gave %q", uri, a)
		}
		at := strings.LastIndexByte(a, '@')
		local := a[:at]
		if strings.HasPrefix(local, `"`) {
			if len(local) < 2 || !strings.HasSuffix(local, `"`) || strings.ContainsAny(local[1:len(local)-1], `"\`) {
				t.Fatalf("%q gave the local part %q", uri, local)
			}
		} else if !isDotString(local) {
			t.Fatalf("%q gave the local part %q, neither quoted nor a Dot-string", uri, local)
		}
		back, err := mail.ParseAddress(a)
		if err != nil {
			t.Fatalf("%q gave %q, which net/mail does not read: %v", uri, a, err)
		}
		if want := strings.Trim(local, `"`) + a[at:]; back.Address != want {
			t.Fatalf("%q gave %q, read back as %q", uri, a, back.Address)
		}
	})
}
