// Package reportmail delivers DMARC aggregate reports: it turns the
// store's pending records into reports (pkg/report), checks each rua
// destination, mails the gzipped XML through the configured SMTP relay
// (RFC 9990 §3.5) and marks the records reported once the relay took it.
package reportmail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// Compose builds the report mail (RFC 9990 §3.5.2): an RFC 5322 message,
// MIME multipart/mixed, with a short text part and the gzipped report as an
// application/gzip attachment named as §3.5.2 says. The Message-ID is
// derived from the Report-ID (allowed by §3.5.2), so a re-send carries the
// same one; the boundary is derived from it too.
func Compose(r *report.Report, from, to string, gz []byte, date time.Time) []byte {
	var b bytes.Buffer
	h := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	h("From", from)
	h("To", to)
	h("Date", date.Format(time.RFC1123Z))
	b.WriteString(foldSubject(r.Subject()))
	h("Message-ID", "<"+r.ID+"@"+r.Receiver+">")
	h("MIME-Version", "1.0")
	// RFC 3834: automatic mail; vacation responders must not answer it.
	h("Auto-Submitted", "auto-generated")
	boundary := "dmarc-report-" + r.ID
	h("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	b.WriteString("\r\n")

	mw := multipart.NewWriter(&b)
	_ = mw.SetBoundary(boundary) // letters, digits, "-": always valid
	text := textproto.MIMEHeader{}
	text.Set("Content-Type", "text/plain; charset=us-ascii")
	text.Set("Content-Transfer-Encoding", "7bit")
	pw, _ := mw.CreatePart(text) // writes to a bytes.Buffer: no error
	fmt.Fprintf(pw, "This is a DMARC aggregate report (RFC 9990) from %s\r\nfor %s, %s to %s UTC, %d messages.\r\n",
		r.Receiver, r.Policy.Domain, r.Begin.UTC().Format("2006-01-02 15:04"), r.End.UTC().Format("2006-01-02 15:04"), r.Messages())

	name := r.Filename()
	att := textproto.MIMEHeader{}
	att.Set("Content-Type", mime.FormatMediaType("application/gzip", map[string]string{"name": name}))
	att.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	att.Set("Content-Transfer-Encoding", "base64")
	aw, _ := mw.CreatePart(att)
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		aw.Write([]byte(enc[:76] + "\r\n"))
		enc = enc[76:]
	}
	aw.Write([]byte(enc + "\r\n"))
	_ = mw.Close()
	return b.Bytes()
}

// foldSubject writes the Subject field, folded before "Submitter:" and
// "Report-ID:" when it is longer than 78 characters (the dmarc-subject
// ABNF of RFC 9990 §3.5.2 separates its parts with FWS).
func foldSubject(s string) string {
	line := "Subject: " + s
	if len(line) <= 78 {
		return line + "\r\n"
	}
	line = strings.Replace(line, " Submitter: ", "\r\n Submitter: ", 1)
	line = strings.Replace(line, " Report-ID: ", "\r\n Report-ID: ", 1)
	return line + "\r\n"
}
