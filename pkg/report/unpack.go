package report

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
)

// ReadFile reads the reports in one file as reporters send them: XML, XML
// compressed with gzip (RFC 9990 §3.5.2: .xml.gz), or a zip archive of XML
// files (what many reporters still send). The kind is told by the content,
// not the name. All or nothing: an error means no report is returned.
func ReadFile(data []byte, lim *Limits) ([]*Report, error) {
	l := lim.withDefaults()
	if int64(len(data)) > l.MaxInput {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), l.MaxInput)
	}
	budget := l.MaxXML
	return readPayload(data, &l, &budget)
}

// readPayload unpacks data (gzip, zip or plain XML) and reads its reports;
// budget is what may still be decompressed, shared by every payload of one
// input.
func readPayload(data []byte, l *Limits, budget *int64) ([]*Report, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		x, err := gunzip(data, budget)
		if err != nil {
			return nil, err
		}
		r, err := ReadXML(x, l)
		if err != nil {
			return nil, err
		}
		return []*Report{r}, nil
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return unzip(data, l, budget)
	}
	*budget -= int64(len(data))
	if *budget < 0 {
		return nil, fmt.Errorf("%w: more than %d bytes of XML", ErrTooLarge, l.MaxXML)
	}
	r, err := ReadXML(data, l)
	if err != nil {
		return nil, err
	}
	return []*Report{r}, nil
}

// readBounded reads r up to *budget bytes; more is ErrTooLarge. The budget
// is checked while reading, so a bomb costs at most budget bytes of memory.
func readBounded(r io.Reader, budget *int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, *budget+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > *budget {
		return nil, fmt.Errorf("%w: decompresses to more than the %d bytes left of the limit", ErrTooLarge, *budget)
	}
	*budget -= int64(len(b))
	return b, nil
}

func gunzip(data []byte, budget *int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	b, err := readBounded(zr, budget)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	return b, nil
}

// unzip reads every file of a zip archive as XML (or gzipped XML); one
// level only: a zip in a zip is refused.
func unzip(data []byte, l *Limits, budget *int64) ([]*Report, error) {
	// archive/zip reads the whole central directory first, a File for
	// each entry: refuse an archive that declares more entries than a
	// report can need before it does (a directory of a million empty
	// entries fits in a few MiB).
	if n, ok := zipEntries(data); !ok || n > 4*l.MaxReports {
		return nil, fmt.Errorf("%w: zip with %d entries (or no readable directory), limit %d", ErrTooLarge, n, 4*l.MaxReports)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: zip: %v", ErrMalformed, err)
	}
	var out []*Report
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		if len(out) >= l.MaxReports {
			return nil, fmt.Errorf("%w: more than %d reports in one zip", ErrTooLarge, l.MaxReports)
		}
		// The declared size may lie; readBounded checks what comes out.
		if f.UncompressedSize64 > uint64(*budget) {
			return nil, fmt.Errorf("%w: zip member %q declares %d bytes", ErrTooLarge, f.Name, f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: zip member %q: %v", ErrMalformed, f.Name, err)
		}
		b, err := readBounded(rc, budget)
		rc.Close()
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: zip member %q: %v", ErrMalformed, f.Name, err)
		}
		if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			if b, err = gunzip(b, budget); err != nil {
				return nil, err
			}
		}
		r, err := ReadXML(b, l)
		if err != nil {
			return nil, fmt.Errorf("zip member %q: %w", f.Name, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty zip", ErrNoReport)
	}
	return out, nil
}

// zipEntries reads the total number of entries from the end of central
// directory record (APPNOTE.TXT 4.3.16), found in the last 64 KiB + 22
// bytes; ok is false without one. A Zip64 archive (0xFFFF entries) gives
// 0xFFFF, more than any report needs.
func zipEntries(data []byte) (n int, ok bool) {
	from := max(0, len(data)-(65535+22))
	i := bytes.LastIndex(data[from:], []byte("PK\x05\x06"))
	if i < 0 || from+i+12 > len(data) {
		return 0, false
	}
	p := data[from+i:]
	return int(p[10]) | int(p[11])<<8, true
}

// Mail is a report mail as read by ReadMail.
type Mail struct {
	From    string // the From address, lower case ("" when unreadable)
	Subject string
	// SubjectDomain, Submitter and SubjectID are the parts of an RFC 9990
	// §3.5.2 Subject ("Report Domain: … Submitter: … Report-ID: …"), empty
	// when the Subject is not in that form.
	SubjectDomain, Submitter, SubjectID string
	Reports                             []*Report
}

// The Subject of RFC 9990 §3.5.2 (and RFC 7489 §7.2.1.1), read without
// regard to case: reporters write "Report domain:" too.
var subjectRE = regexp.MustCompile(`(?i)report\s+domain:\s*(\S+)\s+submitter:\s*(\S+)\s+report-id:\s*<?([^\s>]+)>?`)

// MaxMIMEDepth and MaxMIMEParts bound the walk through a report mail.
const (
	MaxMIMEDepth = 8
	MaxMIMEParts = 64
)

// ReadMail reads a report mail: every part that is a report (by content:
// gzip, zip or XML; whatever its Content-Type says, as reporters label
// them application/gzip, application/x-gzip, application/zip,
// application/x-zip-compressed, application/octet-stream, text/xml ...),
// in base64, quoted-printable or plain. Text parts that are not XML (the
// human-readable note) are skipped. All or nothing: an error (a report
// part that cannot be read, a limit) returns no report.
func ReadMail(r io.Reader, lim *Limits) (*Mail, error) {
	l := lim.withDefaults()
	raw, err := io.ReadAll(io.LimitReader(r, l.MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("report: read mail: %w", err)
	}
	if int64(len(raw)) > l.MaxInput {
		return nil, fmt.Errorf("%w: mail over %d bytes", ErrTooLarge, l.MaxInput)
	}
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("%w: mail header: %v", ErrMalformed, err)
	}
	m := &Mail{Subject: decodeHeader(msg.Header.Get("Subject"))}
	if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
		m.From = strings.ToLower(a.Address)
	}
	if sm := subjectRE.FindStringSubmatch(m.Subject); sm != nil {
		m.SubjectDomain, m.Submitter, m.SubjectID = domain(sm[1]), domain(sm[2]), sm[3]
	}
	w := &mimeWalk{l: &l, budget: l.MaxXML}
	if err := w.part(msg.Header, msg.Body, 0); err != nil {
		return nil, err
	}
	if len(w.reports) == 0 {
		return nil, ErrNoReport
	}
	m.Reports = w.reports
	return m, nil
}

func decodeHeader(s string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

type header interface{ Get(string) string }

type mimeWalk struct {
	l       *Limits
	budget  int64
	parts   int
	reports []*Report
}

func (w *mimeWalk) part(h header, body io.Reader, depth int) error {
	w.parts++
	if w.parts > MaxMIMEParts || depth > MaxMIMEDepth {
		return fmt.Errorf("%w: more than %d MIME parts or %d levels", ErrTooLarge, MaxMIMEParts, MaxMIMEDepth)
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ct = "text/plain" // RFC 2045 §5.2: the default for a missing or unreadable type
	}
	if strings.HasPrefix(ct, "multipart/") {
		if params["boundary"] == "" {
			return fmt.Errorf("%w: %s without boundary", ErrMalformed, ct)
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%w: MIME: %v", ErrMalformed, err)
			}
			if err := w.part(p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}
	if ct == "message/rfc822" {
		msg, err := mail.ReadMessage(bufio.NewReader(body))
		if err != nil {
			return fmt.Errorf("%w: message/rfc822: %v", ErrMalformed, err)
		}
		return w.part(msg.Header, msg.Body, depth+1)
	}
	var dec io.Reader = body
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "base64":
		dec = base64.NewDecoder(base64.StdEncoding, &base64Clean{r: body})
	case "quoted-printable":
		dec = quotedprintable.NewReader(body)
	}
	// The encoded part is at most MaxInput; its decoded form is smaller.
	b, err := io.ReadAll(io.LimitReader(dec, w.l.MaxInput+1))
	if err != nil {
		return fmt.Errorf("%w: %s part: %v", ErrMalformed, ct, err)
	}
	if !looksLikeReport(b) {
		return nil // the human-readable note, a logo ...
	}
	if len(w.reports) >= w.l.MaxReports {
		return fmt.Errorf("%w: more than %d reports in one mail", ErrTooLarge, w.l.MaxReports)
	}
	rs, err := readPayload(b, w.l, &w.budget)
	if err != nil {
		name := params["name"]
		if name == "" {
			name = ct
		}
		return fmt.Errorf("attachment %q: %w", name, err)
	}
	w.reports = append(w.reports, rs...)
	if len(w.reports) > w.l.MaxReports {
		return fmt.Errorf("%w: more than %d reports in one mail", ErrTooLarge, w.l.MaxReports)
	}
	return nil
}

// looksLikeReport tells a report payload by its first bytes: gzip, zip, or
// XML (after a byte order mark and white space).
func looksLikeReport(b []byte) bool {
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || bytes.HasPrefix(b, []byte("PK\x03\x04")) {
		return true
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return bytes.HasPrefix(b, []byte("<?xml")) || bytes.HasPrefix(b, []byte("<feedback"))
}

// base64Clean drops what is not base64 alphabet or padding (line breaks,
// spaces, stray characters some mailers add); the standard decoder skips
// only CR and LF.
type base64Clean struct{ r io.Reader }

func (c *base64Clean) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
