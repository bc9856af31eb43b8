package report_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/authmilter/authmilter/pkg/report"
)

// FuzzReportRoundTrip builds reports from fuzzed records, renders them in
// one of the two XML formats with our writer, parses the XML back with
// encoding/xml into the independent structs below, and checks:
//
//   - Build never panics; its only error is ErrBadPeriod for a bad period;
//     every record is either in exactly one report or skipped with
//     ErrNotReportable, and skipped exactly when it is not reportable;
//   - the XML is well-formed UTF-8, has the right root and namespace, and
//     never contains "]]>";
//   - every string that went in comes back identical after the documented
//     normalisation: Build lowercases domains and enumerated values and
//     maps unknown enumeration values to a default (build.go), and the
//     encoding/xml writer replaces each invalid UTF-8 byte and each
//     character outside the XML 1.0 Char production (§2.2: NUL and the
//     other C0 controls except TAB, LF, CR; U+FFFE, U+FFFF) by U+FFFD;
//   - the rows of each report, counted, are exactly the records that went
//     into it (sum of counts = records of that report and of that policy
//     domain; no two records with different values merged into one row;
//     no two equal rows left apart), and rows come in count order;
//   - the policy_published, the metadata and the date range are those of
//     the records, report_id is 1*(ALPHA / DIGIT) (RFC 9990 §3.5.2).
func FuzzReportRoundTrip(f *testing.F) {
	for _, s := range fzSeeds() {
		f.Add(s.rfc7489, s.ctl, s.data)
	}
	f.Fuzz(func(t *testing.T, rfc7489 bool, ctl []byte, data string) {
		in := fzGenerate(ctl, data)
		format := report.FormatRFC9990
		if rfc7489 {
			format = report.FormatRFC7489
		}
		before := fzClone(in.entries)
		reps, skipped, err := report.Build(in.entries, in.opts)
		if !reflect.DeepEqual(before, in.entries) {
			t.Fatal("Build changed its input records")
		}
		if err != nil {
			if !errors.Is(err, report.ErrBadPeriod) || in.validPeriod {
				t.Fatalf("Build: %v", err)
			}
			return
		}
		if !in.validPeriod {
			t.Fatalf("Build accepted period %v", in.opts.Period)
		}
		fzCheck(t, in, format, reps, skipped)
	})
}

// fzClone copies entries deeply.
func fzClone(es []report.Entry) []report.Entry {
	if es == nil {
		return nil
	}
	out := make([]report.Entry, len(es))
	for i, e := range es {
		r := e.Record
		r.EnvelopeTo = append([]string(nil), r.EnvelopeTo...)
		r.SPF = append([]report.SPFResult(nil), r.SPF...)
		r.DKIM = append([]report.DKIMResult(nil), r.DKIM...)
		r.Overrides = append([]report.Override(nil), r.Overrides...)
		r.Policy.RUA = append([]report.URI(nil), r.Policy.RUA...)
		out[i] = report.Entry{ID: e.ID, Record: r}
	}
	return out
}

// fzSeed is one seed: the format, the control bytes and the string data
// (see fzGenerate).
type fzSeed struct {
	rfc7489 bool
	ctl     []byte
	data    string
}

// fzSeedOf lays out a seed: the pool strings, then the control bytes that
// build the records from them. Strings up to 254 bytes; a longer one must
// be the last and takes the rest of the data.
func fzSeedOf(rfc7489 bool, pool []string, rest ...byte) fzSeed {
	ctl := []byte{byte(len(pool) - 1)}
	for i, s := range pool {
		switch {
		case len(s) < 255:
			ctl = append(ctl, byte(len(s)))
		case i == len(pool)-1:
			ctl = append(ctl, 255)
		default:
			panic("fzSeedOf: long string not last")
		}
	}
	return fzSeed{rfc7489, append(ctl, rest...), strings.Join(pool, "")}
}

func fzSeeds() []fzSeed {
	realistic := []string{"example.com", "mail.example.com", "mailto:dmarc@example.com", "Receiver Inc."}
	hostile := []string{"a<b>&c\"'d", "x]]>y", "nul\x00byte", "bad\xff\xfeutf8", "tab\tcr\rlf\n",
		"\ufffe\uffff\U0010FFFF", "İSTANBUL.example", "<!-- -->&amp;<![CDATA["}
	long := strings.Repeat("long-label.", 40) + strings.Repeat("\x01<&", 100)
	seq := func(n int) []byte { // 0,1,2,…: every choice walks its list
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	seeds := []fzSeed{
		// All zero choices: realistic passing messages, all alike (one
		// row counting them), every string the first of the pool.
		fzSeedOf(false, realistic, make([]byte, 100)...),
		fzSeedOf(true, realistic, make([]byte, 100)...),
		// Several messages, several choices each.
		fzSeedOf(false, realistic, seq(250)...),
		fzSeedOf(true, realistic, seq(250)...),
		fzSeedOf(false, hostile, seq(250)...),
		fzSeedOf(true, hostile, bytes.Repeat([]byte{7, 3, 1, 250, 5, 9}, 40)...),
		fzSeedOf(false, append(hostile[:3:3], long), bytes.Repeat([]byte{3, 2, 1}, 80)...),
		fzSeedOf(true, append(hostile[3:5:5], long), bytes.Repeat([]byte{1, 255, 4}, 80)...),
	}
	// Small choices (mostly valid values, few distinct strings): many
	// messages, several reports and rows, rows that merge.
	small := func(seed uint64, n, max int) []byte {
		rng := rand.New(rand.NewPCG(seed, 1))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(max))
		}
		return b
	}
	seeds = append(seeds, fzSeedOf(false, realistic, small(1, 600, 4)...), fzSeedOf(true, realistic, small(2, 600, 4)...),
		fzSeedOf(false, realistic, small(5, 600, 16)...), fzSeedOf(true, realistic, small(6, 600, 16)...),
		fzSeedOf(false, hostile, small(3, 600, 4)...), fzSeedOf(true, hostile, small(4, 600, 13)...))
	// One realistic message (44 bytes of zeros), then messages that each
	// draw one more field again (1 change, field f, value 1, as many zeros
	// as that field reads more, the id), each twice (0 changes, the id):
	// pairs of rows that differ in one value.
	variants := make([]byte, 44)
	for f, more := range []int{0, 1, 4, 0, 0, 1, 6, 6, 0, 0, 0, 2, 0} {
		variants = append(variants, 1, byte(f), 1)
		variants = append(variants, make([]byte, more+1+2)...)
	}
	seeds = append(seeds, fzSeedOf(false, realistic, variants...))
	// The same with org_name, extra_contact_info and generator empty (the
	// last pool string) and envelope_to on.
	variants[2], variants[4], variants[5], variants[6] = 7, 7, 7, 1
	seeds = append(seeds, fzSeedOf(true, realistic, variants...))
	// Each hostile string as every string of a realistic message.
	for i, h := range append(hostile, long) {
		seeds = append(seeds, fzSeedOf(i%2 == 1, []string{h}, make([]byte, 70)...))
	}
	return seeds
}

// fzInput is what the fuzzed bytes decode to.
type fzInput struct {
	entries     []report.Entry
	opts        report.Options
	validPeriod bool
}

var fzDay = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// fzReader decodes the fuzzed input: ctl is a stream of choices, data the
// text that strings are cut from. An exhausted stream reads as zeros.
type fzReader struct {
	ctl  []byte
	data string
	pool []string
}

func (z *fzReader) b() byte {
	if len(z.ctl) == 0 {
		return 0
	}
	c := z.ctl[0]
	z.ctl = z.ctl[1:]
	return c
}

// cut takes the next string of data: length byte, 255 = all the rest.
func (z *fzReader) cut() string {
	n := int(z.b())
	if n == 255 || n > len(z.data) {
		n = len(z.data)
	}
	s := z.data[:n]
	z.data = z.data[n:]
	return s
}

// s picks a pool string.
func (z *fzReader) s() string { return z.pool[int(z.b())%len(z.pool)] }

// enum picks one of vals, or a mangled one (case, spaces), or any string.
func (z *fzReader) enum(vals ...string) string {
	c := int(z.b())
	switch i := c % (len(vals) + 2); {
	case i < len(vals):
		return vals[i]
	case i == len(vals):
		return " " + strings.ToUpper(vals[c/(len(vals)+2)%len(vals)]) + "\t"
	}
	return z.s()
}

func (z *fzReader) ip() string {
	switch z.b() % 7 {
	case 0:
		return "192.0.2." + fmt.Sprint(z.b()%4) // few addresses, so rows merge
	case 1:
		return netip.AddrFrom4([4]byte{z.b(), z.b(), z.b(), z.b()}).String()
	case 2:
		var a [16]byte
		for i := range a {
			a[i] = z.b()
		}
		return netip.AddrFrom16(a).String()
	case 3:
		return "::ffff:192.0.2." + fmt.Sprint(z.b()%4)
	case 4:
		return "2001:DB8::" + fmt.Sprint(z.b()%4) + "%" + z.s()
	case 5:
		return "2001:db8:0:0:0:0:0:" + fmt.Sprint(z.b()%4)
	}
	return z.s()
}

func fzGenerate(ctl []byte, data string) fzInput {
	z := &fzReader{ctl: ctl, data: data}
	for n := 1 + int(z.b())%8; len(z.pool) < n; {
		z.pool = append(z.pool, z.cut())
	}
	z.pool = append(z.pool, "example.com", "sub.example.com", "Example.ORG.", "")

	var in fzInput
	// The first five divide a day (build.go CheckPeriod); the others not.
	periods := []time.Duration{0, time.Hour, 6 * time.Hour, 24 * time.Hour, 90 * time.Minute,
		5 * time.Hour, 30 * time.Minute, 48 * time.Hour}
	c := int(z.b())
	in.opts.Period = periods[c%len(periods)]
	in.validPeriod = c%len(periods) < 5
	in.opts.Receiver = z.s()
	in.opts.OrgName = z.s()
	in.opts.Email = z.s()
	in.opts.ExtraContactInfo = z.s()
	in.opts.Generator = z.s()
	in.opts.EnvelopeTo = z.b()%2 == 1

	policies := make([]report.PolicyPublished, 1+int(z.b())%3)
	for i := range policies {
		p := report.PolicyPublished{Domain: z.s(), DiscoveryMethod: z.enum("treewalk", "psl"),
			ADKIM: z.enum("r", "s"), ASPF: z.enum("r", "s"), P: z.enum("none", "quarantine", "reject"),
			SP: z.enum("", "none", "quarantine", "reject"), NP: z.enum("", "none", "quarantine", "reject"),
			Testing: z.enum("n", "y"), Pct: int(z.b()) - 1, FO: z.enum("0", "1", "d", "s", "d:s")}
		for n := []int{1, 2, 0}[z.b()%3]; n > 0; n-- {
			p.RUA = append(p.RUA, report.URI{Address: z.s(), MaxSize: z.enum("", "10m")})
		}
		policies[i] = p
	}

	// set draws field f of a record afresh; slices are replaced, never
	// changed in place, so records may share them.
	const fields = 13
	set := func(r *report.Record, f int) {
		switch f {
		case 0:
			r.Policy = policies[int(z.b())%len(policies)]
		case 1:
			switch c := z.b(); c {
			case 255: // zero time: not reportable
				r.Time = time.Time{}
			case 254:
				r.Time = time.Date(12000, 1, 2, 3, 4, 5, 0, time.UTC)
			case 253:
				r.Time = time.Date(-5, 12, 31, 23, 59, 59, 0, time.FixedZone("W", -7*3600))
			default:
				r.Time = fzDay.Add(time.Duration(c)*time.Hour/4 + time.Duration(z.b())*time.Second)
			}
		case 2:
			r.SourceIP = z.ip()
		case 3:
			r.HeaderFrom = z.s()
		case 4:
			r.EnvelopeFrom = z.s()
		case 5:
			r.EnvelopeTo = nil
			for n := int(z.b()) % 3; n > 0; n-- {
				r.EnvelopeTo = append(r.EnvelopeTo, z.s())
			}
		case 6:
			r.SPF = nil
			for n := (int(z.b()) + 1) % 3; n > 0; n-- {
				r.SPF = append(r.SPF, report.SPFResult{Domain: z.s(), Scope: z.enum("mfrom", "", "helo"),
					Result: z.enum("none", "neutral", "pass", "fail", "softfail", "policy", "temperror", "permerror")})
			}
		case 7:
			r.DKIM = nil
			n := (int(z.b()) + 1) % 5
			if n == 4 {
				n += int(z.b()) // up to 259 signatures: the cap of 100
			}
			for ; n > 0; n-- {
				r.DKIM = append(r.DKIM, report.DKIMResult{Domain: z.s(), Selector: z.s(),
					Result: z.enum("pass", "fail", "none", "policy", "neutral", "temperror", "permerror")})
			}
		case 8:
			r.Disposition = z.enum("none", "pass", "quarantine", "reject")
		case 9:
			r.DKIMAligned = z.enum("pass", "fail")
		case 10:
			r.SPFAligned = z.enum("pass", "fail")
		case 11:
			r.Overrides = nil
			for n := int(z.b()) % 3; n > 0; n-- {
				r.Overrides = append(r.Overrides, report.Override{Type: z.enum("local_policy", "mailing_list",
					"other", "policy_test_mode", "trusted_forwarder", "forwarded", "sampled_out"), Comment: z.s()})
			}
		case 12:
			r.DMARCResult = z.enum("pass", "fail", "none", "temperror", "permerror")
		}
	}
	// The first record is drawn field by field; each next one is the one
	// before with a few fields drawn again (none: the same message again),
	// so that rows merge or differ in one value only.
	var r report.Record
	for i := 0; i < 40 && len(z.ctl) > 0; i++ {
		if c := z.b(); i == 0 || c == 255 {
			for f := 0; f < fields; f++ {
				set(&r, f)
			}
		} else {
			for n := c % 4; n > 0; n-- {
				set(&r, int(z.b())%fields)
			}
		}
		// Unique ids (digits, then anything): the report lists them.
		in.entries = append(in.entries, report.Entry{ID: fmt.Sprint(i) + "-" + z.s(), Record: r})
	}
	return in
}

// The parsed XML: our own structs, independent of the writer's. Optional
// elements are pointers so that "absent" and "empty" differ.
type fzFeedback struct {
	XMLName  xml.Name
	Version  string `xml:"version"`
	Metadata struct {
		OrgName   string  `xml:"org_name"`
		Email     string  `xml:"email"`
		Extra     *string `xml:"extra_contact_info"`
		ReportID  string  `xml:"report_id"`
		Begin     int64   `xml:"date_range>begin"`
		End       int64   `xml:"date_range>end"`
		Generator *string `xml:"generator"`
	} `xml:"report_metadata"`
	Policy  fzPolicy  `xml:"policy_published"`
	Records []fzXRecs `xml:"record"`
}

type fzPolicy struct {
	Domain          string  `xml:"domain"`
	DiscoveryMethod *string `xml:"discovery_method"`
	ADKIM           string  `xml:"adkim"`
	ASPF            string  `xml:"aspf"`
	P               string  `xml:"p"`
	SP              *string `xml:"sp"`
	NP              *string `xml:"np"`
	Pct             *int    `xml:"pct"`
	FO              string  `xml:"fo"`
	Testing         *string `xml:"testing"`
}

type fzXRecs struct {
	SourceIP    string `xml:"row>source_ip"`
	Count       int    `xml:"row>count"`
	Disposition string `xml:"row>policy_evaluated>disposition"`
	DKIMAligned string `xml:"row>policy_evaluated>dkim"`
	SPFAligned  string `xml:"row>policy_evaluated>spf"`
	Reasons     []struct {
		Type    string  `xml:"type"`
		Comment *string `xml:"comment"`
	} `xml:"row>policy_evaluated>reason"`
	EnvelopeTo   *string `xml:"identifiers>envelope_to"`
	EnvelopeFrom *string `xml:"identifiers>envelope_from"`
	HeaderFrom   string  `xml:"identifiers>header_from"`
	DKIM         []struct {
		Domain   string `xml:"domain"`
		Selector string `xml:"selector"`
		Result   string `xml:"result"`
	} `xml:"auth_results>dkim"`
	SPF []struct {
		Domain string `xml:"domain"`
		Scope  string `xml:"scope"`
		Result string `xml:"result"`
	} `xml:"auth_results>spf"`
}

// fzRow is one row as plain comparable text: from the XML, or expected
// from a record.
type fzRow struct {
	SourceIP, Disposition, DKIMAligned, SPFAligned string
	Reasons                                        []string // type, then comment or "-" when absent
	EnvelopeTo                                     string   // "-" when absent
	EnvelopeFrom, HeaderFrom                       string
	DKIM, SPF                                      []string // domain, selector, result / domain, scope, result
}

func (r fzRow) key() string { return fmt.Sprintf("%q", r) }

// fzText is what an XML 1.0 text node can carry of s: each invalid UTF-8
// byte and each rune outside the Char production (XML 1.0 §2.2) becomes
// U+FFFD, as encoding/xml writes it.
func fzText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		ok := (r != utf8.RuneError || w > 1) && (r == '\t' || r == '\n' || r == '\r' ||
			r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF)
		if !ok {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fzLow is a domain as the report shows it.
func fzLow(s string) string { return fzText(strings.ToLower(s)) }

// fzEnum is an enumerated value as the report shows it: trimmed,
// lowercased, and def unless allowed.
func fzEnum(v, def string, allowed ...string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return def
}

func fzOr(v, def string) string {
	if v = strings.ToLower(strings.TrimSpace(v)); v == "" {
		return def
	}
	return v
}

func fzIn(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// fzReportable says whether Build must report r (build.go Build comment).
func fzReportable(r report.Record) bool {
	d := strings.ToLower(r.DMARCResult)
	_, err := netip.ParseAddr(r.SourceIP)
	return (d == "pass" || d == "fail") && r.Policy.Domain != "" && len(r.Policy.RUA) > 0 &&
		r.HeaderFrom != "" && err == nil && !r.Time.IsZero()
}

// fzNormPolicy is the policy a report of r must carry in its Go value.
func fzNormPolicy(p report.PolicyPublished) report.PolicyPublished {
	p.Domain = strings.ToLower(strings.TrimSuffix(p.Domain, "."))
	if p.DiscoveryMethod = strings.ToLower(p.DiscoveryMethod); p.DiscoveryMethod != "psl" {
		p.DiscoveryMethod = "treewalk"
	}
	p.ADKIM, p.ASPF, p.P = fzOr(p.ADKIM, "r"), fzOr(p.ASPF, "r"), fzOr(p.P, "none")
	p.SP, p.NP = strings.ToLower(p.SP), strings.ToLower(p.NP)
	p.Testing, p.FO = fzOr(p.Testing, "n"), fzOr(p.FO, "0")
	return p
}

// fzExpectRow is the row record r must give in format f.
func fzExpectRow(r report.Record, f report.Format, envelopeTo bool) fzRow {
	a := netip.MustParseAddr(r.SourceIP).Unmap().WithZone("")
	ip := a.String()
	if f == report.FormatRFC7489 && a.Is6() {
		b := a.As16()
		var g []string
		for i := 0; i < 16; i += 2 {
			g = append(g, fmt.Sprintf("%x", uint16(b[i])<<8|uint16(b[i+1])))
		}
		ip = strings.Join(g, ":")
	}
	row := fzRow{SourceIP: ip, Disposition: fzEnum(r.Disposition, "none", "none", "pass", "quarantine", "reject"),
		DKIMAligned: fzEnum(r.DKIMAligned, "fail", "pass", "fail"), SPFAligned: fzEnum(r.SPFAligned, "fail", "pass", "fail"),
		EnvelopeTo: "-", EnvelopeFrom: fzLow(r.EnvelopeFrom), HeaderFrom: fzLow(r.HeaderFrom)}
	if f == report.FormatRFC7489 && row.Disposition == "pass" {
		row.Disposition = "none" // not in the RFC 7489 enumeration
	}
	if envelopeTo && len(r.EnvelopeTo) == 1 && r.EnvelopeTo[0] != "" {
		row.EnvelopeTo = fzLow(r.EnvelopeTo[0])
	}
	known := map[report.Format][]string{
		report.FormatRFC9990: {"local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder"},
		report.FormatRFC7489: {"forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "other"},
	}[f]
	for _, o := range r.Overrides {
		typ, comment := strings.ToLower(o.Type), o.Comment
		if !fzIn(typ, known) {
			// Unknown in this format: "other", the type kept in the comment.
			if typ, comment = "other", typ; o.Comment != "" {
				comment += ": " + o.Comment
			}
		}
		if comment == "" {
			comment = "-"
		} else {
			comment = fzText(comment)
		}
		row.Reasons = append(row.Reasons, typ, comment)
	}
	// DKIM: RFC 9990 §3.1.3 order (aligned passes first, strict before
	// relaxed, header order within a class), at most 100.
	type sig struct{ class, i int }
	from := strings.ToLower(r.HeaderFrom)
	var sigs []sig
	for i, d := range r.DKIM {
		dom, res := strings.ToLower(d.Domain), fzEnum(d.Result, "none", "pass", "fail", "policy", "neutral", "temperror", "permerror")
		c := 3
		if res == "pass" {
			c = 2
			if dom == from {
				c = 0
			} else if strings.HasSuffix(from, "."+dom) || strings.HasSuffix(dom, "."+from) {
				c = 1
			}
		}
		sigs = append(sigs, sig{c, i})
	}
	sort.SliceStable(sigs, func(i, j int) bool { return sigs[i].class < sigs[j].class })
	for n, s := range sigs {
		if n == report.MaxDKIMPerRow {
			break
		}
		d := r.DKIM[s.i]
		row.DKIM = append(row.DKIM, fzLow(d.Domain), fzText(d.Selector),
			fzEnum(d.Result, "none", "pass", "fail", "policy", "neutral", "temperror", "permerror"))
	}
	for _, s := range r.SPF { // the first MAIL FROM result only
		if s.Scope != "" && !strings.EqualFold(s.Scope, "mfrom") {
			continue
		}
		res := fzEnum(s.Result, "none", "pass", "fail", "softfail", "policy", "neutral", "temperror", "permerror")
		if f == report.FormatRFC7489 && res == "policy" {
			res = "permerror"
		}
		row.SPF = []string{fzLow(s.Domain), "mfrom", res}
		break
	}
	if f == report.FormatRFC7489 && row.SPF == nil { // the schema wants one
		row.SPF = []string{row.EnvelopeFrom, "mfrom", "none"}
	}
	return row
}

func fzParsedRow(x fzXRecs) fzRow {
	row := fzRow{SourceIP: x.SourceIP, Disposition: x.Disposition, DKIMAligned: x.DKIMAligned,
		SPFAligned: x.SPFAligned, EnvelopeTo: "-", HeaderFrom: x.HeaderFrom}
	if x.EnvelopeFrom != nil {
		row.EnvelopeFrom = *x.EnvelopeFrom
	}
	if x.EnvelopeTo != nil {
		row.EnvelopeTo = *x.EnvelopeTo
	}
	for _, r := range x.Reasons {
		c := "-"
		if r.Comment != nil {
			c = *r.Comment
		}
		row.Reasons = append(row.Reasons, r.Type, c)
	}
	for _, d := range x.DKIM {
		row.DKIM = append(row.DKIM, d.Domain, d.Selector, d.Result)
	}
	for _, s := range x.SPF {
		row.SPF = append(row.SPF, s.Domain, s.Scope, s.Result)
	}
	return row
}

// fzReportID is the unique-id rule of RFC 9990 §3.5.2, 1*(ALPHA / DIGIT):
// report_id is the attachment name's unique-id.
var fzReportID = regexp.MustCompile(`^[A-Za-z0-9]+$`)

func fzCheck(t *testing.T, in fzInput, f report.Format, reps []*report.Report, skipped []report.Skipped) {
	byID := map[string]report.Record{}
	for _, e := range in.entries {
		byID[e.ID] = e.Record
	}
	// Every record is reported once or skipped once, as it should be.
	seen := map[string]int{}
	for _, s := range skipped {
		if !errors.Is(s.Err, report.ErrNotReportable) {
			t.Errorf("skipped %q: %v is not ErrNotReportable", s.ID, s.Err)
		}
		seen[s.ID]++
		if fzReportable(byID[s.ID]) {
			t.Errorf("reportable record %q skipped: %v", s.ID, s.Err)
		}
	}
	perDomain := map[string]int{} // reportable records per policy domain
	for _, e := range in.entries {
		if fzReportable(e.Record) {
			perDomain[fzText(fzNormPolicy(e.Record.Policy).Domain)]++
		}
	}
	xmlPerDomain := map[string]int{}
	for _, rep := range reps {
		for _, id := range rep.EntryIDs {
			seen[id]++
		}
		data, err := rep.XML(f)
		if err != nil {
			t.Fatalf("XML(%s): %v", f, err)
		}
		fb := fzCheckReport(t, in, f, rep, data, byID)
		for _, x := range fb.Records {
			xmlPerDomain[fb.Policy.Domain] += x.Count
		}
		_, _ = rep.Subject(), rep.Filename()
	}
	for _, e := range in.entries {
		if seen[e.ID] != 1 {
			t.Errorf("record %q: %d times in the reports and the skipped list, want once", e.ID, seen[e.ID])
		}
	}
	if !reflect.DeepEqual(perDomain, xmlPerDomain) {
		t.Errorf("messages per policy domain in the XML %#v, want %#v", xmlPerDomain, perDomain)
	}
}

// fzCheckReport checks one report's XML and returns it parsed.
func fzCheckReport(t *testing.T, in fzInput, f report.Format, rep *report.Report, data []byte, byID map[string]report.Record) fzFeedback {
	t.Helper()
	if !utf8.Valid(data) {
		t.Fatalf("XML is not UTF-8:\n%q", data)
	}
	if bytes.Contains(data, []byte("]]>")) {
		t.Errorf("XML contains ]]>:\n%s", data)
	}
	// Well-formed: the strict decoder reads it to the end, one root.
	dec := xml.NewDecoder(bytes.NewReader(data))
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("XML not well-formed: %v\n%s", err, data)
			}
			break
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if roots != 1 || depth != 0 {
		t.Fatalf("XML has %d roots, depth %d at the end", roots, depth)
	}
	var fb fzFeedback
	if err := xml.Unmarshal(data, &fb); err != nil {
		t.Fatalf("parse back: %v\n%s", err, data)
	}
	wantNS := map[report.Format]string{report.FormatRFC9990: report.Namespace, report.FormatRFC7489: ""}[f]
	if fb.XMLName.Local != "feedback" || fb.XMLName.Space != wantNS || fb.Version != "1.0" {
		t.Errorf("root %v version %q", fb.XMLName, fb.Version)
	}

	// Metadata.
	org := in.opts.OrgName
	if org == "" {
		org = in.opts.Receiver
	}
	m := fb.Metadata
	if m.OrgName != fzText(org) || m.Email != fzText(in.opts.Email) {
		t.Errorf("org_name %q email %q, want %q %q", m.OrgName, m.Email, fzText(org), fzText(in.opts.Email))
	}
	fzOptional(t, "extra_contact_info", m.Extra, in.opts.ExtraContactInfo, true)
	fzOptional(t, "generator", m.Generator, in.opts.Generator, f == report.FormatRFC9990)
	if m.ReportID != rep.ID || !fzReportID.MatchString(m.ReportID) {
		t.Errorf("report_id %q (report %q): want 1*(ALPHA / DIGIT)", m.ReportID, rep.ID)
	}
	if m.Begin != rep.Begin.Unix() || m.End != rep.End.Unix()-1 || m.End < m.Begin {
		t.Errorf("date_range %d..%d, report %v..%v", m.Begin, m.End, rep.Begin, rep.End)
	}

	// Every record of the report: reportable, of its policy and period.
	var want report.PolicyPublished
	wantRows := map[string]int{}
	for i, id := range rep.EntryIDs {
		r, ok := byID[id]
		if !ok || !fzReportable(r) {
			t.Fatalf("report lists record %q, unknown or not reportable", id)
		}
		p := fzNormPolicy(r.Policy)
		if i == 0 {
			want = p
		} else if !reflect.DeepEqual(p, want) {
			t.Errorf("one report, two policies:\n%#v\n%#v", want, p)
		}
		if ts := r.Time.Unix(); ts < m.Begin || ts > m.End {
			t.Errorf("record %q at %v outside date_range %d..%d", id, r.Time, m.Begin, m.End)
		}
		wantRows[fzExpectRow(r, f, in.opts.EnvelopeTo).key()]++
	}
	if !reflect.DeepEqual(rep.Policy, want) {
		t.Errorf("report policy %#v, want %#v", rep.Policy, want)
	}
	fzCheckPolicy(t, f, fb.Policy, want)

	// Rows: exactly the records, counted; no row twice; count order.
	gotRows := map[string]int{}
	sum := 0
	for i, x := range fb.Records {
		if x.Count < 1 {
			t.Errorf("row %d count %d", i, x.Count)
		}
		if i > 0 && x.Count > fb.Records[i-1].Count {
			t.Errorf("row %d count %d after %d: not in count order", i, x.Count, fb.Records[i-1].Count)
		}
		if x.EnvelopeFrom == nil {
			t.Errorf("row %d: no envelope_from element", i)
		}
		sum += x.Count
		gotRows[fzParsedRow(x).key()] += x.Count
	}
	if sum != len(rep.EntryIDs) || sum != rep.Messages() {
		t.Errorf("rows count %d messages, report has %d records", sum, len(rep.EntryIDs))
	}
	if !reflect.DeepEqual(gotRows, wantRows) {
		t.Errorf("rows in the XML:\n%s\nwant:\n%s", fzDump(gotRows), fzDump(wantRows))
	}
	for i := range rep.Rows {
		for j := i + 1; j < len(rep.Rows); j++ {
			if reflect.DeepEqual(rep.Rows[i], rep.Rows[j]) {
				t.Errorf("rows %d and %d are equal and not merged: %#v", i, j, rep.Rows[i])
			}
		}
	}
	return fb
}

func fzOptional(t *testing.T, name string, got *string, in string, written bool) {
	t.Helper()
	switch {
	case !written || in == "":
		if got != nil {
			t.Errorf("%s %q present, want absent", name, *got)
		}
	case got == nil:
		t.Errorf("%s absent, want %q", name, fzText(in))
	case *got != fzText(in):
		t.Errorf("%s %q, want %q", name, *got, fzText(in))
	}
}

func fzCheckPolicy(t *testing.T, f report.Format, got fzPolicy, p report.PolicyPublished) {
	t.Helper()
	if got.Domain != fzText(p.Domain) || got.ADKIM != fzText(p.ADKIM) || got.ASPF != fzText(p.ASPF) ||
		got.P != fzText(p.P) || got.FO != fzText(p.FO) {
		t.Errorf("policy_published %#v, want %#v", got, p)
	}
	if f == report.FormatRFC9990 {
		fzOptional(t, "discovery_method", got.DiscoveryMethod, p.DiscoveryMethod, true)
		fzOptional(t, "sp", got.SP, p.SP, true)
		fzOptional(t, "np", got.NP, p.NP, true)
		fzOptional(t, "testing", got.Testing, p.Testing, true)
		if got.Pct != nil {
			t.Errorf("RFC 9990 report has pct %d", *got.Pct)
		}
		return
	}
	sp := p.SP
	if sp == "" {
		sp = p.P // RFC 7489 §6.3
	}
	fzOptional(t, "sp", got.SP, sp, true)
	fzOptional(t, "discovery_method", got.DiscoveryMethod, "", false)
	fzOptional(t, "np", got.NP, "", false)
	fzOptional(t, "testing", got.Testing, "", false)
	pct := p.Pct
	if pct < 0 || pct > 100 {
		pct = 100
	}
	if got.Pct == nil || *got.Pct != pct {
		t.Errorf("pct %v, want %d", got.Pct, pct)
	}
}

func fzDump(m map[string]int) string {
	var lines []string
	for k, n := range m {
		lines = append(lines, fmt.Sprintf("  %d × %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
