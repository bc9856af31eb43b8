package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// authservID is the authserv-id the test config gives the milter.
const authservID = "mx.rcpt.test"

var msgCounter atomic.Int64

// newID returns a run-unique message tag built from a readable name.
func newID(name string) string {
	clean := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(name, "-")
	return fmt.Sprintf("%s.%d.%d", strings.Trim(clean, "-"), os.Getpid(), msgCounter.Add(1))
}

// message builds a small RFC 5322 message with CRLF line ends. It carries
// X-Test-Id: id (the harness finds the delivered copy by it) and any extra
// raw header lines, placed before the standard ones.
func message(id, from string, extra ...string) []byte {
	var b strings.Builder
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("X-Test-Id: " + id + "\r\n")
	b.WriteString("From: " + from + "\r\n")
	b.WriteString("To: rcpt@rcpt.test\r\n")
	b.WriteString("Subject: test " + id + "\r\n")
	b.WriteString("Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n")
	b.WriteString("Message-ID: <" + id + "@harness.test>\r\n")
	b.WriteString("\r\n")
	b.WriteString("Body of " + id + ".\r\n")
	return []byte(b.String())
}

// withTestID prepends an X-Test-Id header to a (signed) message; DKIM does
// not cover it.
func withTestID(id string, msg []byte) []byte {
	return append([]byte("X-Test-Id: "+id+"\r\n"), msg...)
}

// field is one header field as stored: Value is everything after the colon,
// continuation lines joined with "\n".
type field struct {
	Name, Value string
}

// delivered is one message file from the Maildir.
type delivered struct {
	Path   string
	Raw    string
	Header []field
	Body   string
}

// waitDelivered polls the Maildir until a message with X-Test-Id: id lands.
func (pf *postfix) waitDelivered(id string) (*delivered, error) {
	needle := "\nX-Test-Id: " + id + "\n"
	dir := filepath.Join(pf.maildir, "new")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			if strings.Contains(string(b), needle) {
				d := parseMessage(string(b))
				d.Path = p
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("message %s not delivered within 20s; maillog:\n%s", id, pf.logTail(3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseMessage splits a stored message (LF or CRLF line ends) into fields.
func parseMessage(raw string) *delivered {
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	d := &delivered{Raw: raw}
	head, body, _ := strings.Cut(raw, "\n\n")
	d.Body = body
	for _, line := range strings.Split(head, "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(d.Header) > 0 {
			d.Header[len(d.Header)-1].Value += "\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		d.Header = append(d.Header, field{Name: name, Value: value})
	}
	return d
}

// get returns the values of every field called name, in order.
func (d *delivered) get(name string) []string {
	var vs []string
	for _, f := range d.Header {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// deliveryHeaders are the fields virtual(8) prepends at delivery; they are
// above whatever was in the queue file.
var deliveryHeaders = map[string]bool{"return-path": true, "x-original-to": true, "delivered-to": true}

// topField is the first field of the message as queued (after virtual(8)'s
// delivery fields).
func (d *delivered) topField() field {
	for _, f := range d.Header {
		if !deliveryHeaders[strings.ToLower(f.Name)] {
			return f
		}
	}
	return field{}
}

// arResult is one resinfo of an Authentication-Results field (RFC 8601 §2.2).
type arResult struct {
	Method string // "spf", "dkim", "dmarc", ...
	Result string // "pass", "fail", ...
	Props  map[string]string
}

// authResults is one parsed Authentication-Results field.
type authResults struct {
	ServID  string
	Results []arResult
	Raw     string
}

// ours returns the parsed A-R fields of d whose authserv-id is ours.
func (d *delivered) ours() ([]authResults, error) {
	var out []authResults
	for _, v := range d.get("Authentication-Results") {
		ar, err := parseAR(v)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(ar.ServID, authservID) {
			out = append(out, ar)
		}
	}
	return out, nil
}

// stripComments removes RFC 5322 comments (nested parentheses) outside
// quoted strings and unfolds the value.
func stripComments(s string) string {
	var b strings.Builder
	depth, quoted, escaped := 0, false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case r == '\\' && (quoted || depth > 0):
			escaped = true
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case quoted:
			if r == '"' {
				quoted = false
			}
		case r == '"' && depth == 0:
			quoted = true
		case r == '(':
			depth++
			continue
		case r == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			if r == '\n' || r == '\r' || r == '\t' {
				r = ' '
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

var spaceAroundEq = regexp.MustCompile(`\s*=\s*`)

// parseAR parses an Authentication-Results value leniently enough for
// assertions: comments dropped, resinfos split at ';' outside quotes.
func parseAR(value string) (authResults, error) {
	ar := authResults{Raw: value}
	s := spaceAroundEq.ReplaceAllString(stripComments(value), "=")
	var parts []string
	quoted, start := false, 0
	for i, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ';' && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	id := strings.Fields(parts[0])
	if len(id) == 0 {
		return ar, fmt.Errorf("A-R without authserv-id: %q", value)
	}
	ar.ServID = id[0]
	for _, p := range parts[1:] {
		toks := strings.Fields(p)
		if len(toks) == 0 || (len(toks) == 1 && toks[0] == "none") {
			continue
		}
		method, result, ok := strings.Cut(toks[0], "=")
		if !ok {
			return ar, fmt.Errorf("A-R resinfo %q: no method=result in %q", p, value)
		}
		method, _, _ = strings.Cut(method, "/") // method version
		res := arResult{Method: strings.ToLower(method), Result: strings.ToLower(result), Props: map[string]string{}}
		for _, t := range toks[1:] {
			k, v, _ := strings.Cut(t, "=")
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			res.Props[strings.ToLower(k)] = v
		}
		ar.Results = append(ar.Results, res)
	}
	return ar, nil
}

// find returns the results of method; with prop non-empty only those that
// carry that property (e.g. "smtp.mailfrom").
func (ar authResults) find(method, prop string) []arResult {
	var out []arResult
	for _, r := range ar.Results {
		if r.Method != method {
			continue
		}
		if _, ok := r.Props[prop]; prop != "" && !ok {
			continue
		}
		out = append(out, r)
	}
	return out
}

// errNoAR is returned when a message has none of our A-R fields.
var errNoAR = errors.New("no Authentication-Results with our authserv-id")

// ourAR returns the single A-R field with our authserv-id, checking that it
// is the top field of the queued message (RFC 8601 §5; InsertHeader(0)).
func (d *delivered) ourAR() (authResults, error) {
	ars, err := d.ours()
	if err != nil {
		return authResults{}, err
	}
	switch len(ars) {
	case 0:
		return authResults{}, errNoAR
	case 1:
	default:
		return authResults{}, fmt.Errorf("%d A-R fields with our authserv-id, want 1:\n%s", len(ars), d.headerText())
	}
	top := d.topField()
	if !strings.EqualFold(top.Name, "Authentication-Results") || top.Value != ars[0].Raw {
		return authResults{}, fmt.Errorf("our A-R is not the top field (top is %s):\n%s", top.Name, d.headerText())
	}
	return ars[0], nil
}

func (d *delivered) headerText() string {
	head, _, _ := strings.Cut(d.Raw, "\n\n")
	return head
}
