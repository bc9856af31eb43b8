package report

// The reader: aggregate reports that other receivers send about our
// domains, in RFC 9990 or RFC 7489 XML, back into the model the writer
// uses (Report and Row). The XML comes from anyone, so every read is
// bounded (Limits) and a document that cannot be read with certainty is
// refused whole, with an error that says why; nothing half-read is
// returned.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/authmilter/authmilter/pkg/identity"
)

// Errors of the reader. Every error it returns wraps one of these, so that
// callers can count refusals by kind.
var (
	// ErrMalformed: not well-formed XML, not UTF-8, or not a DMARC
	// aggregate report (no feedback element, a required value missing or
	// not a value of its type).
	ErrMalformed = errors.New("report: not a readable aggregate report")
	// ErrTooLarge: an input, or what it decompresses to, exceeds Limits.
	ErrTooLarge = errors.New("report: too large")
	// ErrTooManyRows: more records in one report than Limits.MaxRows.
	ErrTooManyRows = errors.New("report: too many records")
	// ErrForbidden: a DOCTYPE (DTDs and entities, internal or external,
	// are never processed: RFC 9990 reports have none).
	ErrForbidden = errors.New("report: DOCTYPE not allowed")
	// ErrNoReport: a mail or archive with no report in it.
	ErrNoReport = errors.New("report: no aggregate report found")
)

// Limits bound the reader. The zero value of a field takes its default.
type Limits struct {
	// MaxInput is the most bytes one input (a mail, a file, an archive)
	// may have before decompression. Default 20 MiB.
	MaxInput int64
	// MaxXML is the most bytes of XML one input may decompress to, all
	// its reports together (a zip or gzip bomb stops here). Default 64 MiB
	// (the largest real report in the samples is 0.9 MB).
	MaxXML int64
	// MaxRows is the most records one report may have. Default 100,000.
	MaxRows int
	// MaxReports is the most reports (archive members, attachments) one
	// input may carry. Default 16.
	MaxReports int
}

// Default limits.
const (
	DefaultMaxInput   = 20 << 20
	DefaultMaxXML     = 64 << 20
	DefaultMaxRows    = 100_000
	DefaultMaxReports = 16
)

func (l *Limits) withDefaults() Limits {
	var o Limits
	if l != nil {
		o = *l
	}
	if o.MaxInput <= 0 {
		o.MaxInput = DefaultMaxInput
	}
	if o.MaxXML <= 0 {
		o.MaxXML = DefaultMaxXML
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.MaxReports <= 0 {
		o.MaxReports = DefaultMaxReports
	}
	return o
}

// maxCount caps one row's count: larger is not a real count, and sums of
// many rows must not overflow.
const maxCount = 1 << 40

// The incoming document. Every value is read as text and checked by hand,
// so that the error can say which value was wrong, and so that real
// reporters' harmless deviations (spaces, upper case) can be accepted.
type inFeedback struct {
	Xmlns    string       `xml:"xmlns,attr"`
	Version  string       `xml:"version"`
	Metadata inMetadata   `xml:"report_metadata"`
	Policy   inPolicy     `xml:"policy_published"`
	Records  []inRecordEl `xml:"record"`
}

type inMetadata struct {
	OrgName   string `xml:"org_name"`
	Email     string `xml:"email"`
	Extra     string `xml:"extra_contact_info"`
	ReportID  string `xml:"report_id"`
	DateRange struct {
		Begin string `xml:"begin"`
		End   string `xml:"end"`
	} `xml:"date_range"`
	Generator string `xml:"generator"`
}

type inPolicy struct {
	Domain          string `xml:"domain"`
	DiscoveryMethod string `xml:"discovery_method"`
	ADKIM           string `xml:"adkim"`
	ASPF            string `xml:"aspf"`
	P               string `xml:"p"`
	SP              string `xml:"sp"`
	NP              string `xml:"np"`
	Pct             string `xml:"pct"`
	FO              string `xml:"fo"`
	Testing         string `xml:"testing"`
}

type inRecordEl struct {
	Row struct {
		SourceIP string `xml:"source_ip"`
		Count    string `xml:"count"`
		Policy   struct {
			Disposition string    `xml:"disposition"`
			DKIM        string    `xml:"dkim"`
			SPF         string    `xml:"spf"`
			Reasons     []xReason `xml:"reason"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers xIdentifiers `xml:"identifiers"`
	AuthResults struct {
		DKIM []xDKIM `xml:"dkim"`
		SPF  []xSPF  `xml:"spf"`
	} `xml:"auth_results"`
}

// ReadXML reads one aggregate report document.
//
// Accepted deviations, each unambiguous (the same ones parsedmarc accepts):
// values in any letter case and with surrounding white space ("Pass",
// "None", "example.com "); an empty <reason> (dropped); missing version,
// envelope_from, scope or selector (the old draft format of dmarc.org's
// wiki has none); an unclosed wrapper element around <feedback> (seen from
// one reporter, whose report sits inside an <xs:schema> start tag). An
// empty org_name is taken from the domain of <email>.
//
// Refused, with ErrMalformed and the place: XML that is not well-formed or
// not UTF-8 (US-ASCII and ISO-8859-1 declarations are read as such), a
// value outside its enumeration in policy_evaluated (those are what a
// report counts), a source_ip that is not an address, a count or date that
// is not a number, a missing report_id or policy domain.
func ReadXML(data []byte, lim *Limits) (*Report, error) {
	l := lim.withDefaults()
	if int64(len(data)) > l.MaxXML {
		return nil, fmt.Errorf("%w: %d bytes of XML, limit %d", ErrTooLarge, len(data), l.MaxXML)
	}
	fb, err := decodeFeedback(data)
	if err != nil {
		return nil, err
	}
	if len(fb.Records) > l.MaxRows {
		return nil, fmt.Errorf("%w: %d, limit %d", ErrTooManyRows, len(fb.Records), l.MaxRows)
	}
	return fb.report()
}

// decodeFeedback finds the one feedback element and decodes it.
func decodeFeedback(data []byte) (*inFeedback, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = charsetReader
	var fb *inFeedback
	depth := 0 // open wrapper elements around feedback
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if fb != nil && depth > 0 && isUnexpectedEOF(err) {
				break // an unclosed wrapper after a complete feedback
			}
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			l, _ := d.InputPos()
			return nil, fmt.Errorf("%w (line %d)", ErrForbidden, l)
		case xml.StartElement:
			if t.Name.Local != "feedback" {
				if fb != nil || depth >= 2 {
					return nil, fmt.Errorf("%w: unexpected element <%s>", ErrMalformed, t.Name.Local)
				}
				depth++
				continue
			}
			if fb != nil {
				return nil, fmt.Errorf("%w: more than one <feedback>", ErrMalformed)
			}
			fb = &inFeedback{}
			if err := d.DecodeElement(fb, &t); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			for _, a := range t.Attr {
				if a.Name.Local == "xmlns" && a.Name.Space == "" {
					fb.Xmlns = a.Value
				}
			}
			if t.Name.Space != "" {
				fb.Xmlns = t.Name.Space
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if fb == nil && depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		}
	}
	if fb == nil {
		return nil, fmt.Errorf("%w: no <feedback> element", ErrMalformed)
	}
	return fb, nil
}

func isUnexpectedEOF(err error) bool {
	var se *xml.SyntaxError
	return errors.As(err, &se) && se.Msg == "unexpected EOF"
}

// charsetReader reads the encodings real reports declare besides UTF-8.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "us-ascii", "ascii":
		return in, nil // a byte over 0x7f is then refused as invalid UTF-8
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1":
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(b))
		for _, c := range b {
			out = utf8.AppendRune(out, rune(c))
		}
		return bytes.NewReader(out), nil
	}
	return nil, fmt.Errorf("encoding %q not supported (UTF-8, US-ASCII, ISO-8859-1)", label)
}

// report checks and normalises the decoded document.
func (fb *inFeedback) report() (*Report, error) {
	bad := func(where, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, where, fmt.Sprintf(format, args...))
	}
	md, pp := fb.Metadata, fb.Policy
	r := &Report{
		ID: text(md.ReportID), OrgName: text(md.OrgName), Email: text(md.Email),
		ExtraContactInfo: text(md.Extra), Generator: text(md.Generator),
		Format: FormatRFC7489,
	}
	if fb.Xmlns == Namespace { // Google writes np without the namespace: the namespace decides
		r.Format = FormatRFC9990
	}
	if r.ID == "" {
		return nil, bad("report_metadata", "no report_id")
	}
	if r.OrgName == "" {
		if at := strings.LastIndexByte(r.Email, '@'); at >= 0 {
			r.OrgName = strings.ToLower(strings.Trim(r.Email[at+1:], "<> "))
		}
	}
	if r.OrgName == "" {
		return nil, bad("report_metadata", "neither org_name nor email")
	}
	begin, err1 := strconv.ParseInt(text(md.DateRange.Begin), 10, 64)
	end, err2 := strconv.ParseInt(text(md.DateRange.End), 10, 64)
	if err1 != nil || err2 != nil || begin < 0 || end < begin || end > 1<<40 {
		return nil, bad("date_range", "begin %q, end %q are not Unix times in order", md.DateRange.Begin, md.DateRange.End)
	}
	// The writer's End is exclusive and it writes End-1s (RFC 9990
	// §3.1.1.4 "end" is the last second); read it back the same way.
	r.Begin, r.End = time.Unix(begin, 0).UTC(), time.Unix(end+1, 0).UTC()

	p := PolicyPublished{Domain: domain(pp.Domain), DiscoveryMethod: low(pp.DiscoveryMethod),
		ADKIM: low(pp.ADKIM), ASPF: low(pp.ASPF), P: low(pp.P), SP: low(pp.SP), NP: low(pp.NP),
		Testing: low(pp.Testing), FO: text(pp.FO), Pct: -1}
	if _, err := identity.ASCII(p.Domain); err != nil {
		return nil, bad("policy_published", "domain: %v", err)
	}
	if s := text(pp.Pct); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100 {
			return nil, bad("policy_published", "pct %q is not 0-100", s)
		}
		p.Pct = n
	}
	for _, v := range []struct{ name, v string }{{"p", p.P}, {"sp", p.SP}, {"np", p.NP}} {
		if !slices.Contains([]string{"", "none", "quarantine", "reject"}, v.v) {
			return nil, bad("policy_published", "%s %q is not none, quarantine or reject", v.name, v.v)
		}
	}
	r.Policy = p

	r.Rows = make([]Row, 0, len(fb.Records))
	for i, rec := range fb.Records {
		where := "record " + strconv.Itoa(i+1)
		row := Row{
			Disposition: low(rec.Row.Policy.Disposition),
			DKIMAligned: low(rec.Row.Policy.DKIM), SPFAligned: low(rec.Row.Policy.SPF),
			HeaderFrom: domain(rec.Identifiers.HeaderFrom), EnvelopeFrom: domain(rec.Identifiers.EnvelopeFrom),
			EnvelopeTo: domain(rec.Identifiers.EnvelopeTo),
		}
		ip, err := netip.ParseAddr(text(rec.Row.SourceIP))
		if err != nil {
			return nil, bad(where, "source_ip %q is not an IP address", rec.Row.SourceIP)
		}
		row.SourceIP = ip.Unmap().String()
		n, err := strconv.ParseInt(text(rec.Row.Count), 10, 64)
		if err != nil || n < 0 || n > maxCount {
			return nil, bad(where, "count %q is not a number of messages", rec.Row.Count)
		}
		row.Count = int(n)
		// RFC 9990 adds "pass" (the message passed DMARC, no policy applied).
		if !slices.Contains([]string{"none", "quarantine", "reject", "pass"}, row.Disposition) {
			return nil, bad(where, "disposition %q is not none, pass, quarantine or reject", rec.Row.Policy.Disposition)
		}
		if !slices.Contains([]string{"pass", "fail"}, row.DKIMAligned) || !slices.Contains([]string{"pass", "fail"}, row.SPFAligned) {
			return nil, bad(where, "policy_evaluated dkim %q / spf %q are not pass or fail", rec.Row.Policy.DKIM, rec.Row.Policy.SPF)
		}
		for _, o := range rec.Row.Policy.Reasons {
			o := Override{Type: low(o.Type), Comment: text(o.Comment)}
			if o.Type == "" && o.Comment == "" {
				continue // an empty <reason>: nothing said
			}
			if o.Type == "" {
				o.Type = "other"
			}
			row.Overrides = append(row.Overrides, o)
		}
		for _, d := range rec.AuthResults.DKIM {
			row.DKIM = append(row.DKIM, DKIMResult{Domain: domain(d.Domain), Selector: text(d.Selector), Result: low(d.Result)})
		}
		for _, s := range rec.AuthResults.SPF {
			row.SPF = append(row.SPF, SPFResult{Domain: domain(s.Domain), Scope: low(s.Scope), Result: low(s.Result)})
		}
		r.Rows = append(r.Rows, row)
	}
	return r, nil
}

func text(s string) string { return strings.TrimSpace(s) }
func low(s string) string  { return strings.ToLower(strings.TrimSpace(s)) }

// domain normalises a domain as reported: its ASCII form (pkg/identity);
// a value that is not a domain name is kept trimmed and lower case, for
// display (identifiers are shown, not compared).
func domain(s string) string {
	t := low(s)
	if a, err := identity.ASCII(t); err == nil {
		return a
	}
	return strings.TrimSuffix(t, ".")
}
