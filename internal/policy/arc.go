package policy

import (
	"fmt"
	"strings"

	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
)

// TrustedSealer reports whether an ARC-Seal d= domain is in
// arc.trusted_sealers.
func (p *Policy) TrustedSealer(domain string) bool {
	return p.sealers[strings.ToLower(domain)]
}

// arcOverride decides whether a DMARC fail is overridden by a trusted
// intermediary's word (RFC 8617 §7.2, RFC 9989 §5.4 local policy): the
// chain passes, and the most recent set sealed by a trusted sealer records
// in its ARC-Authentication-Results a DMARC pass, or an aligned DKIM or SPF
// pass, for the author domain, and the message is still the one that
// sealer signed (its ARC-Message-Signature verifies). That covers a list
// that broke the author's DKIM signature (footer, subject tag) after
// checking it, and a forwarder that broke SPF. It returns the sealer and the RFC 8617 §7.2.2 summary of
// the chain, or "" when there is no override.
//
// What others do: OpenDMARC has no ARC override (OpenARC in front only
// adds headers); rspamd's and authentication_milter's trusted-ARC options
// take the trusted sealer's recorded DMARC/DKIM/SPF results the same way.
func (p *Policy) arcOverride(r *engine.Result) (sealer, why string) {
	a := r.ARC
	if len(p.sealers) == 0 || a.Status != arc.StatusPass {
		return "", ""
	}
	author := r.DMARC.AuthorDomain
	for i := len(a.Sets) - 1; i >= 0; i-- {
		s := a.Sets[i]
		if !p.sealers[s.SealDomain] {
			continue
		}
		// Only the most recent trusted set speaks, and only about the
		// message it signed: its ARC-Message-Signature must still
		// verify. Otherwise a later, untrusted hop changed the message,
		// or copied the trusted set from another message (a seal covers
		// only the ARC sets, so a set can be replayed under a forged
		// message; the chain then still passes, with oldest-pass above
		// it).
		if !s.MessagePass || !vouches(s.Results, author, r.DMARC) {
			return "", ""
		}
		return s.SealDomain, ChainSummary(a)
	}
	return "", ""
}

// vouches reports whether recorded results show DMARC passing for the
// author domain: dmarc=pass header.from=<author>, or dkim=pass with a
// header.d, or spf=pass with an smtp.mailfrom domain, aligned with it.
//
// Alignment here uses the author domain's Organizational Domain from our
// own discovery (no more DNS at decision time): relaxed mode accepts the
// author domain, its Organizational Domain and names below that; strict
// mode (adkim=s, aspf=s) only the author domain itself. An identifier with
// an Organizational Domain of its own below the author's (a psd=n record
// in between) would be accepted under relaxed mode; we do not ask DNS to
// rule that out.
func vouches(rs []authres.Result, author string, d dmarc.Result) bool {
	if author == "" {
		return false
	}
	org, adkim, aspf := "", byte('s'), byte('s')
	if d.Discovery != nil {
		org = d.OrgDomainForAlignment()
		if d.Discovery.Record != nil {
			adkim, aspf = d.Discovery.Record.ADKIM, d.Discovery.Record.ASPF
		}
	}
	aligned := func(id string, mode byte) bool {
		id, err := identity.ASCII(id)
		switch {
		case err != nil || id == "":
			return false
		case id == author:
			return true
		case mode == 's' || org == "":
			return false
		}
		return id == org || strings.HasSuffix(id, "."+org)
	}
	for _, res := range rs {
		if res.Value != "pass" {
			continue
		}
		switch res.Method {
		case "dmarc":
			if aligned(res.Prop("header.from"), 's') {
				return true
			}
		case "dkim":
			if aligned(res.Prop("header.d"), adkim) {
				return true
			}
		case "spf":
			if aligned(identity.DomainOf(res.Prop("smtp.mailfrom")), aspf) {
				return true
			}
		}
	}
	return false
}

// ChainSummary describes a passing chain as RFC 8617 §7.2.2 suggests for
// a local policy decision: "arc=pass as[N].d=… as[N].s=… … remote-ip[1]=…",
// the seals from the most recent down.
func ChainSummary(a arc.Result) string {
	var b strings.Builder
	b.WriteString("arc=" + string(a.Status))
	for i := len(a.Sets) - 1; i >= 0; i-- {
		s := a.Sets[i]
		fmt.Fprintf(&b, " as[%d].d=%s as[%d].s=%s", s.Instance, s.SealDomain, s.Instance, s.SealSelector)
	}
	if a.RemoteIP != "" {
		b.WriteString(" remote-ip[1]=" + a.RemoteIP)
	}
	return b.String()
}
