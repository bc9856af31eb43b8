package integration

import (
	"strings"
	"testing"
)

// rawMessage builds a message from raw header lines (no From added), then
// the suite's X-Test-Id, To, Subject, Date and Message-ID, with CRLF line
// ends. A first line that is no header field makes Postfix end the header
// section there.
func rawMessage(id string, lines ...string) []byte {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("X-Test-Id: " + id + "\r\nTo: rcpt@rcpt.test\r\nSubject: test " + id +
		"\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + id + "@harness.test>\r\n\r\nBody.\r\n")
	return []byte(b.String())
}

// testSpoofFrom: issue #15 items 1–4 through the real Postfix: crafted From
// fields that must never be delivered for the p=reject domain
// dmarc-reject.test, and RFC 5322 forms that must keep passing.
func testSpoofFrom(t *testing.T) {
	const (
		victim   = "5.7.1 Email rejected per DMARC policy for dmarc-reject.test"
		unusable = "5.7.1 Message rejected: From header field not usable for DMARC"
	)
	bad := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
	decoys := "a@d1.test, b@d2.test, c@d3.test, d@d4.test, e@d5.test"
	for _, c := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"five decoy addresses then the victim", []string{"From: " + decoys + ", ceo@dmarc-reject.test"}, unusable},
		{"six decoy From fields then the victim", []string{"From: a@d1.test", "From: b@d2.test", "From: c@d3.test",
			"From: d@d4.test", "From: e@d5.test", "From: f@d6.test", "From: ceo@dmarc-reject.test"}, unusable},
		{"decoy and victim in one field", []string{"From: a@spoofer.example.net, ceo@dmarc-reject.test"}, victim},
		{"space after dot", []string{"From: ceo@dmarc-reject. test"}, victim},
		{"comment inside domain", []string{"From: ceo@dmarc-reject(x).test"}, victim},
		{"spaces around @", []string{"From: CEO <ceo @ dmarc-reject.test>"}, victim},
		{"fold inside the addr-spec", []string{"From: ceo@dmarc-reject.", "\ttest"}, victim},
		{"two From fields", []string{"From: ceo@dmarc-reject.test", "From: x@spoofer.example.net"}, unusable},
		{"no From", nil, unusable},
		{"empty From", []string{"From:"}, unusable},
		{"From not UTF-8", []string{"From: ceo@dmarc-reject.test (\xe4)"}, unusable},
		{"first line starts with white space", []string{" folded", "From: ceo@dmarc-reject.test"}, unusable},
		{"first line without a colon", []string{"NoColonHere", "From: ceo@dmarc-reject.test"}, unusable},
		{"encoded-word hiding the victim", []string{"From: =?utf-8?B?PGNlb0BkbWFyYy1yZWplY3QudGVzdD4=?= <x@spoofer.example.net>"}, victim},
		{"victim's address as quoted display name", []string{`From: "ceo@dmarc-reject.test" <x@spoofer.example.net>`}, victim},
		{"victim's address as unquoted display name", []string{"From: ceo@dmarc-reject.test <x@spoofer.example.net>"}, unusable},
		{"trailing dot", []string{"From: ceo@dmarc-reject.test."}, unusable},
		// Header-name tricks (Chen et al. 2020 §5.2): white space before
		// the colon, upper case, a second From spelled differently.
		{"space before the colon", []string{"X-Pad: 1", "From : ceo@dmarc-reject.test"}, victim},
		// As the first line, "From " is an mbox envelope line to Postfix:
		// no From field reaches the milter, which fails closed.
		{"first line 'From :'", []string{"From : ceo@dmarc-reject.test"}, unusable},
		{"tab before the colon", []string{"From\t: ceo@dmarc-reject.test"}, victim},
		{"upper-case field name", []string{"FROM: ceo@dmarc-reject.test"}, victim},
		{"From and From with space before colon", []string{"From: x@spoofer.example.net", "From : ceo@dmarc-reject.test"}, unusable},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newID(t.Name())
			_, err := sendOne(pf.smtpTCP, bad, "x@spoofer.example.net", []string{"rcpt@rcpt.test"}, rawMessage(id, c.lines...))
			wantSMTPError(t, err, 550, c.want)
		})
	}
	good := client{IP: goodV4, Name: "mail.dmarc-reject.test", HELO: "mail.dmarc-reject.test"}
	for _, c := range []struct{ name, from string }{
		{"obsolete route", "Alice <@relay.example:alice@dmarc-reject.test>"},
		{"quoted local part with @", `"alice@home"@dmarc-reject.test`},
		{"folded encoded display name", "=?UTF-8?Q?J=C3=B6rg?=\r\n =?UTF-8?Q?_M=C3=BCller?= <alice@dmarc-reject.test>"},
		{"obsolete spacing and comments", "(Alice) alice @ dmarc-reject . test (home)"},
	} {
		t.Run("passes/"+c.name, func(t *testing.T) {
			id := newID(t.Name())
			d := deliver(t, pf.smtpTCP, good, "alice@dmarc-reject.test", rawMessage(id, "From: "+c.from), id)
			wantResult(t, wantAR(t, d), "dmarc", "header.from", "dmarc-reject.test", "pass")
		})
	}
}

// testMailFrom: issue #15 item 5 and issue #17 item 7 through the real
// Postfix (strict_rfc821_envelopes = no, its default). SPF checks the
// address Postfix parsed ({mail_addr}): Postfix reads the argument with
// its RFC 822 tokenizer, so the space in "alice@ spf-pass.test" is white
// space and "(a.attacker.test" an (unclosed) comment. The MAIL FROM
// identity of RFC 7208 §4.3 is that parsed address — the one Postfix
// bounces to — so its domain spf-pass.test is checked and passes; the
// string as received is not an address and never reaches smtp.mailfrom,
// and the comment shows it, Go-quoted so it reads back exactly.
func testMailFrom(t *testing.T) {
	good := client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	for _, c := range []struct{ name, mailFrom, want, comment string }{
		{"space after @", "alice@ spf-pass.test", "alice@spf-pass.test", `sender as received "alice@ spf-pass.test"`},
		{"comment glued to the domain", "any@spf-pass.test(a.attacker.test", "any@spf-pass.test", `sender as received "any@spf-pass.test\\x28a.attacker.test"`},
		{"plain", "alice@spf-pass.test", "alice@spf-pass.test", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newID(t.Name())
			d := deliver(t, pf.smtpTCP, good, c.mailFrom, message(id, "alice@spf-pass.test"), id)
			ar := wantAR(t, d)
			wantResult(t, ar, "spf", "smtp.mailfrom", c.want, "pass")
			if c.comment != "" && !strings.Contains(ar.Raw, c.comment) {
				t.Errorf("A-R lacks %s:\n%s", c.comment, ar.Raw)
			}
			if strings.Contains(ar.Raw, "attacker.test") && !strings.Contains(ar.Raw, c.comment) {
				t.Errorf("attacker.test outside the as-received comment:\n%s", ar.Raw)
			}
		})
	}
}
