// Package resultheader writes the header fields that carry the engine's
// results — Authentication-Results (RFC 8601, through pkg/authres) and
// Received-SPF (RFC 7208 §9.1) — from engine.Result's plain values. It is
// the one place that turns a result into header text: the engine returns
// values only, and the service, `authmilter verify` (through the service)
// and failure reports (which carry the A-R value the service wrote) all
// take their fields from here.
package resultheader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// AuthResults returns the resinfo list for the Authentication-Results
// header, in the order spf (mailfrom), spf (helo), dkim…, arc, dmarc;
// authres.Format writes the field from it.
func AuthResults(r *engine.Result) []authres.Result {
	var out []authres.Result
	if r.SPF.Status != "" {
		// RFC 7208 §2.4: the null sender is checked as postmaster@HELO;
		// SPF.Identity is what was checked either way.
		id := r.SPF.Identity
		ar := authres.Result{Method: "spf", Value: string(r.SPF.Status), Reason: SPFComment(r.SPF, id, r.Envelope.ClientIP)}
		raw := r.Envelope.MailFrom
		if r.Envelope.MailFromRaw != "" {
			raw = r.Envelope.MailFromRaw
		}
		if v, ok := smtpValue(r.SPF, id); ok {
			ar.Props = []authres.Prop{{Key: "smtp.mailfrom", Value: v}}
			if raw != "" && raw != v {
				ar.Reason = joinReason(ar.Reason, "sender as received "+AsReceived(raw))
			}
		} else {
			ar.Reason = joinReason(ar.Reason, "sender as received "+AsReceived(raw)+" has no valid domain (RFC 7208 §4.3)")
		}
		out = append(out, ar)
	}
	if r.HELO.Status != "" {
		ar := authres.Result{Method: "spf", Value: string(r.HELO.Status), Reason: SPFComment(r.HELO, r.Envelope.HELO, r.Envelope.ClientIP)}
		if v, ok := smtpValue(r.HELO, r.Envelope.HELO); ok || isAddressLiteral(r.Envelope.HELO) {
			if !ok {
				v = r.Envelope.HELO
			}
			ar.Props = []authres.Prop{{Key: "smtp.helo", Value: v}}
		} else {
			ar.Reason = joinReason(ar.Reason, "HELO as received "+AsReceived(r.Envelope.HELO)+" is not a host name (RFC 7208 §4.3)")
		}
		out = append(out, ar)
	}
	out = append(out, dkimAuthResults(r.DKIM)...)
	if r.ARC.Status != "" {
		out = append(out, ARCAuthResult(r.ARC))
	}
	if r.DMARC.Status != "" {
		out = append(out, dmarcAuthResult(r))
	}
	return out
}

// ARCOverride adds a trusted ARC sealer's override (internal/policy's
// Decision.Sealer and Why) to the dmarc result of rs: dmarc=fail stays (it
// is what we found), its comment says which chain made us deliver anyway.
// With no sealer rs is returned as it is.
func ARCOverride(rs []authres.Result, sealer, why string) []authres.Result {
	if sealer == "" {
		return rs
	}
	for i := range rs {
		if rs[i].Method == "dmarc" {
			note := "delivered by local policy, trusted ARC sealer " + sealer + ": " + why
			if rs[i].Reason != "" {
				note = rs[i].Reason + "; " + note
			}
			rs[i].Reason = note
		}
	}
	return rs
}

// smtpValue is what an smtp.mailfrom or smtp.helo property may carry
// (issue #15 item 5: never an unvalidated string): the identity SPF
// checked when its domain passed RFC 7208 §4.3 (a host name, fully
// qualified), written whole when every reader reads it back exactly
// (authres.AddressLike), else its domain alone (RFC 8601 §2.3 allows a
// pvalue without the local-part). ok is false when there is no valid
// domain.
func smtpValue(o spfcheck.Result, id string) (string, bool) {
	if o.Domain == "" || errors.Is(o.Err, spfcheck.ErrInvalidDomain) || errors.Is(o.Err, spfcheck.ErrIPLiteral) {
		return "", false
	}
	d, err := identity.ASCII(o.Domain)
	if err != nil || !strings.Contains(d, ".") {
		return "", false
	}
	if o.Scope == spfcheck.ScopeHELO {
		id = strings.TrimPrefix(id, "postmaster@")
	}
	if authres.AddressLike(id) {
		if _, dom, ok := strings.Cut(id, "@"); !ok || strings.EqualFold(strings.TrimSuffix(dom, "."), o.Domain) || identity.Fold(dom) == o.Domain {
			return id, true
		}
	}
	return d, true
}

// AsReceived writes a string from the SMTP dialogue (MAIL FROM, HELO) for
// an A-R comment so that it can be read back exactly: as a Go-syntax
// double-quoted string (strconv.QuoteToASCII), with the characters that
// other readers take for structure — ';', '(', ')', '=' — escaped as \xNN.
// A reader unescapes the comment's quoted-pairs (RFC 5322 §3.2.1), then
// strconv.Unquote gives the bytes as received. Long strings are cut.
func AsReceived(s string) string {
	const max = 200
	cut := ""
	if len(s) > max {
		s, cut = s[:max], "…"
	}
	q := strconv.QuoteToASCII(s)
	q = strings.NewReplacer(";", `\x3b`, "(", `\x28`, ")", `\x29`, "=", `\x3d`).Replace(q)
	return q + cut
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// isAddressLiteral: a HELO such as "[192.0.2.1]" (RFC 5321 §4.1.3), which
// is a valid HELO but not a domain.
func isAddressLiteral(h string) bool {
	if len(h) < 3 || h[0] != '[' || h[len(h)-1] != ']' {
		return false
	}
	_, err := netip.ParseAddr(strings.TrimPrefix(h[1:len(h)-1], "IPv6:"))
	return err == nil
}

// SPFComment is the comment of an spf= result, in the words postmasters
// know from policyd-spf and RFC 7208 §9.1's examples, naming the client
// address the result is about.
func SPFComment(o spfcheck.Result, identity string, addr netip.Addr) string {
	ip := clientIP(addr)
	who := "domain of " + identity
	switch o.Status {
	case spfcheck.StatusPass:
		return fmt.Sprintf("%s designates %s as permitted sender", who, ip)
	case spfcheck.StatusFail:
		return fmt.Sprintf("%s does not designate %s as permitted sender", who, ip)
	case spfcheck.StatusSoftFail:
		return fmt.Sprintf("%s discourages use of %s as permitted sender", who, ip)
	case spfcheck.StatusNeutral:
		return fmt.Sprintf("%s is neither permitted nor denied by %s", ip, who)
	}
	return o.Reason
}

// dkimAuthResults writes one dkim= result per signature (RFC 8601 §2.7.1),
// or dkim=none for an unsigned message.
func dkimAuthResults(rs []dkimverify.Result) []authres.Result {
	if rs == nil {
		return nil
	}
	if len(rs) == 0 {
		return []authres.Result{{Method: "dkim", Value: "none"}}
	}
	out := make([]authres.Result, 0, len(rs))
	for _, d := range rs {
		ar := authres.Result{Method: "dkim", Value: string(d.Status)}
		switch {
		case d.Status != dkimverify.StatusPass:
			ar.Reason = d.Reason
		case d.KeyBits > 0:
			ar.Reason = fmt.Sprintf("%d-bit key", d.KeyBits)
		}
		if d.Testing && d.Status == dkimverify.StatusPass {
			ar.Reason = joinReason(ar.Reason, "key in testing mode (t=y): not used for DMARC, RFC 6376 §3.6.1")
		}
		add := func(k, v string) {
			if v != "" {
				ar.Props = append(ar.Props, authres.Prop{Key: k, Value: v})
			}
		}
		add("header.d", d.Domain)
		add("header.i", d.Identifier)
		add("header.s", d.Selector)
		add("header.a", d.Algorithm)
		add("header.b", d.BPrefix)
		out = append(out, ar)
	}
	return out
}

// ARCAuthResult writes arc=none|pass|fail (RFC 8617 §10.1) with the
// properties of RFC 8617 §10.2: header.oldest-pass and smtp.remote-ip of
// the first hop. A passing chain's comment names the most recent sealer
// (as[N].d=, as[N].s=), a failing one's says why.
func ARCAuthResult(a arc.Result) authres.Result {
	ar := authres.Result{Method: "arc", Value: string(a.Status)}
	switch a.Status {
	case arc.StatusPass:
		l := a.Latest()
		ar.Reason = fmt.Sprintf("as[%d].d=%s as[%d].s=%s", l.Instance, l.SealDomain, l.Instance, l.SealSelector)
		if a.OldestPass > 0 {
			// 0 (every hop's signature still passes) is left out:
			// go-msgauth's authres.Parse refuses the whole field for a
			// header.oldest-pass below 1 (issue #15 item 8).
			ar.Props = append(ar.Props, authres.Prop{Key: "header.oldest-pass", Value: fmt.Sprint(a.OldestPass)})
		}
		if a.RemoteIP != "" {
			ar.Props = append(ar.Props, authres.Prop{Key: "smtp.remote-ip", Value: a.RemoteIP})
		}
	case arc.StatusFail:
		ar.Reason = a.Reason
	}
	return ar
}

// dmarcAuthResult writes dmarc=… header.from=… policy.dmarc=… with a
// comment naming the published and the applied policy.
func dmarcAuthResult(r *engine.Result) authres.Result {
	d := r.DMARC
	ar := authres.Result{Method: "dmarc", Value: string(d.Status)}
	var why []string
	if d.Published != "" {
		p := "p=" + strings.ToUpper(string(d.Published))
		if d.Status == dmarc.StatusFail && d.Applied != "" && d.Applied != d.Published {
			p += " applied=" + strings.ToUpper(string(d.Applied))
		}
		why = append(why, p)
	}
	if d.SampledOut {
		why = append(why, "sampled out")
	}
	switch {
	case d.TestModeFromPct:
		why = append(why, "pct=0 as t=y")
	case d.TestMode:
		why = append(why, "t=y")
	}
	if d.Reason != "" {
		why = append(why, d.Reason)
	}
	if len(r.DMARCAll) > 1 {
		why = append(why, fmt.Sprintf("%d author domains", len(r.DMARCAll)))
	}
	ar.Reason = strings.Join(why, "; ")
	from := d.AuthorDomain
	if from == "" && len(r.AuthorDomains) > 0 {
		from = r.AuthorDomains[0]
	}
	if from != "" {
		ar.Props = append(ar.Props, authres.Prop{Key: "header.from", Value: from})
	}
	if d.Published != "" {
		ar.Props = append(ar.Props, authres.Prop{Key: "policy.dmarc", Value: string(d.Published)})
	}
	return ar
}

// clientIP writes the client address as the comments always have: as
// net.IP prints it (an IPv4-mapped IPv6 address as dotted quad), "<nil>"
// when unknown.
func clientIP(a netip.Addr) string {
	if !a.IsValid() {
		return net.IP(nil).String()
	}
	return net.IP(a.AsSlice()).String()
}

// ReceivedSPF writes the value of a Received-SPF field (RFC 7208 §9.1) for
// the SPF result o of the MAIL FROM identity. env.MailFrom is the MAIL
// argument as received (not Postfix's {mail_addr}).
func ReceivedSPF(receiver string, env engine.Envelope, o spfcheck.Result) string {
	var b strings.Builder
	b.WriteString(string(o.Status))
	if c := SPFComment(o, o.Identity, env.ClientIP); c != "" {
		b.WriteString(" " + authres.Comment(receiver+": "+c))
	}
	kv := func(k, v string) {
		fmt.Fprintf(&b, "\r\n\t%s=%s;", k, authres.PValue(v))
	}
	if env.ClientIP.IsValid() {
		kv("client-ip", env.ClientIP.String())
	}
	kv("envelope-from", env.MailFrom)
	kv("helo", env.HELO)
	kv("receiver", receiver)
	id := "mailfrom"
	if env.MailFrom == "" {
		id = "helo"
	}
	kv("identity", id)
	return strings.TrimSuffix(b.String(), ";")
}
