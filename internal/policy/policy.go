// Package policy is the one place that decides what happens to a message:
// which clients are not checked at all, and which reply the MTA gets for a
// result (accept, hold, reject, tempfail), with the local overrides and their
// RFC 9990 reasons.
package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// Action is what the MTA is asked to do with the message.
type Action int

// The actions, from mildest to strictest.
const (
	Accept Action = iota
	Quarantine
	TempFail
	Reject
)

func (a Action) String() string {
	return [...]string{"accept", "quarantine", "tempfail", "reject"}[a]
}

// Override reasons (RFC 9990 §3.1 PolicyOverrideType, and RFC 7489's
// sampled_out for pct).
const (
	ReasonLocalPolicy      = "local_policy"
	ReasonTrustedForwarder = "trusted_forwarder"
	ReasonTestMode         = "policy_test_mode"
	ReasonSampledOut       = "sampled_out"
)

// Decision is the verdict for one message.
type Decision struct {
	Action Action
	// Reply is the full SMTP reply for Reject and TempFail ("550 5.7.1 …"),
	// already escaped for the milter protocol.
	Reply string
	// Disposition is the RFC 9990 evaluated disposition: none, pass,
	// quarantine or reject. It is what the domain owner's policy asked for
	// after local overrides, whatever the MTA was told.
	Disposition string
	// Override is the RFC 9990 reason when local policy changed the outcome.
	Override string
	// Why says in a few words why, for the log.
	Why string
	// Sealer is the trusted ARC sealer (ARC-Seal d=) whose assessment
	// overrode a DMARC fail; "" otherwise. Why then holds the RFC 8617
	// §7.2.2 summary of the chain, which resultheader.ARCOverride adds to
	// the A-R's dmarc result.
	Sealer string
}

// Policy holds the parsed local policy.
type Policy struct {
	o           options
	ignoreHosts config.HostList
	forwarders  config.HostList
	ignoreFrom  map[string]bool
	// ignoreMailFrom are envelope-sender domains not checked; a leading
	// "." covers the subdomains too.
	ignoreMailFrom []string
	sealers        map[string]bool // arc.trusted_sealers
}

// options are the configuration's choices as Decide and Skip use them,
// read once in New: no configuration string is compared per message.
type options struct {
	skipAuthenticated   bool   // policy.skip_authenticated
	rejectSPFFail       bool   // spf.fail_action = "reject"
	rejectSPFPermerror  bool   // spf.permerror_action = "reject"
	rejectUnusableFrom  bool   // dmarc.unusable_from = "reject"
	rejectMultiFrom     bool   // dmarc.multi_from = "reject"
	tempfailOnTemperror bool   // dmarc.temperror = "tempfail"
	holdQuarantine      bool   // dmarc.quarantine = "hold"
	monitor             bool   // dmarc.monitor
	rejectText          string // dmarc.reject_text
}

func optionsFrom(cfg *config.Config) options {
	return options{
		skipAuthenticated:   cfg.Policy.SkipAuthenticated,
		rejectSPFFail:       cfg.SPF.FailAction == "reject",
		rejectSPFPermerror:  cfg.SPF.PermerrorAction == "reject",
		rejectUnusableFrom:  cfg.DMARC.UnusableFrom == "reject",
		rejectMultiFrom:     cfg.DMARC.MultiFrom == engine.RejectMulti,
		tempfailOnTemperror: cfg.DMARC.TempError == "tempfail",
		holdQuarantine:      cfg.DMARC.Quarantine == "hold",
		monitor:             cfg.DMARC.Monitor,
		rejectText:          cfg.DMARC.RejectText,
	}
}

// New builds the policy from a validated configuration.
func New(cfg *config.Config) (*Policy, error) {
	p := &Policy{o: optionsFrom(cfg), ignoreFrom: map[string]bool{}, sealers: map[string]bool{}}
	for _, d := range cfg.ARC.TrustedSealers {
		if a, err := identity.ASCII(d); err == nil {
			p.sealers[a] = true // compared with the ARC-Seal d=, lowercased
		}
	}
	var err error
	if p.ignoreHosts, err = config.ParseHostList(cfg.Policy.IgnoreHosts); err != nil {
		return nil, fmt.Errorf("policy.ignore_hosts: %w", err)
	}
	if p.forwarders, err = config.ParseHostList(cfg.DMARC.TrustedForwarders); err != nil {
		return nil, fmt.Errorf("dmarc.trusted_forwarders: %w", err)
	}
	for _, d := range cfg.DMARC.IgnoreFromDomains {
		// The author domain is compared in its ASCII form (A-labels),
		// so "bücher.example" must become "xn--bcher-kva.example".
		a, err := identity.ASCII(d)
		if err != nil {
			return nil, fmt.Errorf("dmarc.ignore_from_domains: %w", err)
		}
		p.ignoreFrom[a] = true
	}
	for _, d := range cfg.Policy.IgnoreMailFrom {
		sub := strings.HasPrefix(d, ".")
		n, err := identity.ASCII(strings.TrimPrefix(d, "."))
		if err != nil {
			return nil, fmt.Errorf("policy.ignore_mail_from: %w", err)
		}
		if sub {
			n = "." + n
		}
		p.ignoreMailFrom = append(p.ignoreMailFrom, n)
	}
	return p, nil
}

// SkipMailFrom reports whether the envelope sender's domain is one of
// policy.ignore_mail_from: such mail gets no checks and no header change,
// as OpenDMARC's IgnoreMailFrom. The null sender is never skipped.
func (p *Policy) SkipMailFrom(mailFrom string) (bool, string) {
	if len(p.ignoreMailFrom) == 0 {
		return false, ""
	}
	_, dom, ok := identity.SplitAddress(mailFrom)
	if !ok {
		return false, ""
	}
	d, err := identity.ASCII(dom)
	if err != nil {
		return false, ""
	}
	for _, m := range p.ignoreMailFrom {
		if d == m || (strings.HasPrefix(m, ".") && (d == m[1:] || strings.HasSuffix(d, m))) {
			return true, "ignored sender domain"
		}
	}
	return false, ""
}

// Skip reports whether a client gets no checks and no header change:
// ignored hosts, and authenticated senders when so configured.
func (p *Policy) Skip(ip netip.Addr, host, authUser string) (bool, string) {
	if p.ignoreHosts.Match(ip, host) {
		return true, "ignored host"
	}
	if authUser != "" && p.o.skipAuthenticated {
		return true, "authenticated client"
	}
	return false, ""
}

// Decide turns the result into the action. clientIP and clientHost are used
// for trusted forwarders.
func (p *Policy) Decide(r *engine.Result, clientIP netip.Addr, clientHost string) Decision {
	d := p.decideDMARC(r, clientIP, clientHost)
	if d.Override == ReasonTestMode && r.DMARC.TestModeFromPct {
		// The record's policy_test_mode override says why (RFC 9989
		// Appendix A.6: pct=0 without t is read as t=y).
		d.Why += "; pct=0 without t read as t=y"
	}
	// policyd-spf's early reject, for the sites that want it (off by
	// default). RFC 7372 §3.2 gives the enhanced codes.
	if d.Action < Reject && !p.forwarders.Match(clientIP, clientHost) {
		switch {
		case r.SPF.Status == spfcheck.StatusFail && p.o.rejectSPFFail:
			d.Action, d.Why = Reject, "spf fail"
			d.Reply = Reply(550, "5.7.23", "SPF validation failed for "+r.SPF.Domain)
		case r.SPF.Status == spfcheck.StatusPermError && p.o.rejectSPFPermerror:
			d.Action, d.Why = Reject, "spf permerror"
			d.Reply = Reply(550, "5.7.24", "SPF validation error for "+r.SPF.Domain)
		}
	}
	return d
}

func (p *Policy) decideDMARC(r *engine.Result, clientIP netip.Addr, clientHost string) Decision {
	res := r.DMARC
	if r.FromUnusable && p.o.rejectUnusableFrom && !p.o.monitor {
		// The From might show any domain, the victim's included: the
		// strictest policy is the only safe one (RFC 9989 §11.5).
		return Decision{Action: Reject, Disposition: "reject", Why: "unusable From",
			Reply: Reply(550, "5.7.1", "Message rejected: From header field not usable for DMARC: "+r.FromProblem)}
	}
	if r.FromProblem != "" && p.o.rejectMultiFrom && !p.o.monitor {
		return Decision{Action: Reject, Disposition: "reject", Why: r.FromProblem,
			Reply: Reply(550, "5.7.1", "Message rejected: "+r.FromProblem)}
	}
	switch res.Status {
	case dmarc.StatusPass:
		return Decision{Disposition: "pass", Why: "dmarc pass"}
	case dmarc.StatusTempError:
		// RFC 9989 §4.8: no policy is applied on a DNS failure; a 4xx
		// deferral is the suggested reply (§7.2) and our default, as in
		// OpenDKIM and OpenDMARC: accepting would deliver a spoof whose
		// victim's DNS is unreachable.
		if p.o.tempfailOnTemperror && !p.o.monitor {
			return Decision{Action: TempFail, Disposition: "none", Why: "dmarc temperror",
				Reply: Reply(451, "4.7.5", "Temporary DNS failure evaluating DMARC policy for "+res.AuthorDomain)}
		}
		return Decision{Disposition: "none", Why: "dmarc temperror"}
	case dmarc.StatusFail:
	default:
		return Decision{Disposition: "none", Why: "dmarc " + string(res.Status)}
	}

	// A failing message: what the domain owner asked for, after t=y and pct.
	d := Decision{Disposition: string(res.Applied)}
	if d.Disposition == "" {
		d.Disposition = "none"
	}
	switch {
	case res.SampledOut:
		d.Override = ReasonSampledOut
	case res.TestMode:
		d.Override = ReasonTestMode
	}
	if res.Applied == dmarc.PolicyNone || res.Applied == "" {
		d.Why = "dmarc fail, policy none"
		return d
	}
	switch {
	case p.ignoreFrom[res.AuthorDomain]:
		d.Disposition, d.Override, d.Why = "none", ReasonLocalPolicy, "dmarc fail, From domain ignored"
		return d
	case p.forwarders.Match(clientIP, clientHost):
		d.Disposition, d.Override, d.Why = "none", ReasonTrustedForwarder, "dmarc fail, trusted forwarder"
		return d
	}
	if sealer, why := p.arcOverride(r); sealer != "" {
		d.Disposition, d.Override, d.Why, d.Sealer = "none", ReasonLocalPolicy, why, sealer
		return d
	}
	if p.o.monitor {
		d.Disposition, d.Override, d.Why = "none", ReasonLocalPolicy, "dmarc fail, monitor mode"
		return d
	}
	if res.Applied == dmarc.PolicyReject {
		d.Action, d.Why = Reject, "dmarc fail, policy reject"
		text := strings.ReplaceAll(p.o.rejectText, "{domain}", res.AuthorDomain)
		d.Reply = Reply(550, "5.7.1", text)
		return d
	}
	d.Why = "dmarc fail, policy quarantine"
	if p.o.holdQuarantine {
		d.Action = Quarantine
	}
	return d
}

// Reply builds an SMTP reply the way Postfix accepts it from a milter: the
// code and the enhanced status code of the same class, one line, no control
// characters, and '%' doubled because Postfix reads it as an escape.
func Reply(code int, enhanced, text string) string {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	text = strings.ReplaceAll(text, "%", "%%")
	return fmt.Sprintf("%d %s %s", code, enhanced, text)
}
