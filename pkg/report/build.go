package report

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDKIMPerRow is the cap on DKIM results in one row (RFC 9990 §3.1.3: "no
// more than 100 signatures for a given row").
const MaxDKIMPerRow = 100

// Errors of Build and of the period helpers.
var (
	// ErrBadPeriod: a report period must be 1h to 24h and divide a UTC day
	// (RFC 9990 §3.1.1.4: periods SHOULD NOT overlap; one UTC day is typical).
	ErrBadPeriod = errors.New("report: period must be between 1h and 24h and divide 24h")
	// ErrNotReportable marks a record that no report can carry; the reason
	// follows in the wrapped text. Such records are done, not pending.
	ErrNotReportable = errors.New("report: record not reportable")
)

// Entry is one stored record with the store's identifier for it, so that
// the records a report carried can be marked once it is sent.
type Entry struct {
	ID     string
	Record Record
}

// Options are the reporter's settings for Build.
type Options struct {
	// Period is the length of a reporting period, aligned to 00:00 UTC;
	// 0 means 24h.
	Period time.Duration
	// Receiver is the reporting domain: the "Submitter:" in the Subject and
	// the first part of the attachment name (RFC 9990 §3.5.2).
	Receiver string
	// OrgName and Email fill report_metadata (RFC 9990 §3.1.1.3); OrgName
	// defaults to Receiver.
	OrgName, Email, ExtraContactInfo string
	// Generator names the software (RFC 9990 report_metadata/generator).
	Generator string
	// EnvelopeTo adds identifiers/envelope_to for messages that had exactly
	// one recipient domain. Off by default: it splits rows per recipient
	// domain and tells the Domain Owner who receives its mail (RFC 9990 §7.2).
	EnvelopeTo bool
}

// Report is one aggregate report: one policy domain, one policy
// configuration, one period (RFC 9990 §3.1).
type Report struct {
	ID                                         string // Report-ID, also the attachment's unique-id
	Receiver, OrgName, Email, ExtraContactInfo string
	Generator                                  string
	Begin, End                                 time.Time // the period [Begin, End), UTC
	Policy                                     PolicyPublished
	Rows                                       []Row
	// EntryIDs are the store identifiers of every record counted in Rows.
	EntryIDs []string
	// Format is the dialect a report read by ReadXML was in; Build leaves
	// it empty (the writer chooses at XML time).
	Format Format
}

// Row is one report record: a group of messages that share every reported
// value, and their count (RFC 9990 §3.1.1.7–§3.1.1.13).
type Row struct {
	SourceIP     string
	Count        int
	Disposition  string
	DKIMAligned  string
	SPFAligned   string
	Overrides    []Override
	HeaderFrom   string
	EnvelopeFrom string
	EnvelopeTo   string // "" when not reported
	DKIM         []DKIMResult
	SPF          []SPFResult
}

// Skipped is a record Build left out, with the reason (errors.Is
// ErrNotReportable).
type Skipped struct {
	ID  string
	Err error
}

// Messages is the number of messages the report counts.
func (r *Report) Messages() int {
	n := 0
	for _, row := range r.Rows {
		n += row.Count
	}
	return n
}

// CheckPeriod validates a period length (see ErrBadPeriod); 0 means 24h.
func CheckPeriod(p time.Duration) (time.Duration, error) {
	if p == 0 {
		return 24 * time.Hour, nil
	}
	if p < time.Hour || p > 24*time.Hour || (24*time.Hour)%p != 0 {
		return 0, fmt.Errorf("%w: %v", ErrBadPeriod, p)
	}
	return p, nil
}

// PeriodOf returns the reporting period [begin, end) that contains t, with
// periods of length p aligned to 00:00 UTC. p must pass CheckPeriod.
func PeriodOf(t time.Time, p time.Duration) (begin, end time.Time) {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	begin = day.Add(t.Sub(day) / p * p)
	return begin, begin.Add(p)
}

// Build groups records into reports: one per policy domain, policy
// configuration and period (RFC 9990 §3.1), rows counted by every value they
// report. Records that cannot be reported come back in skipped; that is a
// final verdict, so callers mark them done.
//
// What is not reported, and why:
//   - dmarc=none: no DMARC Policy Record, so no Policy Domain and no rua.
//   - dmarc=temperror: policy discovery or alignment failed on DNS; the
//     policy_evaluated alignment values must be "the evaluated values" (RFC
//     9990 §3.1.1.9) and reporting a guess as "fail" would be false
//     information (§8.2). OpenDMARC likewise reports only pass/fail.
//   - dmarc=permerror: DMARC could not run (e.g. several From domains with
//     multi_from=skip); there is no evaluation to report.
//   - a policy without rua: nobody asked for reports (RFC 9990 §3.4).
//   - malformed values (no header_from, unparsable source address).
func Build(entries []Entry, o Options) (reports []*Report, skipped []Skipped, err error) {
	period, err := CheckPeriod(o.Period)
	if err != nil {
		return nil, nil, err
	}
	if o.OrgName == "" {
		o.OrgName = o.Receiver
	}
	byKey := map[string]*Report{}
	rowIndex := map[*Report]map[string]int{}
	minID := map[*Report]string{}
	for _, e := range entries {
		rec := &e.Record
		if err := reportable(rec); err != nil {
			skipped = append(skipped, Skipped{ID: e.ID, Err: err})
			continue
		}
		begin, end := PeriodOf(rec.Time, period)
		pol := normPolicy(rec.Policy)
		key := begin.Format(time.RFC3339) + "\x00" + policyKey(pol)
		rep := byKey[key]
		if rep == nil {
			rep = &Report{Receiver: o.Receiver, OrgName: o.OrgName, Email: o.Email,
				ExtraContactInfo: o.ExtraContactInfo, Generator: o.Generator,
				Begin: begin, End: end, Policy: pol}
			byKey[key] = rep
			rowIndex[rep] = map[string]int{}
			reports = append(reports, rep)
			minID[rep] = e.ID
		}
		if e.ID < minID[rep] {
			minID[rep] = e.ID
		}
		rep.EntryIDs = append(rep.EntryIDs, e.ID)
		row := makeRow(rec, o.EnvelopeTo)
		rk := row.key()
		if i, ok := rowIndex[rep][rk]; ok {
			rep.Rows[i].Count++
			continue
		}
		row.Count = 1
		rowIndex[rep][rk] = len(rep.Rows)
		rep.Rows = append(rep.Rows, row)
	}
	for _, rep := range reports {
		rep.ID = reportID(rep, minID[rep])
		slices.SortStableFunc(rep.Rows, func(a, b Row) int { return cmp.Compare(b.Count, a.Count) })
	}
	slices.SortFunc(reports, func(a, b *Report) int {
		return cmp.Or(a.Begin.Compare(b.Begin), cmp.Compare(a.Policy.Domain, b.Policy.Domain), cmp.Compare(a.ID, b.ID))
	})
	return reports, skipped, nil
}

func reportable(rec *Record) error {
	switch r := strings.ToLower(rec.DMARCResult); r {
	case "pass", "fail":
	default:
		return fmt.Errorf("%w: dmarc=%s", ErrNotReportable, r)
	}
	if rec.Policy.Domain == "" {
		return fmt.Errorf("%w: no policy domain", ErrNotReportable)
	}
	if len(rec.Policy.RUA) == 0 {
		return fmt.Errorf("%w: policy of %s has no rua", ErrNotReportable, rec.Policy.Domain)
	}
	if rec.HeaderFrom == "" {
		return fmt.Errorf("%w: no header_from", ErrNotReportable)
	}
	if _, err := netip.ParseAddr(rec.SourceIP); err != nil {
		return fmt.Errorf("%w: source address %q", ErrNotReportable, rec.SourceIP)
	}
	if rec.Time.IsZero() {
		return fmt.Errorf("%w: no time", ErrNotReportable)
	}
	return nil
}

// normPolicy lowercases what the XML enumerations need lowercase and fills
// what RFC 9990 §3.1.1.5 calls "the discovered or default value".
func normPolicy(p PolicyPublished) PolicyPublished {
	p.Domain = strings.ToLower(strings.TrimSuffix(p.Domain, "."))
	p.DiscoveryMethod = strings.ToLower(p.DiscoveryMethod)
	if p.DiscoveryMethod != "psl" {
		p.DiscoveryMethod = "treewalk"
	}
	p.ADKIM, p.ASPF = orDefault(p.ADKIM, "r"), orDefault(p.ASPF, "r")
	p.P = orDefault(p.P, "none")
	p.SP, p.NP = strings.ToLower(p.SP), strings.ToLower(p.NP)
	p.Testing = orDefault(p.Testing, "n")
	p.FO = orDefault(p.FO, "0")
	p.RUA = append([]URI(nil), p.RUA...)
	return p
}

func orDefault(v, def string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return def
	}
	return v
}

// policyKey identifies one policy configuration (RFC 9990 §3.1: a report
// holds data for one configuration; we send one report per configuration
// seen in the period).
func policyKey(p PolicyPublished) string {
	var b strings.Builder
	for _, s := range []string{p.Domain, p.DiscoveryMethod, p.ADKIM, p.ASPF, p.P, p.SP, p.NP,
		p.Testing, strconv.Itoa(p.Pct), p.FO} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, u := range p.RUA {
		b.WriteString(u.Address + "!" + u.MaxSize + ",")
	}
	return b.String()
}

// reportID derives the Report-ID (RFC 9990 §3.5.1) from what the report is
// about: receiver, policy domain, period, policy configuration, and the
// smallest store id among its records. A re-send of the same pending records
// (a crash between sending and marking) gets the same Report-ID and so the
// same attachment name, as §3.5.2 requires; records that reach the store
// only after a period was reported form a new report with a new Report-ID,
// so they do not overwrite the first at the Report Consumer. Letters and
// digits only, because the same value is the attachment's unique-id
// (§3.1.4, §3.5.2 unique-id = 1*(ALPHA / DIGIT)).
func reportID(r *Report, minEntryID string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%s", r.Receiver, r.Begin.Unix(), r.End.Unix(), policyKey(r.Policy), minEntryID)
	// A time before year 1 formats with a '-' (only a corrupted store has
	// one): keep the digits, so the id stays 1*(ALPHA / DIGIT).
	prefix := strings.Map(func(c rune) rune {
		if c < '0' || c > '9' {
			return -1
		}
		return c
	}, r.Begin.UTC().Format("2006010215"))
	return prefix + hex.EncodeToString(h.Sum(nil)[:8])
}

func makeRow(rec *Record, envelopeTo bool) Row {
	row := Row{
		SourceIP:     rec.SourceIP,
		Disposition:  oneOf(rec.Disposition, "none", "none", "pass", "quarantine", "reject"),
		DKIMAligned:  oneOf(rec.DKIMAligned, "fail", "pass", "fail"),
		SPFAligned:   oneOf(rec.SPFAligned, "fail", "pass", "fail"),
		HeaderFrom:   strings.ToLower(rec.HeaderFrom),
		EnvelopeFrom: strings.ToLower(rec.EnvelopeFrom),
	}
	if a, err := netip.ParseAddr(rec.SourceIP); err == nil {
		row.SourceIP = a.Unmap().WithZone("").String()
	}
	if envelopeTo && len(rec.EnvelopeTo) == 1 {
		row.EnvelopeTo = strings.ToLower(rec.EnvelopeTo[0])
	}
	for _, o := range rec.Overrides {
		row.Overrides = append(row.Overrides, Override{Type: strings.ToLower(o.Type), Comment: o.Comment})
	}
	for _, s := range rec.SPF {
		if s.Scope != "" && !strings.EqualFold(s.Scope, "mfrom") {
			continue // RFC 9990 §3.1.1.13: only the MAIL FROM identity
		}
		row.SPF = append(row.SPF, SPFResult{Domain: strings.ToLower(s.Domain), Scope: "mfrom",
			Result: oneOf(s.Result, "none", "none", "pass", "fail", "softfail", "policy", "neutral", "temperror", "permerror")})
		break // at most one spf element (RFC 9990 AuthResultType)
	}
	row.DKIM = orderDKIM(rec.DKIM, row.HeaderFrom)
	return row
}

// orderDKIM keeps at most MaxDKIMPerRow signatures in the preference order
// of RFC 9990 §3.1.3: pass in strict alignment, pass in relaxed alignment,
// other passes, the rest; header order within each class. Relaxed alignment
// is approximated without DNS as "one name is a subdomain of the other",
// which is what relaxed alignment means unless a public suffix lies between.
func orderDKIM(in []DKIMResult, from string) []DKIMResult {
	if len(in) == 0 {
		return nil
	}
	out := make([]DKIMResult, len(in))
	for i, d := range in {
		out[i] = DKIMResult{Domain: strings.ToLower(d.Domain), Selector: d.Selector,
			Result: oneOf(d.Result, "none", "none", "pass", "fail", "policy", "neutral", "temperror", "permerror")}
	}
	class := func(d DKIMResult) int {
		switch {
		case d.Result != "pass":
			return 3
		case d.Domain == from:
			return 0
		case strings.HasSuffix(from, "."+d.Domain) || strings.HasSuffix(d.Domain, "."+from):
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b DKIMResult) int { return cmp.Compare(class(a), class(b)) })
	if len(out) > MaxDKIMPerRow {
		out = out[:MaxDKIMPerRow]
	}
	return out
}

// oneOf lowercases v and returns it if allowed, else def: values outside the
// schema's enumeration would make the whole report invalid.
func oneOf(v, def string, allowed ...string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return def
}

func (r *Row) key() string {
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
			b.WriteByte(0)
		}
	}
	w(r.SourceIP, r.Disposition, r.DKIMAligned, r.SPFAligned, r.HeaderFrom, r.EnvelopeFrom, r.EnvelopeTo)
	for _, o := range r.Overrides {
		w("o", o.Type, o.Comment)
	}
	for _, d := range r.DKIM {
		w("d", d.Domain, d.Selector, d.Result)
	}
	for _, s := range r.SPF {
		w("s", s.Domain, s.Scope, s.Result)
	}
	return b.String()
}

// Subject is the report mail's Subject text (RFC 9990 §3.5.2 dmarc-subject).
func (r *Report) Subject() string {
	return "Report Domain: " + r.Policy.Domain + " Submitter: " + r.Receiver + " Report-ID: " + r.ID
}

// Filename is the attachment name, receiver!policy-domain!begin!end!id
// (RFC 9990 §3.5.2), with ".xml.gz". begin and end are the date_range
// values written in the XML.
func (r *Report) Filename() string {
	return fmt.Sprintf("%s!%s!%d!%d!%s.xml.gz", r.Receiver, r.Policy.Domain, r.Begin.Unix(), r.lastSecond(), r.ID)
}

// lastSecond is date_range/end: the last second inside the period, as in
// the RFC 9990 Appendix B sample (begin 302832000, end 302918399).
func (r *Report) lastSecond() int64 { return r.End.Unix() - 1 }
