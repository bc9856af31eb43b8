// Package incomingtest makes the aggregate reports and report mails the
// tests of the incoming-report path send (milter, Postfix, import,
// dashboard).
package incomingtest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"strings"
)

// Row is one record of a made report.
type Row struct {
	IP, HeaderFrom  string
	Count           int
	DKIM, SPF       string // aligned: pass or fail
	Disposition     string // none, quarantine, reject
	DKIMRes, SPFRes string // auth_results; "" means as aligned
}

// XML is an RFC 7489 report from org about dom with rows, for the UTC day
// starting at begin (Unix seconds).
func XML(org, id, dom string, begin int64, rows ...Row) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<feedback><report_metadata><org_name>%s</org_name><email>noreply-dmarc@%s</email><report_id>%s</report_id>
<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>
<policy_published><domain>%s</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
`, org, org, id, begin, begin+86399, dom)
	for _, r := range rows {
		hf, dr, sr := r.HeaderFrom, r.DKIMRes, r.SPFRes
		if hf == "" {
			hf = dom
		}
		if dr == "" {
			dr = r.DKIM
		}
		if sr == "" {
			sr = r.SPF
		}
		disp := r.Disposition
		if disp == "" {
			disp = "none"
		}
		fmt.Fprintf(&b, `<record><row><source_ip>%s</source_ip><count>%d</count><policy_evaluated><disposition>%s</disposition>
<dkim>%s</dkim><spf>%s</spf></policy_evaluated></row><identifiers><header_from>%s</header_from></identifiers>
<auth_results><dkim><domain>%s</domain><selector>s1</selector><result>%s</result></dkim><spf><domain>%s</domain><scope>mfrom</scope><result>%s</result></spf></auth_results></record>
`, r.IP, r.Count, disp, r.DKIM, r.SPF, hf, hf, dr, hf, sr)
	}
	b.WriteString("</feedback>\n")
	return []byte(b.String())
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b) //nolint:errcheck // a bytes.Buffer
	w.Close()
	return z.Bytes()
}

// Mail is a report mail as Google sends one: multipart/mixed, a text part,
// the gzipped report in base64 with Content-Type ct, the RFC 9990 §3.5.2
// Subject; lines end in CRLF.
func Mail(org, id, dom, rcpt, ct string, xml []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(Gzip(xml))
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return []byte("From: noreply-dmarc@" + org + "\r\nTo: " + rcpt + "\r\nSubject: Report Domain: " + dom +
		" Submitter: " + org + " Report-ID: <" + id + ">\r\nMessage-ID: <" + id + "@" + org + ">\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n" +
		"--zz\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n--zz\r\nContent-Type: " + ct + "; name=\"" +
		org + "!" + dom + "!" + id + ".xml.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n--zz--\r\n")
}

// SplitMail cuts a mail into header fields (name, value without the
// leading space) and body, as an MTA hands them to a milter; folded
// fields keep their folds.
func SplitMail(m []byte) (fields [][2]string, body []byte) {
	head, body, _ := bytes.Cut(m, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n") {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(fields) > 0 {
			fields[len(fields)-1][1] += "\r\n" + l
			continue
		}
		n, v, _ := strings.Cut(l, ":")
		fields = append(fields, [2]string{n, strings.TrimPrefix(v, " ")})
	}
	return fields, body
}
