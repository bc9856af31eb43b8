package service_test

import (
	"fmt"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
)

// spoofZone: bank.example is the victim (p=reject, nobody may send for
// it); attacker.example is the attacker's own domain, whose SPF passes for
// the attacker's client 198.51.100.1; xn--bcher-kva.example (bücher) is a
// legitimate IDN sender.
const spoofZone = `
bank.example.                  300 IN TXT "v=spf1 -all"
_dmarc.bank.example.           300 IN TXT "v=DMARC1; p=reject"
attacker.example.              300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
_dmarc.attacker.example.       300 IN TXT "v=DMARC1; p=none"
xn--bcher-kva.example.         300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.xn--bcher-kva.example.  300 IN TXT "v=DMARC1; p=reject"
`

// fromMsg is a message from the attacker's client with the given From
// fields (raw values as Postfix sends them).
func fromMsg(mailFrom string, froms ...string) msg {
	m := msg{from: mailFrom, body: "hello\r\n"}
	for _, f := range froms {
		m.headers = append(m.headers, [2]string{"From", f})
	}
	m.headers = append(m.headers, [2]string{"To", " rcpt@rcpt.test"}, [2]string{"Subject", " test"})
	return m
}

// Issue #15, items 1–4: no crafted From walks around p=reject. Each row is
// a message as an attacker writes it (or a legitimate one that must keep
// passing), through the real milter server, service, engine and resolver.
func TestSpoofFromClasses(t *testing.T) {
	const (
		victimReject = "550 5.7.1 Email rejected per DMARC policy for bank.example"
		unusable     = "550 5.7.1 Message rejected: From header field not usable for DMARC"
	)
	decoys := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, " d@decoy"+string(rune('a'+i))+".example")
		}
		return out
	}
	signed := emlMsg(t, fixtures+"simple-odd-whitespace.eml", "alice@example.org")
	replay := signed
	replay.headers = append([][2]string{{"From", " CEO <ceo@bank.example>"}}, signed.headers...)

	tests := []struct {
		name   string
		ip     string // client; "" is the attacker's 198.51.100.1
		m      msg
		want   []string // results the A-R must carry
		reply  string   // prefix of the reply; "" for accepted
		reason string   // text the dmarc comment must contain
	}{
		// 1. Author domains past the cap (dmarc.max_author_domains = 5).
		{name: "six decoy From fields, then the victim", m: fromMsg("x@attacker.example", append(decoys(6), " ceo@bank.example")...),
			want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "five decoy addresses in one field, then the victim", m: fromMsg("x@attacker.example", " "+strings.Join(decoys(5), ",")+", ceo@bank.example"),
			want: []string{"dmarc=permerror"}, reply: unusable, reason: "6 author domains, more than dmarc.max_author_domains = 5"},
		{name: "four decoys and the victim in one field: each evaluated", m: fromMsg("x@attacker.example", " "+strings.Join(decoys(4), ",")+", ceo@bank.example"),
			want: []string{"dmarc=fail header.from=bank.example policy.dmarc=reject"}, reply: victimReject},
		{name: "the attacker's own domain and the victim in one field", m: fromMsg("x@attacker.example", " x@attacker.example, ceo@bank.example"),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		// 2. Obsolete RFC 5322 syntax: the author domain is read in full.
		{name: "space after a dot", m: fromMsg("x@attacker.example", " ceo@bank. example"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "comment inside the domain", m: fromMsg("x@attacker.example", " ceo@bank(x).example"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "spaces around @", m: fromMsg("x@attacker.example", " CEO <ceo @ bank.example>"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "fold inside the addr-spec", m: fromMsg("x@attacker.example", " ceo@bank.\n\texample"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "source route through the attacker", m: fromMsg("x@attacker.example", " <@attacker.example:ceo@bank.example>"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "upper-case victim", m: fromMsg("x@attacker.example", " ceo@BANK.Example"), want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "trailing dot", m: fromMsg("x@attacker.example", " ceo@bank.example."), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "empty label", m: fromMsg("x@attacker.example", " ceo@bank..example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "domain literal", m: fromMsg("x@attacker.example", " ceo@[192.0.2.1]"), want: []string{"dmarc=permerror"}, reply: unusable},
		// 3. No usable From, or more than one From field.
		{name: "no From", m: fromMsg("x@attacker.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "empty From", m: fromMsg("x@attacker.example", ""), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "From of white space", m: fromMsg("x@attacker.example", " \n\t "), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "From not UTF-8", m: fromMsg("x@attacker.example", " ceo@b\xe4nk.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "latin-1 display name", m: fromMsg("x@attacker.example", " J\xf6rg <x@attacker.example>"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "victim's From then the attacker's", m: fromMsg("x@attacker.example", " ceo@bank.example", " x@attacker.example"), want: []string{"dmarc=permerror"}, reply: unusable, reason: "more than one From field: 2 fields"},
		{name: "attacker's From then the victim's", m: fromMsg("x@attacker.example", " x@attacker.example", " ceo@bank.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "the same From twice", m: fromMsg("x@attacker.example", " x@attacker.example", " x@attacker.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "genuinely signed message replayed with a From prepended", m: replay,
			want: []string{"dkim=pass header.d=example.org", "dmarc=permerror"}, reply: unusable},
		// 4. Not readable with certainty, or an address shown elsewhere.
		{name: "encoded-word hiding the victim's address", m: fromMsg("x@attacker.example", " =?utf-8?B?PGNlb0BiYW5rLmV4YW1wbGU+?= <x@attacker.example>"),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "Q-encoded address in the display name", m: fromMsg("x@attacker.example", " =?utf-8?q?ceo=40bank.example?= <x@attacker.example>"),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "victim's address as quoted display name", m: fromMsg("x@attacker.example", ` "ceo@bank.example" <x@attacker.example>`),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "victim's address in a comment", m: fromMsg("x@attacker.example", " x@attacker.example (ceo@bank.example)"),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "right-to-left override reversing the victim's address", m: fromMsg("x@attacker.example", " \"\u202eelpmaxe.knab@oec\u202c\" <x@attacker.example>"),
			want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "victim's address as unquoted display name", m: fromMsg("x@attacker.example", " ceo@bank.example <x@attacker.example>"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "angle address then bare address", m: fromMsg("x@attacker.example", " <x@attacker.example>ceo@bank.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "two angle addresses", m: fromMsg("x@attacker.example", " <x@attacker.example> <ceo@bank.example>"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "quoted pair outside quotes", m: fromMsg("x@attacker.example", ` \"ceo\" <x@attacker.example>`), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "unterminated quoted display name", m: fromMsg("x@attacker.example", ` "ceo@bank.example <x@attacker.example>`), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "vertical tab between addresses", m: fromMsg("x@attacker.example", " x@attacker.example\v<ceo@bank.example>"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "NO-BREAK SPACE before angle", m: fromMsg("x@attacker.example", " ceo@bank.example\u00a0<x@attacker.example>"), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "escaped dot in domain", m: fromMsg("x@attacker.example", ` ceo@bank\.example`), want: []string{"dmarc=permerror"}, reply: unusable},
		{name: "two @ in the address", m: fromMsg("x@attacker.example", " ceo@bank.example@attacker.example"), want: []string{"dmarc=permerror"}, reply: unusable},
		// Envelope tricks (Chen et al. A1, A2): neither aligns with the victim.
		{name: "MAIL FROM in a non-existent subdomain of the victim", m: fromMsg("x@nx.bank.example", " ceo@bank.example"),
			want: []string{"spf=none", "dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "null MAIL FROM, the attacker's HELO", m: fromMsg("", " ceo@bank.example"),
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		// DKIM d= with a NUL (Chen et al. A13): malformed, never the victim's.
		{name: "DKIM d= with a NUL", m: msg{from: "x@attacker.example", headers: [][2]string{
			{"DKIM-Signature", " v=1; a=rsa-sha256; d=bank.example\x00.attacker.example; s=sel; h=from; bh=AAAA; b=AAAA"},
			{"From", " ceo@bank.example"}}, body: "x\r\n"},
			want: []string{"dkim=permerror", "dmarc=fail header.from=bank.example"}, reply: victimReject},
		// White space before the colon (RFC 5322 §4.5 obs-from): the same field.
		{name: "space before the colon", m: msg{from: "x@attacker.example", headers: [][2]string{{"From ", " ceo@bank.example"}}, body: "x\r\n"},
			want: []string{"dmarc=fail header.from=bank.example"}, reply: victimReject},
		{name: "From and 'From ' fields", m: msg{from: "x@attacker.example", headers: [][2]string{{"From", " x@attacker.example"}, {"From\t", " ceo@bank.example"}}, body: "x\r\n"},
			want: []string{"dmarc=permerror"}, reply: unusable},
		// What RFC 5322 defines exactly stays valid and passes when authenticated.
		{name: "obsolete route, authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", " Alice <@relay.example:alice@sender.test>"), want: []string{"dmarc=pass header.from=sender.test"}},
		{name: "quoted local part with @, authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", ` "alice@home"@sender.test`), want: []string{"dmarc=pass header.from=sender.test"}},
		{name: "folded encoded display name, authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", " =?UTF-8?Q?J=C3=B6rg?=\n =?UTF-8?Q?_M=C3=BCller?= <alice@sender.test>"), want: []string{"dmarc=pass header.from=sender.test"}},
		{name: "U-label domain, authenticated", ip: "192.0.2.1", m: fromMsg("joerg@xn--bcher-kva.example", " Jörg <jörg@Bücher.example>"), want: []string{"dmarc=pass header.from=xn--bcher-kva.example"}},
		{name: "own address as display name, authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", ` "alice@sender.test" <alice@sender.test>`), want: []string{"dmarc=pass header.from=sender.test"}},
		{name: "comments and obsolete spacing, authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", " (Alice) alice . x @ sender . test (home)"), want: []string{"dmarc=pass header.from=sender.test"}},
		{name: "group syntax (RFC 6854), authenticated", ip: "192.0.2.1", m: fromMsg("alice@sender.test", " Team: alice@sender.test;"), want: []string{"dmarc=pass header.from=sender.test"}},
	}
	h := newHarness(t, dkimZone(t, spoofZone+`
example.org.        300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none"
`), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := tt.ip
			if ip == "" {
				ip = "198.51.100.1"
			}
			c := h.connect(ip, "["+ip+"]", "client.test")
			r := c.send(tt.m)
			ar := r.ar(t)
			for _, w := range tt.want {
				if !hasResult(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
			if tt.reason != "" && !strings.Contains(ar, tt.reason) {
				t.Errorf("A-R lacks the reason %q:\n%s", tt.reason, ar)
			}
			got := strings.TrimPrefix(r.reply(), "y ")
			if (tt.reply == "") != (got == "") || !strings.HasPrefix(got, tt.reply) {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
		})
	}
}

// dmarc.unusable_from = "accept": the unusable From is delivered, still
// marked dmarc=permerror; monitor mode never rejects it either.
func TestUnusableFromAccept(t *testing.T) {
	for _, edit := range []func(*config.Config){
		func(c *config.Config) { c.DMARC.UnusableFrom = "accept" },
		func(c *config.Config) { c.DMARC.Monitor = true },
	} {
		h := newHarness(t, spoofZone, edit)
		c := h.connect("198.51.100.1", "[198.51.100.1]", "client.test")
		for _, m := range []msg{
			fromMsg("x@attacker.example"),
			fromMsg("x@attacker.example", " a@attacker.example", " ceo@bank.example"),
			fromMsg("x@attacker.example", " ceo@bank.example."),
		} {
			r := c.send(m)
			if ar := r.ar(t); !hasResult(ar, "dmarc=permerror") {
				t.Errorf("A-R:\n%s", ar)
			}
			if got := r.reply(); got != "" {
				t.Errorf("reply %q, want none", got)
			}
		}
	}
}

// Issue #15 item 7: forged Authentication-Results hidden behind
// characters other readers take for white space are removed, through the
// milter; each message carries one forged field and one foreign field.
func TestForgedARBehindOtherWhiteSpace(t *testing.T) {
	h := newHarness(t, baseZone, nil)
	for _, v := range []string{
		"\v" + authservID + "; dmarc=pass header.from=bank.example",
		" " + authservID + "\v; dmarc=pass header.from=bank.example",
		"\f" + authservID + "; dmarc=pass header.from=bank.example",
		" " + authservID + "\f; dmarc=pass header.from=bank.example",
		"\u00a0" + authservID + "; dmarc=pass header.from=bank.example",
		" " + authservID + "\u00a0; dmarc=pass header.from=bank.example",
		"\u0085" + authservID + "; dmarc=pass header.from=bank.example",
		" " + authservID + "\u0085; dmarc=pass header.from=bank.example",
		"\u3000" + strings.ToUpper(authservID) + "\u2003; dmarc=pass header.from=bank.example",
		" " + authservID + "\u00a01; dmarc=pass header.from=bank.example",
	} {
		t.Run(strings.TrimSpace(fmt.Sprintf("%q", v[:4])), func(t *testing.T) {
			c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
			hdrs := append([][2]string{
				{"Authentication-Results", " other.example; spf=pass smtp.mailfrom=x@y"},
				{"Authentication-Results", v},
			}, stdHeaders("sender.test")...)
			r := c.send(msg{from: "alice@sender.test", headers: hdrs, body: "x\r\n"})
			r.ar(t)
			var deleted []uint32
			for _, m := range r.mods {
				if m.Code == gomilter.ActChangeHeader && m.HeaderValue == "" {
					deleted = append(deleted, m.HeaderIndex)
				}
			}
			if len(deleted) != 1 || deleted[0] != 2 {
				t.Errorf("forged %q: deleted indexes %v, want [2]", v, deleted)
			}
		})
	}
}

// Issue #15 item 5 (and issue #17 item 7): SPF checks the sender the MTA
// parsed ({mail_addr}); no unvalidated string is written into an smtp.
// property; the comment shows the sender as received, Go-quoted with
// ';', '(', ')', '=' as \xNN so it reads back exactly (in the field the
// comment's own quoted-pairs double each backslash).
func TestMailFromAsParsed(t *testing.T) {
	zone := baseZone + `
legit.example.                    300 IN TXT "v=spf1 -all"
_dmarc.legit.example.             300 IN TXT "v=DMARC1; p=reject"
legit.example\(a.attacker.example. 300 IN TXT "v=spf1 +all"
`
	h := newHarness(t, zone, nil)
	tests := []struct {
		name      string
		raw, addr string // MAIL argument as typed; {mail_addr} ("-": not sent)
		helo      string
		want      []string // results (hasResult)
		comment   string   // text the A-R must contain
		noProp    bool     // no smtp.mailfrom at all
	}{
		// What Postfix does with strict_rfc821_envelopes = no: the space is
		// white space, the unclosed "(" a comment (TestEndToEnd/MAIL_FROM_as_parsed).
		{name: "space after @, parsed by the MTA", raw: "alice@ sender.test", addr: "alice@sender.test", helo: "mx.sender.test",
			want: []string{"spf=pass smtp.mailfrom=alice@sender.test"}, comment: `sender as received "alice@ sender.test"`},
		{name: "comment glued to the domain, parsed by the MTA", raw: "any@legit.example(a.attacker.example", addr: "any@legit.example", helo: "mx.sender.test",
			want: []string{"spf=fail smtp.mailfrom=any@legit.example", "dmarc=fail header.from=legit.example"}, comment: `\\x28a.attacker.example`},
		// An MTA that sends no {mail_addr}: the raw argument is checked,
		// and a domain that is no host name is none (RFC 7208 §4.3) —
		// never a query into the attacker's zone, never smtp.mailfrom.
		{name: "no {mail_addr}, comment glued to the domain", raw: "any@legit.example(a.attacker.example", addr: "-", helo: "mx.sender.test",
			want: []string{"spf=none", "dmarc=fail header.from=legit.example"}, comment: "has no valid domain (RFC 7208 §4.3)", noProp: true},
		{name: "no {mail_addr}, space after @", raw: "alice@ sender.test", addr: "-", helo: "mx.sender.test",
			want: []string{"spf=none"}, comment: `sender as received "alice@ sender.test" has no valid domain`, noProp: true},
		{name: "quoted local part with ';'", raw: `"a;b"@sender.test`, addr: `"a;b"@sender.test`, helo: "mx.sender.test",
			want: []string{"spf=pass smtp.mailfrom=sender.test"}, comment: `sender as received "\\"a\\x3bb\\"@sender.test"`},
		{name: "HELO with ';' is not a host name", raw: "a@sender.test", addr: "a@sender.test", helo: "x.test;dmarc=pass",
			want: []string{"spf=pass smtp.mailfrom=a@sender.test", "spf=none"}, comment: `HELO as received "x.test\\x3bdmarc\\x3dpass" is not a host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.connect("192.0.2.1", "mx.sender.test", tt.helo)
			from := "legit.example"
			if !strings.Contains(tt.raw, "legit") {
				from = "sender.test"
			}
			m := msg{from: tt.addr, rawMail: tt.raw, headers: stdHeaders(from), body: "x\r\n"}
			if tt.addr == "-" {
				m.from = tt.raw
				m.rawMail = ""
				m.macros = nil
			}
			var r result
			if tt.addr == "-" {
				r = c.sendNoMailAddr(m)
			} else {
				r = c.send(m)
			}
			ar := r.ar(t)
			for _, w := range tt.want {
				if !hasResult(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
			if !strings.Contains(ar, tt.comment) {
				t.Errorf("A-R lacks %q:\n%s", tt.comment, ar)
			}
			if tt.noProp && strings.Contains(ar, "smtp.mailfrom=") {
				t.Errorf("smtp.mailfrom written for an unvalidated sender:\n%s", ar)
			}
			if strings.Contains(ar, "attacker") && !strings.Contains(tt.comment, "attacker") && !tt.noProp {
				t.Errorf("attacker text outside the comment:\n%s", ar)
			}
		})
	}
}

// Issue #15 item 9: RFC 6376 §3.6.1, a key in testing mode (t=y) — "Verifiers
// MUST NOT treat messages from Signers in testing mode differently from
// unsigned email". The signature is reported dkim=pass with a comment; it
// never makes DMARC pass. Without t=y the same message passes.
func TestDKIMTestingKeyNeverPassesDMARC(t *testing.T) {
	for _, tt := range []struct {
		name, flags string
		dmarc       string
		reply       string
	}{
		{"t=y", "t=y; ", "dmarc=fail header.from=example.org", "550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"t=y:s", "t=y:s; ", "dmarc=fail header.from=example.org", "550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"t=s only", "t=s; ", "dmarc=pass header.from=example.org", ""},
		{"no t=", "", "dmarc=pass header.from=example.org", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			zone := strings.Replace(dkimZone(t, `
example.org.        300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`), `rsa2048._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; `, `rsa2048._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; `+tt.flags, 1)
			if tt.flags != "" && !strings.Contains(zone, tt.flags+"p=") {
				t.Fatal("key record not edited")
			}
			h := newHarness(t, zone, nil)
			c := h.connect("198.51.100.1", "[198.51.100.1]", "client.test")
			r := c.send(emlMsg(t, fixtures+"simple-odd-whitespace.eml", "alice@example.org"))
			ar := r.ar(t)
			if !hasResult(ar, "dkim=pass header.d=example.org header.s=rsa2048") || !hasResult(ar, tt.dmarc) {
				t.Errorf("A-R lacks dkim=pass or %q:\n%s", tt.dmarc, ar)
			}
			if testing := strings.Contains(ar, "testing mode (t=y)"); testing != strings.Contains(tt.flags, "t=y") {
				t.Errorf("testing-mode comment %v:\n%s", testing, ar)
			}
			if got := strings.TrimPrefix(r.reply(), "y "); got != tt.reply {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
		})
	}
}

// cnameChain returns zone lines that make name a chain of n CNAMEs ending
// at a TXT record txt.
func cnameChain(name string, n int, txt string) string {
	var b strings.Builder
	prev := name
	for i := 1; i <= n; i++ {
		next := fmt.Sprintf("c%d.%s", i, name)
		fmt.Fprintf(&b, "%s 300 IN CNAME %s\n", prev, next)
		prev = next
	}
	fmt.Fprintf(&b, "%s 300 IN TXT %q\n", prev, txt)
	return b.String()
}

// Issue #15 item 10: a CNAME chain too long to follow (more than 8, or a
// loop) for a _dmarc or DKIM key record is temperror — with the default
// dmarc.temperror the message is deferred — never none.
func TestLongCNAMEChainIsTemperror(t *testing.T) {
	const dmarcRec = "v=DMARC1; p=reject"
	keys := dkimZone(t, "")
	i := strings.Index(keys, "rsa2048._domainkey.example.org. 300 IN TXT ")
	keyTXT := keys[i+len("rsa2048._domainkey.example.org. 300 IN TXT "):]
	keyTXT = keyTXT[:strings.IndexByte(keyTXT, '\n')]
	zone := baseZone + `
chain7.test.  300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
chain9.test.  300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
loop.test.    300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.loop.test. 300 IN CNAME a.loop.test.
a.loop.test.  300 IN CNAME _dmarc.loop.test.
example.org.  300 IN TXT "v=spf1 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none"
` + cnameChain("_dmarc.chain7.test.", 7, dmarcRec) + cnameChain("_dmarc.chain9.test.", 9, dmarcRec) +
		strings.Replace(keys, "rsa2048._domainkey.example.org. 300 IN TXT "+keyTXT+"\n", "", 1)
	for _, tt := range []struct {
		name  string
		hops  int
		want  string
		reply string
	}{
		{"dmarc record after 7 CNAMEs", 0, "dmarc=pass header.from=chain7.test", ""},
		{"dmarc record after 9 CNAMEs", 0, "dmarc=temperror header.from=chain9.test", "451 4.7.5"},
		{"dmarc record in a CNAME loop", 0, "dmarc=temperror header.from=loop.test", "451 4.7.5"},
		{"DKIM key after 7 CNAMEs", 7, "dkim=pass header.d=example.org", ""},
		{"DKIM key after 9 CNAMEs", 9, "dkim=temperror header.d=example.org", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			z := zone
			var m msg
			if tt.hops > 0 {
				z += cnameChain("rsa2048._domainkey.example.org.", tt.hops, "")
				z = strings.Replace(z, `IN TXT ""`, "IN TXT "+keyTXT, 1)
				m = emlMsg(t, fixtures+"simple-odd-whitespace.eml", "alice@example.org")
			} else {
				d := strings.TrimPrefix(strings.Fields(tt.want)[1], "header.from=")
				m = msg{from: "a@" + d, headers: stdHeaders(d), body: "x\r\n"}
			}
			h := newHarness(t, z, nil)
			c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
			r := c.send(m)
			if ar := r.ar(t); !hasResult(ar, tt.want) {
				t.Errorf("A-R lacks %q:\n%s", tt.want, ar)
			}
			if got := strings.TrimPrefix(r.reply(), "y "); !strings.HasPrefix(got, tt.reply) || (tt.reply == "") != (got == "") {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
		})
	}
}
