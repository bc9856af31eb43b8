package report

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Format selects the XML dialect of a report.
type Format string

const (
	// FormatRFC9990 is the RFC 9990 format (namespace
	// urn:ietf:params:xml:ns:dmarc-2.0): generator, discovery_method, np,
	// testing, disposition "pass", DKIM selector. The default.
	FormatRFC9990 Format = "rfc9990"
	// FormatRFC7489 is the RFC 7489 Appendix C format, without a namespace
	// as real-world RFC 7489 reports are: pct, sp and fo always present,
	// one spf result at least, no "pass" disposition.
	FormatRFC7489 Format = "rfc7489"
)

// Namespace is the RFC 9990 XML namespace (RFC 9990 §3.1.1.1, §6.1).
const Namespace = "urn:ietf:params:xml:ns:dmarc-2.0"

type xFeedback struct {
	XMLName  xml.Name    `xml:"feedback"`
	Xmlns    string      `xml:"xmlns,attr,omitempty"`
	Version  string      `xml:"version"`
	Metadata xMetadata   `xml:"report_metadata"`
	Policy   xPolicy     `xml:"policy_published"`
	Records  []xRecordEl `xml:"record"`
}

type xMetadata struct {
	OrgName   string     `xml:"org_name"`
	Email     string     `xml:"email"`
	Extra     string     `xml:"extra_contact_info,omitempty"`
	ReportID  string     `xml:"report_id"`
	DateRange xDateRange `xml:"date_range"`
	Generator string     `xml:"generator,omitempty"`
}

type xDateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

type xPolicy struct {
	Domain          string `xml:"domain"`
	DiscoveryMethod string `xml:"discovery_method,omitempty"`
	ADKIM           string `xml:"adkim,omitempty"`
	ASPF            string `xml:"aspf,omitempty"`
	P               string `xml:"p"`
	SP              string `xml:"sp,omitempty"`
	NP              string `xml:"np,omitempty"`
	Pct             *int   `xml:"pct,omitempty"`
	FO              string `xml:"fo,omitempty"`
	Testing         string `xml:"testing,omitempty"`
}

type xRecordEl struct {
	Row         xRow         `xml:"row"`
	Identifiers xIdentifiers `xml:"identifiers"`
	AuthResults xAuthResults `xml:"auth_results"`
}

type xRow struct {
	SourceIP string     `xml:"source_ip"`
	Count    int        `xml:"count"`
	Policy   xEvaluated `xml:"policy_evaluated"`
}

type xEvaluated struct {
	Disposition string    `xml:"disposition"`
	DKIM        string    `xml:"dkim"`
	SPF         string    `xml:"spf"`
	Reasons     []xReason `xml:"reason"`
}

type xReason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

type xIdentifiers struct {
	EnvelopeTo   string `xml:"envelope_to,omitempty"`
	EnvelopeFrom string `xml:"envelope_from"`
	HeaderFrom   string `xml:"header_from"`
}

type xAuthResults struct {
	DKIM []xDKIM `xml:"dkim"`
	SPF  []xSPF  `xml:"spf"`
}

type xDKIM struct {
	Domain   string `xml:"domain"`
	Selector string `xml:"selector"`
	Result   string `xml:"result"`
}

type xSPF struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope"`
	Result string `xml:"result"`
}

// XML renders the report in format f with an XML declaration.
func (r *Report) XML(f Format) ([]byte, error) {
	var fb xFeedback
	switch f {
	case FormatRFC9990, "":
		fb = r.rfc9990()
	case FormatRFC7489:
		fb = r.rfc7489()
	default:
		return nil, fmt.Errorf("report: unknown format %q", f)
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(fb); err != nil {
		return nil, fmt.Errorf("report: encode XML: %w", err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// Gzip renders the report in format f and compresses it (RFC 9990 §3.5.2:
// the XML SHOULD be gzipped, media type application/gzip).
func (r *Report) Gzip(f Format) ([]byte, error) {
	x, err := r.XML(f)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Name = strings.TrimSuffix(r.Filename(), ".gz")
	zw.ModTime = r.End // deterministic bytes for a re-send
	if _, err := zw.Write(x); err != nil {
		return nil, fmt.Errorf("report: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("report: gzip: %w", err)
	}
	return b.Bytes(), nil
}

func (r *Report) common() xFeedback {
	return xFeedback{
		Version: "1.0",
		Metadata: xMetadata{OrgName: r.OrgName, Email: r.Email, Extra: r.ExtraContactInfo, ReportID: r.ID,
			DateRange: xDateRange{Begin: r.Begin.Unix(), End: r.lastSecond()}},
		Policy: xPolicy{Domain: r.Policy.Domain, ADKIM: r.Policy.ADKIM, ASPF: r.Policy.ASPF, P: r.Policy.P,
			SP: r.Policy.SP, FO: r.Policy.FO},
	}
}

// rfc9990 fills the RFC 9990 Appendix A schema.
func (r *Report) rfc9990() xFeedback {
	fb := r.common()
	fb.Xmlns = Namespace
	fb.Metadata.Generator = r.Generator
	fb.Policy.DiscoveryMethod = r.Policy.DiscoveryMethod
	fb.Policy.NP = r.Policy.NP
	fb.Policy.Testing = r.Policy.Testing
	for _, row := range r.Rows {
		rec := xRecordEl{
			Row: xRow{SourceIP: row.SourceIP, Count: row.Count,
				Policy: xEvaluated{Disposition: row.Disposition, DKIM: row.DKIMAligned, SPF: row.SPFAligned}},
			// envelope_from "MAY be existing but empty" for the null
			// reverse-path (RFC 9990 §3.1.1.10): we always write it.
			Identifiers: xIdentifiers{HeaderFrom: row.HeaderFrom, EnvelopeFrom: row.EnvelopeFrom, EnvelopeTo: row.EnvelopeTo},
		}
		for _, o := range row.Overrides {
			t, c := o.Type, o.Comment
			switch t {
			case "local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder":
			default: // RFC 7489's forwarded and sampled_out are gone (RFC 9990 Appendix C)
				t, c = "other", joinComment(t, c)
			}
			rec.Row.Policy.Reasons = append(rec.Row.Policy.Reasons, xReason{Type: t, Comment: c})
		}
		for _, d := range row.DKIM {
			rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, xDKIM(d))
		}
		for _, s := range row.SPF {
			rec.AuthResults.SPF = append(rec.AuthResults.SPF, xSPF(s))
		}
		fb.Records = append(fb.Records, rec)
	}
	return fb
}

// rfc7489 fills the RFC 7489 Appendix C schema, whose constraints differ:
// sp, pct and fo are required, there is no "pass" disposition, override
// types are the old set, source_ip is IPv4 or uncompressed IPv6, and at
// least one spf result is required.
func (r *Report) rfc7489() xFeedback {
	fb := r.common()
	if fb.Policy.SP == "" {
		fb.Policy.SP = fb.Policy.P // RFC 7489 §6.3: sp defaults to p
	}
	pct := r.Policy.Pct
	if pct < 0 || pct > 100 {
		pct = 100
	}
	fb.Policy.Pct = &pct
	for _, row := range r.Rows {
		disp := row.Disposition
		if disp == "pass" {
			disp = "none"
		}
		rec := xRecordEl{
			Row: xRow{SourceIP: fullIP(row.SourceIP), Count: row.Count,
				Policy: xEvaluated{Disposition: disp, DKIM: row.DKIMAligned, SPF: row.SPFAligned}},
			Identifiers: xIdentifiers{HeaderFrom: row.HeaderFrom, EnvelopeFrom: row.EnvelopeFrom, EnvelopeTo: row.EnvelopeTo},
		}
		for _, o := range row.Overrides {
			t, c := o.Type, o.Comment
			switch t {
			case "forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "other":
			default:
				t, c = "other", joinComment(t, c)
			}
			rec.Row.Policy.Reasons = append(rec.Row.Policy.Reasons, xReason{Type: t, Comment: c})
		}
		for _, d := range row.DKIM {
			rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, xDKIM(d))
		}
		for _, s := range row.SPF {
			if s.Result == "policy" {
				s.Result = "permerror" // not in the RFC 7489 enumeration
			}
			rec.AuthResults.SPF = append(rec.AuthResults.SPF, xSPF(s))
		}
		if len(rec.AuthResults.SPF) == 0 {
			rec.AuthResults.SPF = []xSPF{{Domain: row.EnvelopeFrom, Scope: "mfrom", Result: "none"}}
		}
		fb.Records = append(fb.Records, rec)
	}
	return fb
}

func joinComment(t, c string) string {
	if c == "" {
		return t
	}
	return t + ": " + c
}

// fullIP writes IPv6 addresses with all eight groups: the RFC 7489 schema's
// pattern rejects the compressed form.
func fullIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return s
	}
	b := a.As16()
	parts := make([]string, 8)
	for i := range parts {
		parts[i] = strconv.FormatUint(uint64(b[2*i])<<8|uint64(b[2*i+1]), 16)
	}
	return strings.Join(parts, ":")
}
