package main

// `authmilter verify`: evaluate one message file offline, the way the milter
// would, and explain every result. This is what a postmaster runs when a
// sender complains.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

const verifyUsage = `usage: authmilter verify [options] FILE

Evaluates one message (FILE, or - for standard input) as the milter would
for the given SMTP envelope, and prints the headers it would add, what the
MTA would be told and why. The file may have CRLF or LF line ends; a leading
mbox "From " line is skipped. DNS is live (the configured servers).

options:
`

// chunkSize is the largest body chunk Postfix sends to a milter.
const chunkSize = 65535

// verifyReport is everything verify prints; the JSON output is this value.
type verifyReport struct {
	File        string         `json:"file"`
	Envelope    verifyEnvelope `json:"envelope"`
	Notes       []string       `json:"notes,omitempty"`
	AddHeaders  []addedHeader  `json:"add_headers"`
	Removed     int            `json:"removed_authentication_results"`
	Disposition verifyDecision `json:"disposition"`
	SPF         *verifySPF     `json:"spf,omitempty"`
	DKIM        []verifyDKIM   `json:"dkim"`          // null when DKIM is off, [] for an unsigned message
	ARC         *verifyARC     `json:"arc,omitempty"` // absent when ARC is off
	DMARC       *verifyDMARC   `json:"dmarc,omitempty"`
	DNS         []trailEntry   `json:"dns"`
	authservID  string
	engineRes   *engine.Result
	decision    policy.Decision
	skipped     string
	hadIP       bool
	headerCount int
}

type verifyEnvelope struct {
	ClientIP   string `json:"client_ip"`
	ClientHost string `json:"client_host"`
	HELO       string `json:"helo"`
	MailFrom   string `json:"mail_from"`
}

type addedHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"` // folded with CRLF, no leading space
}

type verifyDecision struct {
	Action      string `json:"action"` // accept, quarantine, tempfail, reject
	Reply       string `json:"reply,omitempty"`
	Disposition string `json:"disposition"` // RFC 9990 evaluated disposition
	Override    string `json:"override,omitempty"`
	Why         string `json:"why"`
	// NotChecked is set when the milter would not check this client at all
	// (policy.ignore_hosts); the evaluation above is then hypothetical.
	NotChecked string `json:"not_checked,omitempty"`
}

type verifySPF struct {
	MailFrom *spfOutcome `json:"mailfrom,omitempty"`
	HELO     *spfOutcome `json:"helo,omitempty"`
	DNSNames []string    `json:"dns_names"` // every name the SPF checks consulted
}

type spfOutcome struct {
	Result   string `json:"result"`
	Identity string `json:"identity"`
	Domain   string `json:"domain"`
	Reason   string `json:"reason,omitempty"` // the matched mechanism, or what went wrong
	Error    string `json:"error,omitempty"`
}

type verifyDKIM struct {
	Status     string `json:"status"`
	Domain     string `json:"domain"`
	Selector   string `json:"selector"`
	Identifier string `json:"identifier,omitempty"`
	Algorithm  string `json:"algorithm"`
	BPrefix    string `json:"b"`
	KeyName    string `json:"key_name,omitempty"`
	KeyBits    int    `json:"key_bits,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Error      string `json:"error,omitempty"`
}

// verifyARC is the ARC chain (RFC 8617) as validated.
type verifyARC struct {
	Status     string         `json:"status"` // none, pass, fail
	Reason     string         `json:"reason,omitempty"`
	Error      string         `json:"error,omitempty"`
	OldestPass int            `json:"oldest_pass"`
	RemoteIP   string         `json:"remote_ip,omitempty"` // the first hop's client, as it recorded it
	Sets       []verifyARCSet `json:"sets"`
}

type verifyARCSet struct {
	Instance    int    `json:"instance"`
	CV          string `json:"cv"`
	Sealer      string `json:"sealer"` // ARC-Seal d=
	Selector    string `json:"selector"`
	Algorithm   string `json:"algorithm"`
	SealPass    bool   `json:"seal_verified"`
	Signer      string `json:"message_signer"` // ARC-Message-Signature d=
	MessagePass bool   `json:"message_signature_verified"`
	AuthServID  string `json:"authserv_id"`
	Assessment  string `json:"assessment"` // the ARC-Authentication-Results, as we read them
	TrustedSeal bool   `json:"trusted_sealer,omitempty"`
}

func arcOut(a arc.Result, trusted func(string) bool) *verifyARC {
	v := &verifyARC{Status: string(a.Status), Reason: a.Reason, Error: errString(a.Err), OldestPass: a.OldestPass,
		RemoteIP: a.RemoteIP, Sets: []verifyARCSet{}}
	for _, s := range a.Sets {
		var rs []string
		for _, r := range s.Results {
			w := r.Method + "=" + r.Value
			for _, p := range r.Props {
				w += " " + p.Key + "=" + p.Value
			}
			rs = append(rs, w)
		}
		v.Sets = append(v.Sets, verifyARCSet{Instance: s.Instance, CV: s.CV, Sealer: s.SealDomain, Selector: s.SealSelector,
			Algorithm: s.SealAlgorithm, SealPass: s.SealPass, Signer: s.MessageDomain, MessagePass: s.MessagePass,
			AuthServID: s.AuthServID, Assessment: strings.Join(rs, "; "), TrustedSeal: trusted(s.SealDomain)})
	}
	return v
}

type verifyDMARC struct {
	Status        string       `json:"status"`
	AuthorDomains []string     `json:"author_domains"`
	FromProblem   string       `json:"from_problem,omitempty"`
	Evaluations   []dmarcEval  `json:"evaluations"`
	deciding      dmarc.Result // for the text output
}

type dmarcEval struct {
	AuthorDomain string   `json:"author_domain"`
	Status       string   `json:"status"`
	Reason       string   `json:"reason,omitempty"`
	Error        string   `json:"error,omitempty"`
	Method       string   `json:"discovery_method,omitempty"`
	Queries      []string `json:"discovery_queries,omitempty"`
	Skipped      []string `json:"skipped,omitempty"`
	PolicyDomain string   `json:"policy_domain,omitempty"`
	OrgDomain    string   `json:"org_domain,omitempty"`
	NonExistent  bool     `json:"author_domain_nonexistent,omitempty"`
	Record       string   `json:"record,omitempty"`
	Published    string   `json:"published_policy,omitempty"`
	Applied      string   `json:"applied_policy,omitempty"`
	TestMode     bool     `json:"test_mode,omitempty"`
	TestModePct  bool     `json:"test_mode_from_pct,omitempty"`
	SampledOut   bool     `json:"sampled_out,omitempty"`
	Alignment    *aligned `json:"alignment,omitempty"`
}

type aligned struct {
	SPFMode  string   `json:"aspf"`  // strict or relaxed
	DKIMMode string   `json:"adkim"` // strict or relaxed
	SPF      string   `json:"spf"`   // one line: identifier, result, aligned or why not
	DKIM     []string `json:"dkim"`  // one line per signature
	Pass     bool     `json:"pass"`
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("verify", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, verifyUsage)
		fl.PrintDefaults()
	}
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	ipFlag := fl.String("ip", "", "SMTP client `address` (needed for SPF)")
	host := fl.String("host", "", "SMTP client host `name` as the MTA saw it (for trusted_forwarders)")
	helo := fl.String("helo", "", "HELO/EHLO `name` the client gave")
	mailFrom := fl.String("mail-from", "", "envelope sender `address` (default: the Return-Path field; \"\" is the null sender)")
	asJSON := fl.Bool("json", false, "print JSON instead of text")
	timeout := fl.Duration("timeout", time.Minute, "give up on DNS after this long (results become temperror)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return 2
	}
	mailFromSet := false
	fl.Visit(func(f *flag.Flag) { mailFromSet = mailFromSet || f.Name == "mail-from" })

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	var data []byte
	if fl.Arg(0) == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(fl.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(stderr, "authmilter verify:", err)
		return 1
	}
	msg, err := parseMessage(data)
	if err != nil {
		fmt.Fprintf(stderr, "authmilter verify: %s: %v\n", fl.Arg(0), err)
		return 1
	}
	in := verifyInput{file: fl.Arg(0), helo: *helo, host: *host, mailFrom: *mailFrom, mailFromSet: mailFromSet, msg: msg}
	if *ipFlag != "" {
		if in.ip, err = netip.ParseAddr(strings.Trim(*ipFlag, "[]")); err != nil {
			fmt.Fprintf(stderr, "authmilter verify: -ip: not an IP address: %q\n", *ipFlag)
			return 2
		}
		in.ip = in.ip.Unmap()
	}

	// The same resolver settings as serve, behind the recording decorator.
	res, err := newResolver(cfg, nil)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	// The milter's service, as serve builds it, with the store, failure
	// reports and signing off: verify checks, it never signs and needs no
	// key files.
	trail := newTrail(res)
	vcfg := *cfg
	vcfg.Signing.Enabled = false
	svc, err := service.New(&vcfg, service.Deps{Resolver: trail})
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep := evaluate(ctx, svc, trail, in)

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "authmilter verify:", err)
			return 1
		}
		return 0
	}
	writeText(stdout, rep)
	return 0
}

// message is a message file split the way Postfix hands it to a milter.
// wireField is one header field as Postfix hands it to a milter (value
// after the colon, leading white space kept, folds as a bare "\n");
// milter.FieldValue makes it the backend's form.
type wireField struct{ Name, Value string }

type message struct {
	fields []wireField
	gaps   []string // per field, the white space between name and colon that Postfix drops
	body   []byte
	notes  []string
}

// parseMessage converts line ends to CRLF (bare LF becomes CRLF, as an MTA
// does on receipt) and splits the header fields as Postfix sends them with
// SMFIP_HDR_LEADSPC: the value is everything after the colon, leading
// whitespace kept, folds as a bare "\n" (RFC 5322 §2.2.3). White space
// between the name and the colon ("From : x", RFC 5322 §4.5.2 obs-optional)
// is dropped, as Postfix's milter client does after its is_header(). A line
// that is not a header field ends the header, as in Postfix's cleanup.
// evaluate hands each value on through milter.FieldValue, as the milter
// session does: the wire form is known in internal/milter alone.
func parseMessage(data []byte) (*message, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty message")
	}
	m := &message{}
	data = toCRLF(data)
	if bytes.HasPrefix(data, []byte("From ")) { // mbox separator line; Postfix skips a first "From " line, "From :" too
		if i := bytes.Index(data, []byte("\r\n")); i >= 0 {
			data = data[i+2:]
		} else {
			data = nil
		}
		m.notes = append(m.notes, `skipped the mbox "From " line`)
	}
	line := 0
	for len(data) > 0 {
		end := bytes.Index(data, []byte("\r\n"))
		if end < 0 {
			end = len(data)
		}
		text := string(data[:end])
		next := min(end+2, len(data))
		line++
		switch {
		case text == "":
			m.body = data[next:]
			return m, nil
		case (text[0] == ' ' || text[0] == '\t') && len(m.fields) > 0:
			m.fields[len(m.fields)-1].Value += "\n" + text
		default:
			name, value, ok := strings.Cut(text, ":")
			trimmed := strings.TrimRight(name, " \t")
			if !ok || !validFieldName(trimmed) {
				m.notes = append(m.notes, fmt.Sprintf("line %d is not a header field: the header ends there and the body starts (as Postfix does)", line))
				m.body = data
				return m, nil
			}
			m.fields = append(m.fields, wireField{Name: trimmed, Value: value})
			m.gaps = append(m.gaps, name[len(trimmed):])
		}
		data = data[next:]
	}
	return m, nil // header only, no body
}

// validFieldName: printable US-ASCII except colon (RFC 5322 §3.6.8).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

func toCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

type verifyInput struct {
	file        string
	ip          netip.Addr
	host        string
	helo        string
	mailFrom    string
	mailFromSet bool
	msg         *message
}

// evaluate runs the message through svc as the milter server does: Check
// at MAIL FROM, each field, end of header, the body in chunks, End; the
// header edits and the verdict are the service's own.
func evaluate(ctx context.Context, svc *service.Service, trail *trailResolver, in verifyInput) *verifyReport {
	rep := &verifyReport{File: in.file, Notes: in.msg.notes, authservID: svc.AuthservID, hadIP: in.ip.IsValid()}
	mailFrom := in.mailFrom
	if !in.mailFromSet {
		mailFrom = ""
		found := false
		for _, f := range in.msg.fields {
			if strings.EqualFold(f.Name, "Return-Path") {
				mailFrom = identity.StripPath(strings.ReplaceAll(f.Value, "\n", ""))
				found = true
				break
			}
		}
		if found {
			rep.Notes = append(rep.Notes, "envelope sender taken from the Return-Path field (give -mail-from to override)")
		} else {
			rep.Notes = append(rep.Notes, "no -mail-from and no Return-Path field: checked as the null sender")
		}
	}
	mailFrom = identity.StripPath(mailFrom)
	if !in.ip.IsValid() && svc.Engine.Options().SPF {
		rep.Notes = append(rep.Notes, "no -ip: SPF cannot be evaluated (permerror, invalid client IP)")
	}
	clientHost := in.host
	if clientHost == "" && in.ip.IsValid() {
		clientHost = "[" + in.ip.String() + "]"
	}
	rep.Envelope = verifyEnvelope{ClientIP: addrString(in.ip), ClientHost: clientHost, HELO: in.helo, MailFrom: mailFrom}

	// The milter's own path, fed as the milter server feeds it.
	menv := milter.Envelope{ClientIP: in.ip, ClientHost: clientHost, HELO: in.helo, MailFrom: mailFrom}
	if skip, why := svc.Skip(menv); skip {
		rep.skipped = why
	}
	m := svc.Check(ctx, menv)
	for _, f := range in.msg.fields {
		m.Header(f.Name, milter.FieldValue(f.Value)) // the wire form made the backend's, as the session does
	}
	rep.headerCount = len(in.msg.fields)
	m.EndOfHeaders()
	for body := in.msg.body; len(body) > 0; {
		n := min(len(body), chunkSize)
		m.Body(body[:n])
		body = body[n:]
	}
	v := m.End(ctx, "")
	r, d := m.Outcome()
	rep.engineRes, rep.decision = r, d
	// RFC 8601 §5: fields claiming our authserv-id are removed.
	rep.Removed = len(v.Delete)
	for _, h := range v.Insert {
		rep.AddHeaders = append(rep.AddHeaders, addedHeader{Name: h.Name, Value: h.Value})
	}
	rep.Disposition = verifyDecision{Action: d.Action.String(), Reply: d.Reply, Disposition: d.Disposition,
		Override: d.Override, Why: d.Why}
	if rep.skipped != "" {
		rep.Disposition.NotChecked = rep.skipped + ": the milter would not check this message nor change it"
	}

	if r.SPF.Status != "" || r.HELO.Status != "" {
		rep.SPF = &verifySPF{MailFrom: spfOut(r.SPF), HELO: spfOut(r.HELO), DNSNames: orEmpty(trail.Names("spf"))}
	}
	if r.DKIM != nil {
		rep.DKIM = make([]verifyDKIM, 0, len(r.DKIM))
		for _, k := range r.DKIM {
			v := verifyDKIM{Status: string(k.Status), Domain: k.Domain, Selector: k.Selector, Identifier: k.Identifier,
				Algorithm: k.Algorithm, BPrefix: k.BPrefix, KeyBits: k.KeyBits, Reason: k.Reason, Error: errString(k.Err)}
			if k.Domain != "" && k.Selector != "" {
				v.KeyName = k.Selector + "._domainkey." + k.Domain
			}
			rep.DKIM = append(rep.DKIM, v)
		}
	}
	if r.ARC.Status != "" {
		rep.ARC = arcOut(r.ARC, svc.Policy.TrustedSealer)
	}
	if r.DMARC.Status != "" {
		rep.DMARC = dmarcOut(r)
	}
	rep.DNS = orEmpty(trail.Entries())
	return rep
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func spfOut(o spfcheck.Result) *spfOutcome {
	if o.Status == "" {
		return nil
	}
	return &spfOutcome{Result: string(o.Status), Identity: o.Identity, Domain: o.Domain, Reason: o.Reason, Error: errString(o.Err)}
}

func dmarcOut(r *engine.Result) *verifyDMARC {
	v := &verifyDMARC{Status: string(r.DMARC.Status), AuthorDomains: orEmpty(r.AuthorDomains), FromProblem: r.FromProblem,
		deciding: r.DMARC}
	all := r.DMARCAll
	if len(all) == 0 {
		all = []dmarc.Result{r.DMARC}
	}
	for _, d := range all {
		v.Evaluations = append(v.Evaluations, dmarcEvalOut(r, d))
	}
	return v
}

func dmarcEvalOut(r *engine.Result, d dmarc.Result) dmarcEval {
	ev := dmarcEval{AuthorDomain: d.AuthorDomain, Status: string(d.Status), Reason: d.Reason, Error: errString(d.Err),
		Published: string(d.Published), Applied: string(d.Applied), TestMode: d.TestMode, SampledOut: d.SampledOut,
		TestModePct: d.TestModeFromPct}
	disc := d.Discovery
	if disc == nil {
		return ev
	}
	ev.Method, ev.Queries, ev.Skipped = disc.Method, disc.Queries, disc.Skipped
	ev.PolicyDomain, ev.OrgDomain, ev.NonExistent = disc.PolicyDomain, d.OrgDomain, disc.NonExistent
	if disc.Record == nil {
		return ev
	}
	rec := disc.Record
	ev.Record = rec.Raw
	if d.Status != dmarc.StatusPass && d.Status != dmarc.StatusFail {
		return ev
	}
	mode := func(b byte) string {
		if b == 's' {
			return "strict"
		}
		return "relaxed"
	}
	al := &aligned{SPFMode: mode(rec.ASPF), DKIMMode: mode(rec.ADKIM), Pass: d.SPFAligned || d.DKIMAligned}
	// how says what dmarc found for one identifier that passed; every one is
	// checked in the record's mode (RFC 9989 §5.3.4).
	how := func(a dmarc.Alignment, m byte) string {
		switch a {
		case dmarc.AlignExact:
			return "aligned with " + d.AuthorDomain
		case dmarc.AlignRelaxed:
			return "aligned with " + d.AuthorDomain + " (relaxed: same organizational domain)"
		case dmarc.AlignUnknown:
			return "alignment with " + d.AuthorDomain + " unknown (DNS failure)"
		}
		return fmt.Sprintf("not aligned with %s (%s)", d.AuthorDomain, mode(m))
	}
	// RFC 9989 §4.4: only the MAIL FROM identity of SPF counts, never HELO.
	switch spf := r.SPF; {
	case spf.Status == "":
		al.SPF = "SPF not checked"
	case spf.Status != spfcheck.StatusPass:
		al.SPF = fmt.Sprintf("smtp.mailfrom domain %s: spf=%s, does not count", orNone(spf.Domain), spf.Status)
	default:
		al.SPF = fmt.Sprintf("smtp.mailfrom domain %s: spf=pass, %s", spf.Domain, how(d.SPFAlignment, rec.ASPF))
	}
	al.DKIM = []string{}
	if len(r.DKIM) == 0 {
		al.DKIM = append(al.DKIM, "no DKIM signature")
	}
	for i, k := range r.DKIM {
		var a dmarc.Alignment
		if i < len(d.DKIMAlignment) {
			a = d.DKIMAlignment[i]
		}
		switch {
		case k.Status != dkimverify.StatusPass:
			al.DKIM = append(al.DKIM, fmt.Sprintf("header.d=%s: dkim=%s, does not count", orNone(k.Domain), k.Status))
		default:
			al.DKIM = append(al.DKIM, fmt.Sprintf("header.d=%s: dkim=pass, %s", k.Domain, how(a, rec.ADKIM)))
		}
	}
	ev.Alignment = al
	return ev
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// serverAddr matches the " on ADDR:PORT" a *net.DNSError names its server
// with: a random port in tests, noise for the reader.
var serverAddr = regexp.MustCompile(` on \[?[0-9a-fA-F.:]+\]?:[0-9]+`)

func errString(err error) string {
	if err == nil {
		return ""
	}
	return serverAddr.ReplaceAllString(err.Error(), "")
}

// writeText prints the report for a person.
func writeText(w io.Writer, rep *verifyReport) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	writeHeadAndVerdict(p, rep)
	p("")
	writeSPF(p, rep)
	p("")
	writeDKIM(p, rep)
	p("")
	writeARC(p, rep)
	p("")
	writeDMARC(p, rep)
	p("")
	writeDNS(p, rep)
}

// writeHeadAndVerdict prints the message, the envelope, the header edits and the disposition.
func writeHeadAndVerdict(p func(string, ...any), rep *verifyReport) {
	ev := rep.Envelope
	p("Message   %s (%d header fields)", rep.File, rep.headerCount)
	p("Envelope  client %s (%s), HELO %s, MAIL FROM <%s>", orNone(ev.ClientIP), orNone(ev.ClientHost), orNone(ev.HELO), ev.MailFrom)
	for _, n := range rep.Notes {
		p("Note      %s", n)
	}
	p("")
	p("Headers we would add (at the top):")
	for _, h := range rep.AddHeaders {
		p("  %s: %s", h.Name, strings.ReplaceAll(h.Value, "\r\n", "\n  "))
	}
	if rep.Removed > 0 {
		p("  and remove %d Authentication-Results field(s) carrying our authserv-id %q (RFC 8601 §5)", rep.Removed, rep.authservID)
	}
	p("")
	d := rep.Disposition
	line := "Disposition: " + d.Action
	if d.Reply != "" {
		line += " (" + d.Reply + ")"
	}
	p("%s", line)
	p("  why: %s; DMARC disposition %s", d.Why, d.Disposition)
	if d.Override != "" {
		p("  override: %s", d.Override)
	}
	if d.NotChecked != "" {
		p("  NOTE: %s", d.NotChecked)
	}
}

// writeSPF prints the SPF checks.
func writeSPF(p func(string, ...any), rep *verifyReport) {
	if rep.SPF == nil {
		p("SPF: not checked")
	} else {
		p("SPF: DNS names consulted: %s", joinOrNone(rep.SPF.DNSNames))
		for _, o := range []*spfOutcome{rep.SPF.MailFrom, rep.SPF.HELO} {
			if o == nil {
				continue
			}
			scope := "MAIL FROM"
			if o == rep.SPF.HELO {
				scope = "HELO (never used by DMARC)"
			}
			p("  %s: %s", scope, o.Result)
			p("    identity %s, domain %s", o.Identity, orNone(o.Domain))
			if o.Reason != "" {
				p("    reason: %s", o.Reason)
			}
			if o.Error != "" && o.Error != o.Reason {
				p("    error: %s", o.Error)
			}
		}
	}
}

// writeDKIM prints each DKIM signature.
func writeDKIM(p func(string, ...any), rep *verifyReport) {
	switch {
	case rep.DKIM == nil:
		p("DKIM: not checked")
	case len(rep.DKIM) == 0:
		p("DKIM: none (no DKIM-Signature field)")
	default:
		p("DKIM: %d signature(s)", len(rep.DKIM))
		for i, k := range rep.DKIM {
			p("  #%d %s: d=%s s=%s a=%s b=%s", i+1, k.Status, orNone(k.Domain), orNone(k.Selector), orNone(k.Algorithm), orNone(k.BPrefix))
			if k.KeyName != "" {
				key := "key " + k.KeyName
				if k.KeyBits > 0 {
					key += fmt.Sprintf(" (%d-bit RSA)", k.KeyBits)
				}
				p("     %s", key)
			}
			if k.Reason != "" {
				p("     why: %s", k.Reason)
			}
			if k.Error != "" {
				p("     error: %s", k.Error)
			}
		}
	}
}

// writeARC prints the ARC chain.
func writeARC(p func(string, ...any), rep *verifyReport) {
	switch a := rep.ARC; {
	case a == nil:
		p("ARC: not checked")
	case a.Status == "none":
		p("ARC: none (no ARC set)")
	default:
		head := fmt.Sprintf("ARC: %s", a.Status)
		if a.Status == "pass" {
			head += fmt.Sprintf(" (%d set(s), oldest-pass %d", len(a.Sets), a.OldestPass)
			if a.RemoteIP != "" {
				head += ", first hop " + a.RemoteIP
			}
			head += ")"
		}
		p("%s", head)
		if a.Reason != "" {
			p("  why: %s", a.Reason)
		}
		if a.Error != "" {
			p("  error: %s", a.Error)
		}
		for _, s := range a.Sets {
			verified := func(ok bool) string {
				if ok {
					return "verified"
				}
				return "not verified"
			}
			trusted := ""
			if s.TrustedSeal {
				trusted = " [trusted sealer]"
			}
			p("  i=%d cv=%s sealed by %s (s=%s, %s): %s%s", s.Instance, s.CV, s.Sealer, s.Selector, s.Algorithm, verified(s.SealPass), trusted)
			p("      message signature by %s: %s", s.Signer, verified(s.MessagePass))
			p("      %s recorded: %s", orNone(s.AuthServID), orNone(s.Assessment))
		}
	}
}

// writeDMARC prints each DMARC evaluation.
func writeDMARC(p func(string, ...any), rep *verifyReport) {
	if rep.DMARC == nil {
		p("DMARC: not checked")
	} else {
		dm := rep.DMARC
		p("DMARC: %s (author domain %s)", dm.Status, joinOrNone(dm.AuthorDomains))
		if dm.FromProblem != "" {
			p("  From problem: %s", dm.FromProblem)
		}
		for _, e := range dm.Evaluations {
			if len(dm.Evaluations) > 1 {
				p("  -- %s: %s", e.AuthorDomain, e.Status)
			}
			if e.Method != "" {
				p("  discovery (%s): %s", e.Method, joinOrNone(e.Queries))
			}
			if len(e.Skipped) > 0 {
				p("  ignored (several DMARC records): %s", strings.Join(e.Skipped, ", "))
			}
			if e.PolicyDomain != "" {
				org := e.OrgDomain
				if org == "" {
					// RFC 9989 §4.10.1: the author's own record settled the
					// policy and no relaxed check needed the names above.
					org = "not needed"
				}
				p("  policy domain %s, organizational domain %s", e.PolicyDomain, org)
			} else if e.OrgDomain != "" {
				p("  organizational domain %s", e.OrgDomain)
			}
			if e.NonExistent {
				p("  the author domain does not exist (np applies)")
			}
			if e.Record != "" {
				p("  record: %s", e.Record)
			}
			if e.Published != "" {
				pol := "  policy: published " + e.Published
				if e.Applied != "" && e.Status == string(dmarc.StatusFail) {
					pol += ", applied " + e.Applied
				}
				switch {
				case e.TestModePct:
					// RFC 9989 Appendix A.6: t=y is the analogue of pct=0.
					pol += " (pct=0 without t: read as t=y, one level lower)"
				case e.TestMode:
					pol += " (t=y)"
				}
				if e.SampledOut {
					pol += " (sampled out)"
				}
				p("%s", pol)
			}
			if a := e.Alignment; a != nil {
				p("  alignment (aspf=%s, adkim=%s):", a.SPFMode, a.DKIMMode)
				p("    %s", a.SPF)
				for _, l := range a.DKIM {
					p("    %s", l)
				}
			}
			if e.Reason != "" {
				p("  reason: %s", e.Reason)
			}
			if e.Error != "" {
				p("  error: %s", e.Error)
			}
		}
	}
}

// writeDNS prints every DNS question asked, in order.
func writeDNS(p func(string, ...any), rep *verifyReport) {
	p("DNS questions (%d):", len(rep.DNS))
	for _, e := range rep.DNS {
		var ans string
		switch {
		case e.Outcome == trailNXDomain || e.Outcome == trailNoData:
		case e.Error != "":
			ans = " (" + e.Error + ")"
		case e.Type == "TXT":
			ans = " " + strings.Join(truncateAll(quoteAll(e.Answer), 72), " ")
		default:
			ans = " " + strings.Join(e.Answer, " ")
		}
		asked := ""
		if e.Asked > 1 {
			asked = fmt.Sprintf(" (asked %d times)", e.Asked)
		}
		p("  %-5s %-11s %s -> %s%s%s", e.Check, e.Type, e.Name, e.Outcome, ans, asked)
	}
}

func joinOrNone(ss []string) string {
	if len(ss) == 0 {
		return "(none)"
	}
	return strings.Join(ss, ", ")
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func truncateAll(ss []string, n int) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > n {
			s = fmt.Sprintf("%s…(%d chars)", s[:n], len(s))
		}
		out[i] = s
	}
	return out
}
