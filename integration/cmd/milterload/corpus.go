package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// field is one header field as Postfix passes it with SMFIP_HDR_LEADSPC:
// the name without trailing blanks and everything after the colon, folds
// as bare "\n" (as Postfix 3.7 sends them; "From : x" arrives as "From").
type field struct {
	name string
	raw  string
}

// message is one corpus entry: its envelope and content.
type message struct {
	file       string
	clientIP   netip.Addr
	clientName string // "" when the client has no name: Postfix sends "[addr]"
	helo       string
	mailFrom   string // "" for the null sender
	rcpts      []string
	class      string // the generator's label for the case (informational)
	fields     []field
	body       []byte // CRLF line ends, as Postfix sends it
}

// clientKey groups messages that can share one SMTP connection.
func (m *message) clientKey() string {
	return m.clientIP.String() + " " + m.clientName + " " + m.helo
}

// loadCorpus reads DIR/index.tsv and the message files it names. Lines:
//
//	file <TAB> client_ip <TAB> client_name <TAB> helo <TAB> mail_from <TAB> rcpt[,rcpt...] [<TAB> class]
//
// "-" stands for an empty client name, "<>" for the null sender; lines
// starting with '#' are comments.
func loadCorpus(dir string) ([]*message, error) {
	f, err := os.Open(filepath.Join(dir, "index.tsv"))
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	defer f.Close()
	var msgs []*message
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) < 6 {
			return nil, fmt.Errorf("corpus: index.tsv line %d: want at least 6 tab-separated columns, got %d", line, len(cols))
		}
		ip, err := netip.ParseAddr(cols[1])
		if err != nil {
			return nil, fmt.Errorf("corpus: index.tsv line %d: client ip: %w", line, err)
		}
		m := &message{file: cols[0], clientIP: ip, clientName: cols[2], helo: cols[3], mailFrom: cols[4],
			rcpts: strings.Split(cols[5], ",")}
		if m.clientName == "-" {
			m.clientName = ""
		}
		if m.mailFrom == "<>" {
			m.mailFrom = ""
		}
		if len(cols) > 6 {
			m.class = cols[6]
		}
		data, err := os.ReadFile(filepath.Join(dir, cols[0]))
		if err != nil {
			return nil, fmt.Errorf("corpus: index.tsv line %d: %w", line, err)
		}
		if m.fields, m.body, err = parseMessage(data); err != nil {
			return nil, fmt.Errorf("corpus: %s: %w", cols[0], err)
		}
		msgs = append(msgs, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("corpus: index.tsv: %w", err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("corpus: %s/index.tsv lists no messages", dir)
	}
	return msgs, nil
}

// parseMessage splits an RFC 5322 message into header fields (as Postfix
// hands them to a milter) and a CRLF body. Bare LF line ends are turned
// into CRLF first, as Postfix's smtpd does.
func parseMessage(data []byte) ([]field, []byte, error) {
	if !bytes.Contains(data, []byte("\r\n")) {
		data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	}
	var fields []field
	rest := data
	for {
		if len(rest) == 0 {
			return fields, nil, nil
		}
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return fields, rest[2:], nil
		}
		// One field: its first line and any continuation lines.
		end := 0
		for {
			i := bytes.Index(rest[end:], []byte("\r\n"))
			if i < 0 {
				end = len(rest)
				break
			}
			end += i + 2
			if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
				break
			}
		}
		text := strings.TrimSuffix(string(rest[:end]), "\r\n")
		rest = rest[end:]
		name, value, ok := strings.Cut(text, ":")
		if !ok || strings.TrimRight(name, " \t") == "" {
			return nil, nil, fmt.Errorf("header line without a field name: %.40q", text)
		}
		fields = append(fields, field{name: strings.TrimRight(name, " \t"), raw: strings.ReplaceAll(value, "\r\n", "\n")})
	}
}
