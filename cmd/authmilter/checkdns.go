package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/dnserr"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// Statuses of one check line.
const (
	checkPass = "pass"
	checkWarn = "warn"
	checkFail = "fail"
)

// dnsCheck is one line of `authmilter check-dns`.
type dnsCheck struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// dnsReport is the whole output (the --json form).
type dnsReport struct {
	Domain string     `json:"domain"`
	Result string     `json:"result"` // the worst status
	Checks []dnsCheck `json:"checks"`
}

func (r *dnsReport) add(check, status, format string, a ...any) {
	r.Checks = append(r.Checks, dnsCheck{Check: check, Status: status, Detail: fmt.Sprintf(format, a...)})
}

// checkResolver is the DNS check-dns needs: what SPF evaluation and DMARC
// discovery use. *resolver.Resolver has it.
type checkResolver interface {
	spfcheck.Resolver
	DomainExists(ctx context.Context, name string) (bool, error)
}

// cmdCheckDNS is `authmilter check-dns`: it checks a domain's published
// SPF, DKIM and DMARC records the way a receiver reads them, one line per
// check with pass, warn or fail. Exit status 1 when a check fails.
func cmdCheckDNS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	selector := fs.String("selector", "", "DKIM selector whose key record to check")
	ipArg := fs.String("ip", "", "check that SPF permits this sending address")
	keyFile := fs.String("key", "", "private key file that must match the DKIM key record (needs --selector)")
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := fs.String("config", "", "configuration file, for its [dns] and [dmarc] mode (default: /etc/resolv.conf, RFC 9989)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: authmilter check-dns DOMAIN [--selector S] [--key FILE] [--ip ADDR] [--json] [-config FILE]")
		fs.PrintDefaults()
	}
	// The domain may come before or after the options.
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var domain string
	if fs.NArg() > 0 {
		domain = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if domain == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	d, err := identity.ASCII(domain)
	if err != nil {
		fmt.Fprintf(stderr, "authmilter check-dns: %v\n", err)
		return 2
	}
	var ip net.IP
	if *ipArg != "" {
		if ip = net.ParseIP(*ipArg); ip == nil {
			fmt.Fprintf(stderr, "authmilter check-dns: --ip %q is not an IP address\n", *ipArg)
			return 2
		}
	}
	if *keyFile != "" && *selector == "" {
		fmt.Fprintln(stderr, "authmilter check-dns: --key needs --selector")
		return 2
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	r, err := newResolver(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "authmilter check-dns: %v\n", err)
		return 1
	}
	mode := dmarc.Mode(cfg.DMARC.Mode)
	if mode == "" {
		mode = dmarc.ModeRFC9989
	}
	// A budget for the whole run: every lookup has its own timeout, this
	// only bounds a pathological record tree.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rep := checkDomain(ctx, r, d, checkOptions{selector: *selector, keyFile: *keyFile, ip: ip, mode: mode})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		for _, c := range rep.Checks {
			fmt.Fprintf(stdout, "%-4s  %-14s %s\n", c.Status, c.Check, c.Detail)
		}
		fmt.Fprintf(stdout, "%s: %s\n", d, rep.Result)
	}
	if rep.Result == checkFail {
		return 1
	}
	return 0
}

type checkOptions struct {
	selector, keyFile string
	ip                net.IP
	mode              dmarc.Mode
}

// checkDomain runs every check on d (normalized).
func checkDomain(ctx context.Context, r checkResolver, d string, o checkOptions) *dnsReport {
	rep := &dnsReport{Domain: d}
	checkSPF(ctx, r, d, o.ip, rep)
	checkDKIM(ctx, r, d, o.selector, o.keyFile, rep)
	checkDMARC(ctx, r, d, o.mode, rep)
	checkADSP(ctx, r, d, rep)
	rep.Result = checkPass
	for _, c := range rep.Checks {
		if c.Status == checkFail || (c.Status == checkWarn && rep.Result == checkPass) {
			rep.Result = c.Status
		}
	}
	return rep
}

// lookupTXT asks for name's TXT records (absolute name).
func lookupTXT(ctx context.Context, r checkResolver, name string) ([]string, error) {
	return r.LookupTXT(ctx, name+".")
}

// spfRecords picks the SPF records among TXT records (RFC 7208 §4.5).
func spfRecords(txts []string) []string {
	var out []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			out = append(out, t)
		}
	}
	return out
}

func checkSPF(ctx context.Context, r checkResolver, d string, ip net.IP, rep *dnsReport) {
	txts, err := lookupTXT(ctx, r, d)
	recs := spfRecords(txts)
	switch {
	case err != nil && !dnserr.IsNotFound(err):
		rep.add("spf.record", checkFail, "DNS error looking up %s: %v", d, err)
		return
	case len(recs) == 0:
		rep.add("spf.record", checkWarn, "no SPF record at %s: receivers get SPF none", d)
		return
	case len(recs) > 1:
		rep.add("spf.record", checkFail, "%d SPF records at %s: permerror (RFC 7208 §4.5)", len(recs), d)
		return
	}
	if err := spfcheck.CheckRecordSyntax(recs[0]); err != nil {
		rep.add("spf.record", checkFail, "%v: permerror (RFC 7208 §4.6)", err)
		return
	}
	rep.add("spf.record", checkPass, "%s", recs[0])

	w := &spfWalk{r: r, seen: map[string]bool{d: true}}
	w.record(ctx, d, recs[0], 0)
	for _, p := range w.problems {
		rep.add("spf.include", checkFail, "%s", p)
	}
	status := checkPass
	if w.lookups > 10 || w.voids > 2 {
		status = checkFail
	}
	detail := fmt.Sprintf("%d DNS-querying terms (at most 10), %d void lookups (at most 2; RFC 7208 §4.6.4)", w.lookups, w.voids)
	if w.macros > 0 {
		if status == checkPass {
			status = checkWarn
		}
		detail += fmt.Sprintf("; not followed: %d with macros (they depend on the message)", w.macros)
	}
	rep.add("spf.lookups", status, "%s", detail)
	if w.ptr {
		rep.add("spf.ptr", checkWarn, "the ptr mechanism should not be used (RFC 7208 §5.5): slow and unreliable")
	}
	if ip != nil {
		out := spfcheck.CheckMailFrom(ctx, r, ip, "", "postmaster@"+d, nil)
		if out.Status == spfcheck.StatusPass {
			rep.add("spf.ip", checkPass, "%s is permitted (%s)", ip, out.Reason)
		} else {
			why := out.Reason
			if why == "" && out.Err != nil {
				why = out.Err.Error()
			}
			rep.add("spf.ip", checkFail, "%s gets %s, not pass (%s)", ip, out.Status, why)
		}
	}
}

// spfWalk counts, without a client address, the DNS-querying terms and the
// void lookups of an SPF record and everything it includes or redirects to
// (RFC 7208 §4.6.4). Terms with macros depend on the message and are
// counted but not followed.
type spfWalk struct {
	r        checkResolver
	lookups  int
	voids    int
	macros   int
	ptr      bool
	problems []string
	seen     map[string]bool
}

func (w *spfWalk) record(ctx context.Context, domain, rec string, depth int) {
	if depth > 10 || w.lookups > 20 {
		return // far over the limit already; stop asking DNS
	}
	var redirect string
	hasAll := false
	for _, term := range strings.Fields(rec)[1:] {
		if name, val, ok := strings.Cut(term, "="); ok && !strings.ContainsAny(name, ":/") {
			if strings.EqualFold(name, "redirect") {
				redirect = val
			}
			continue // exp= and unknown modifiers make no lookups here
		}
		t := strings.TrimLeft(term, "+-~?")
		mech, arg := t, ""
		if i := strings.IndexAny(t, ":/"); i >= 0 {
			mech, arg = t[:i], t[i:]
		}
		target := domain
		if rest, ok := strings.CutPrefix(arg, ":"); ok {
			target, _, _ = strings.Cut(rest, "/")
		}
		switch strings.ToLower(mech) {
		case "all":
			hasAll = true
		case "include":
			w.lookups++
			w.follow(ctx, "include:"+target, target, depth)
		case "a", "exists":
			w.lookups++
			w.addresses(ctx, target)
		case "mx":
			w.lookups++
			w.mx(ctx, target)
		case "ptr":
			w.lookups++
			w.ptr = true
		}
	}
	// §6.1: redirect is ignored when the record has an "all" mechanism.
	if redirect != "" && !hasAll {
		w.lookups++
		w.follow(ctx, "redirect="+redirect, redirect, depth)
	}
}

func (w *spfWalk) follow(ctx context.Context, term, target string, depth int) {
	if strings.Contains(target, "%") {
		w.macros++
		return
	}
	t := strings.ToLower(strings.TrimSuffix(target, "."))
	if w.seen[t] {
		w.problems = append(w.problems, fmt.Sprintf("%s: loop, %s is already being evaluated (permerror)", term, t))
		return
	}
	w.seen[t] = true
	defer delete(w.seen, t)
	txts, err := lookupTXT(ctx, w.r, t)
	if err != nil && !dnserr.IsNotFound(err) {
		w.problems = append(w.problems, fmt.Sprintf("%s: DNS error: %v (temperror)", term, err))
		return
	}
	recs := spfRecords(txts)
	if len(txts) == 0 {
		w.voids++
	}
	switch {
	case len(recs) == 0:
		// §5.2 (include) and §6.1 (redirect): no record is permerror.
		w.problems = append(w.problems, fmt.Sprintf("%s: no SPF record there (permerror, RFC 7208 §5.2, §6.1)", term))
		return
	case len(recs) > 1:
		w.problems = append(w.problems, fmt.Sprintf("%s: %d SPF records there (permerror)", term, len(recs)))
		return
	}
	if err := spfcheck.CheckRecordSyntax(recs[0]); err != nil {
		w.problems = append(w.problems, fmt.Sprintf("%s: %v (permerror)", term, err))
		return
	}
	w.record(ctx, t, recs[0], depth+1)
}

func (w *spfWalk) addresses(ctx context.Context, target string) {
	if strings.Contains(target, "%") {
		w.macros++
		return
	}
	if _, err := w.r.LookupIPAddr(ctx, strings.TrimSuffix(target, ".")+"."); dnserr.IsNotFound(err) {
		w.voids++
	}
}

func (w *spfWalk) mx(ctx context.Context, target string) {
	if strings.Contains(target, "%") {
		w.macros++
		return
	}
	mxs, err := w.r.LookupMX(ctx, strings.TrimSuffix(target, ".")+".")
	switch {
	case dnserr.IsNotFound(err):
		w.voids++
	case err == nil && len(mxs) > 10:
		w.problems = append(w.problems, fmt.Sprintf("mx:%s: %d MX records, at most 10 allowed (permerror, RFC 7208 §4.6.4)", target, len(mxs)))
	}
}

func checkDKIM(ctx context.Context, r checkResolver, d, selector, keyFile string, rep *dnsReport) {
	if selector == "" {
		rep.add("dkim.record", checkWarn, "no --selector given: no DKIM key checked")
		return
	}
	if err := dkimsign.CheckSelector(selector); err != nil {
		rep.add("dkim.record", checkFail, "%v", err)
		return
	}
	name := dkimsign.RecordName(selector, d)
	txts, err := lookupTXT(ctx, r, name)
	switch {
	case dnserr.IsNotFound(err):
		rep.add("dkim.record", checkFail, "no key record at %s: signatures with s=%s fail (permerror)", name, selector)
		return
	case err != nil:
		rep.add("dkim.record", checkFail, "DNS error looking up %s: %v", name, err)
		return
	case len(txts) > 1:
		// RFC 6376 §3.6.2.2: the result with several records is undefined.
		// Our verifier uses the ones that are key records (and tries two
		// or three of them in turn); others refuse any second record.
		keys := 0
		for _, t := range txts {
			if _, err := dkimverify.ParseKeyRecord(t); err == nil {
				keys++
			}
		}
		rep.add("dkim.record", checkFail, "%d TXT records at %s, %d of them key records: the result is undefined (RFC 6376 §3.6.2.2) and verifiers differ (authmilter tries the key records, go-msgauth fails every signature, dkimpy uses whichever comes first): publish one record", len(txts), name, keys)
		return
	}
	// The verifier's own parser and checks: what passes here is what the
	// verifier accepts.
	rec, err := dkimverify.ParseKeyRecord(txts[0])
	if err == nil {
		if err = rec.Usable(""); errors.Is(err, dkimverify.ErrKeyTooSmall) {
			err = nil // reported as dkim.key-size below
		}
	}
	switch {
	case errors.Is(err, dkimverify.ErrKeyRevoked):
		rep.add("dkim.record", checkWarn, "%s: key revoked (empty p=): signatures with s=%s fail", name, selector)
		return
	case err != nil:
		rep.add("dkim.record", checkFail, "%s: %v: signatures with s=%s fail (permerror)", name, err, selector)
		return
	case rec.Testing:
		rep.add("dkim.record", checkWarn, "%s: k=%s, but t=y (testing): some receivers ignore the signatures", name, rec.Type)
	case len(rec.Notes) > 0:
		rep.add("dkim.record", checkWarn, "%s: k=%s; %s", name, rec.Type, strings.Join(rec.Notes, "; "))
	default:
		rep.add("dkim.record", checkPass, "%s: k=%s", name, rec.Type)
	}
	switch {
	case rec.Type == dkimsign.AlgEd25519:
		rep.add("dkim.key-size", checkPass, "Ed25519 (RFC 8463); sign with an RSA key as well for verifiers without Ed25519")
	case rec.Bits < 1024:
		rep.add("dkim.key-size", checkFail, "RSA %d bits: verifiers must reject keys under 1024 bits (RFC 8301 §3.2)", rec.Bits)
	case rec.Bits < 2048:
		rep.add("dkim.key-size", checkWarn, "RSA %d bits: signers should use at least 2048 (RFC 8301 §3.2)", rec.Bits)
	case rec.Bits > 4096:
		rep.add("dkim.key-size", checkWarn, "RSA %d bits: verifiers need only handle up to 4096 (RFC 8301 §3.2)", rec.Bits)
	default:
		rep.add("dkim.key-size", checkPass, "RSA %d bits", rec.Bits)
	}
	if keyFile == "" {
		return
	}
	k, err := dkimsign.LoadKeyFile(keyFile)
	switch {
	case err != nil:
		rep.add("dkim.key-match", checkFail, "%v", err)
	case rec.Matches(k):
		rep.add("dkim.key-match", checkPass, "the private key matches the published key")
	default:
		rep.add("dkim.key-match", checkFail, "the private key does not match the key published at %s", name)
	}
}

func checkDMARC(ctx context.Context, r checkResolver, d string, mode dmarc.Mode, rep *dnsReport) {
	name := "_dmarc." + d
	txts, err := lookupTXT(ctx, r, name)
	var recs []string
	for _, t := range txts {
		if dmarc.IsDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	switch {
	case err != nil && !dnserr.IsNotFound(err):
		rep.add("dmarc.record", checkFail, "DNS error looking up %s: %v", name, err)
	case len(recs) > 1:
		rep.add("dmarc.record", checkFail, "%d DMARC records at %s: all are ignored (RFC 9989 §4.10)", len(recs), name)
	case len(recs) == 0 && len(txts) > 0:
		rep.add("dmarc.record", checkFail, "TXT at %s is not a DMARC record (it must start with \"v=DMARC1;\"): %q", name, txts[0])
	case len(recs) == 0:
		rep.add("dmarc.record", checkWarn, "no DMARC record at %s", name)
	default:
		rec, _ := dmarc.ParseRecord(recs[0])
		switch {
		case len(rec.Invalid) > 0:
			rep.add("dmarc.record", checkFail, "%s: invalid value for %s, replaced by the default (RFC 9989 §4.8)", recs[0], strings.Join(rec.Invalid, ", "))
		case rec.Pct == 0 && !rec.HasT:
			rep.add("dmarc.record", checkWarn, "%s: pct= was removed by RFC 9989; pct=0 without t= is read as t=y (policy one level lower), write t=y", recs[0])
		case rec.Pct >= 0:
			rep.add("dmarc.record", checkWarn, "%s: pct= was removed by RFC 9989 and is ignored (use t=y for testing)", recs[0])
		case len(rec.Ignored) > 0:
			rep.add("dmarc.record", checkWarn, "%s: ignored: %s", recs[0], strings.Join(rec.Ignored, "; "))
		default:
			rep.add("dmarc.record", checkPass, "%s", recs[0])
		}
	}

	disc, err := dmarc.Discover(ctx, r, d, mode)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		rep.add("dmarc.policy", checkFail, "no DMARC policy applies to %s", d)
		return
	case err != nil:
		rep.add("dmarc.policy", checkFail, "policy discovery failed: %v", err)
		return
	}
	from := "_dmarc." + disc.PolicyDomain
	if disc.PolicyDomain != d {
		from += ", inherited"
	}
	pol := disc.Published()
	switch {
	case pol == "":
		rep.add("dmarc.policy", checkFail, "the record at %s has no valid p=: no policy applies", from)
	case disc.Record.Testing:
		rep.add("dmarc.policy", checkWarn, "%s (%s), but t=y: receivers apply one level less", pol, from)
	case pol == dmarc.PolicyNone:
		rep.add("dmarc.policy", checkWarn, "none (%s): monitoring only, failing mail is not rejected", from)
	default:
		rep.add("dmarc.policy", checkPass, "%s (%s)", pol, from)
	}

	rec := disc.Record
	if len(rec.RUA) == 0 {
		rep.add("dmarc.rua", checkWarn, "no rua=: nobody receives aggregate reports")
		return
	}
	pp := report.PolicyPublished{Domain: disc.PolicyDomain, DiscoveryMethod: disc.Method}
	for _, u := range rec.RUA {
		pp.RUA = append(pp.RUA, report.URI{Address: u.Address, MaxSize: u.MaxSize})
	}
	for _, dest := range report.Destinations(ctx, r, pp) {
		switch {
		case dest.Err == nil:
			rep.add("dmarc.rua", checkPass, "%s: reports go to %s", dest.URI.Address, dest.Address)
		case errors.Is(dest.Err, report.ErrNotAuthorized):
			host := dest.Address[strings.LastIndexByte(dest.Address, '@')+1:]
			rep.add("dmarc.rua", checkFail, "%s: %s does not accept reports for %s: publish \"v=DMARC1\" at %s._report._dmarc.%s (RFC 9990 §4)",
				dest.URI.Address, host, disc.PolicyDomain, disc.PolicyDomain, host)
		default:
			rep.add("dmarc.rua", checkFail, "%s: %v", dest.URI.Address, dest.Err)
		}
	}
}

// checkADSP flags an Author Domain Signing Practices record: RFC 5617 was
// moved to Historic in 2013 and nobody should act on it any more.
func checkADSP(ctx context.Context, r checkResolver, d string, rep *dnsReport) {
	name := "_adsp._domainkey." + d
	txts, err := lookupTXT(ctx, r, name)
	switch {
	case dnserr.IsNotFound(err) || (err == nil && len(txts) == 0):
		rep.add("adsp", checkPass, "no ADSP record")
	case err != nil:
		rep.add("adsp", checkWarn, "DNS error looking up %s: %v", name, err)
	default:
		rep.add("adsp", checkWarn, "obsolete ADSP record at %s (%q): RFC 5617 is Historic; remove it", name, txts[0])
	}
}
