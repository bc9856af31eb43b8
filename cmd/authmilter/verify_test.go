package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/dnstest"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestVerifyGolden")

// verifyDNS starts the fixtures' DNS and writes a configuration that uses it.
func verifyDNS(t *testing.T, extra string) (*dnstest.Server, string) {
	t.Helper()
	var zone strings.Builder
	for _, f := range []string{"zone.txt", "keys.zone", "arc.zone"} {
		b, err := os.ReadFile(filepath.Join("testdata", "verify", f))
		if err != nil {
			t.Fatal(err)
		}
		zone.Write(b)
		zone.WriteByte('\n')
	}
	d := dnstest.New(t, zone.String())
	cfg := filepath.Join(t.TempDir(), "authmilter.toml")
	text := fmt.Sprintf("authserv_id = \"mx.test\"\n%s\n[dns]\nservers = [%q]\ntimeout = \"1s\"\nattempts = 1\n", extra, d.Addr())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return d, cfg
}

func TestVerifyGolden(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		args   []string
		config string // TOML lines before [dns]
		setup  func(*dnstest.Server)
		want   []string // facts each text output must state, besides the golden
	}{
		{name: "pass", file: "pass.eml",
			args:   []string{"-ip", "192.0.2.10", "-helo", "mail.example.org", "-mail-from", "alice@example.org"},
			config: "[spf]\nreceived_spf_header = true",
			want: []string{"Disposition: accept", "smtp.mailfrom=alice@example.org;", "dkim=pass (2048-bit key)",
				"dmarc=pass", "Received-SPF: pass", "reason: matched ip", "DNS names consulted: example.org, mail.example.org",
				"discovery (treewalk): _dmarc.example.org", "header.d=example.org: dkim=pass, aligned with example.org"}},
		{name: "reject", file: "reject.eml",
			args: []string{"--ip", "203.0.113.5", "--helo", "evil.test", "--mail-from", "service@bank.example"},
			want: []string{"Disposition: reject (550 5.7.1 Email rejected per DMARC policy for bank.example)",
				`skipped the mbox "From " line`, "and remove 1 Authentication-Results", "spf=fail",
				"DNS names consulted: _spf.bank.example, bank.example, evil.test, mx1.bank.example",
				"#1 fail: d=evil.test", "body hash", "policy: published reject, applied reject",
				"smtp.mailfrom domain bank.example: spf=fail, does not count"}},
		{name: "walk", file: "walk.eml",
			args: []string{"-ip", "198.18.0.7", "-helo", "relay.other.test"},
			want: []string{"envelope sender taken from the Return-Path field", "MAIL FROM <>", "identity postmaster@relay.other.test",
				"Disposition: quarantine", "ignored (several DMARC records): news.example.net",
				"policy domain example.net, organizational domain example.net", "policy: published quarantine",
				"s=gone", "_dmarc.a.b.news.example.net, _dmarc.b.news.example.net, _dmarc.news.example.net, _dmarc.example.net",
				"not aligned with a.b.news.example.net"}},
		// RFC 9989 §5.3.4: the SPF identifier on a subdomain is checked for
		// relaxed alignment although DKIM already aligned exactly.
		{name: "relaxed", file: "pass.eml",
			args: []string{"-ip", "192.0.2.10", "-helo", "mail.example.org", "-mail-from", "bounce@bounce.example.org"},
			want: []string{"dmarc=pass", "smtp.mailfrom domain bounce.example.org: spf=pass, aligned with example.org (relaxed: same organizational domain)",
				"header.d=example.org: dkim=pass, aligned with example.org", "organizational domain example.org",
				"SPF aligned (smtp.mailfrom=bounce.example.org, relaxed), DKIM aligned (header.d=example.org)"}},
		// RFC 9989 Appendix A.6: pct=0 without t is t=y.
		{name: "pct0", file: "pct0.eml",
			args: []string{"-ip", "203.0.113.9", "-helo", "mail.other.test", "-mail-from", "news@pct0.example"},
			want: []string{"Disposition: quarantine", "p=REJECT applied=QUARANTINE, pct=0 as t=y",
				"policy: published reject, applied quarantine (pct=0 without t: read as t=y, one level lower)",
				"pct=0 without t read as t=y: policy stepped down"}},
		{name: "arc", file: "arc-list.eml",
			args:   []string{"-ip", "198.51.100.20", "-helo", "mail.lists.example", "-mail-from", "list-bounces@lists.example"},
			config: "[arc]\ntrusted_sealers = [\"lists.example\"]",
			want: []string{"Disposition: accept", "override: local_policy", "arc=pass (as[1].d=lists.example as[1].s=s2)",
				"ARC: pass (1 set(s), oldest-pass 0, first hop 198.51.100.20)",
				"i=1 cv=none sealed by lists.example (s=s2, rsa-sha256): verified [trusted sealer]",
				"lists.example recorded: spf=pass smtp.mailfrom=author.example; dkim=pass header.d=author.example; dmarc=pass header.from=author.example"}},
		{name: "temperror", file: "pass.eml",
			args:   []string{"-ip", "192.0.2.10", "-helo", "mail.example.org", "-mail-from", "alice@example.org"},
			config: "[dmarc]\ntemperror = \"tempfail\"",
			setup:  func(d *dnstest.Server) { d.Fail("_dmarc.example.org.", dns.RcodeServerFailure) },
			want:   []string{"Disposition: tempfail (451 4.7.5", "dmarc=temperror", "_dmarc.example.org -> temperror (server misbehaving)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join("testdata", "verify", tt.file)
			for _, format := range []string{"txt", "json"} {
				d, cfg := verifyDNS(t, tt.config)
				if tt.setup != nil {
					tt.setup(d)
				}
				args := append([]string{"verify", "-config", cfg}, tt.args...)
				if format == "json" {
					args = append(args, "-json")
				}
				var out, errb bytes.Buffer
				if code := run(append(args, file), &out, &errb); code != 0 {
					t.Fatalf("%s: exit %d: %s", format, code, errb.String())
				}
				if format == "json" && !json.Valid(out.Bytes()) {
					t.Fatalf("invalid JSON:\n%s", out.String())
				}
				if format == "txt" {
					for _, w := range tt.want {
						if !strings.Contains(out.String(), w) {
							t.Errorf("text output lacks %q:\n%s", w, out.String())
						}
					}
				}
				golden := filepath.Join("testdata", "verify", tt.name+"."+format)
				if *update {
					if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Errorf("%s differs from %s (run with -update after checking):\n%s", format, golden, out.String())
				}
			}
		})
	}
}

// The JSON output carries the same verdict as the text: decode a few fields.
func TestVerifyJSONFields(t *testing.T) {
	_, cfg := verifyDNS(t, "")
	var out, errb bytes.Buffer
	code := run([]string{"verify", "-config", cfg, "-json", "-ip", "203.0.113.5", "-helo", "evil.test",
		"-mail-from", "service@bank.example", filepath.Join("testdata", "verify", "reject.eml")}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		Disposition struct{ Action, Reply string }
		SPF         struct{ MailFrom struct{ Result string } }
		DKIM        []struct{ Status, Domain string }
		DMARC       struct {
			Status      string
			Evaluations []struct {
				PolicyDomain string   `json:"policy_domain"`
				Queries      []string `json:"discovery_queries"`
			}
		}
		DNS []trailEntry
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Disposition.Action != "reject" || !strings.HasPrefix(rep.Disposition.Reply, "550 5.7.1 ") ||
		rep.SPF.MailFrom.Result != "fail" || len(rep.DKIM) != 1 || rep.DKIM[0].Status != "fail" ||
		rep.DMARC.Status != "fail" || len(rep.DMARC.Evaluations) != 1 ||
		rep.DMARC.Evaluations[0].PolicyDomain != "bank.example" || len(rep.DNS) == 0 {
		t.Errorf("%+v", rep)
	}
}

func TestVerifyErrors(t *testing.T) {
	_, cfg := verifyDNS(t, "")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.eml")
	os.WriteFile(empty, []byte("\n\n"), 0o600)
	pass := filepath.Join("testdata", "verify", "pass.eml")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"verify"}, 2, "usage: authmilter verify"},
		{[]string{"verify", "-config", cfg, "-ip", "300.1.1.1", pass}, 2, "not an IP address"},
		{[]string{"verify", "-config", cfg, filepath.Join(dir, "missing.eml")}, 1, "no such file"},
		{[]string{"verify", "-config", cfg, empty}, 1, "empty message"},
		{[]string{"verify", "-config", filepath.Join(dir, "none.toml"), pass}, 1, "no such file"},
		{[]string{"verify", "-h"}, 0, "-mail-from"},
		// An ignored client is evaluated anyway, with a warning.
		{[]string{"verify", "-config", cfg, "-ip", "127.0.0.1", "-mail-from", "alice@example.org", pass}, 0,
			"ignored host: the milter would not check this message"},
		// Without -ip SPF can't run; the rest still does.
		{[]string{"verify", "-config", cfg, "-mail-from", "alice@example.org", pass}, 0, "SPF cannot be evaluated"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q:\n%s%s", tt.args, code, tt.code, tt.want, out.String(), errb.String())
		}
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		fields []wireField
		body   string
		notes  int
	}{
		{"CRLF", "From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n",
			[]wireField{{Name: "From", Value: " a@b.c"}, {Name: "Subject", Value: " x"}}, "body\r\n", 0},
		{"LF becomes CRLF", "From: a@b.c\n\nline 1\nline 2\n",
			[]wireField{{Name: "From", Value: " a@b.c"}}, "line 1\r\nline 2\r\n", 0},
		{"folds arrive as bare LF, whitespace kept", "Subject:  two\r\n\tlines\r\n  three\r\nTo:x\r\n\r\n",
			[]wireField{{Name: "Subject", Value: "  two\n\tlines\n  three"}, {Name: "To", Value: "x"}}, "", 0},
		{"mbox From line skipped", "From someone Thu Jan 1\nFrom: a@b.c\n\nb\n",
			[]wireField{{Name: "From", Value: " a@b.c"}}, "b\r\n", 1},
		{"non-header line starts the body", "From: a@b.c\nthis is text\nmore\n",
			[]wireField{{Name: "From", Value: " a@b.c"}}, "this is text\r\nmore\r\n", 1},
		{"header only", "From: a@b.c\r\nSubject: s",
			[]wireField{{Name: "From", Value: " a@b.c"}, {Name: "Subject", Value: " s"}}, "", 0},
		{"empty value", "X-Empty:\r\n\r\n", []wireField{{Name: "X-Empty", Value: ""}}, "", 0},
		{"CR alone is kept", "From: a\rb\r\n\r\nx\ry", []wireField{{Name: "From", Value: " a\rb"}}, "x\ry", 0},
		// issue 18: Postfix accepts white space before the colon and
		// hands the milter the name without it; verify stopped there.
		{"space before the colon", "To: b@c.d\r\nFrom : a@b.c\r\nSubject\t \t: x\r\n\r\nb",
			[]wireField{{Name: "To", Value: " b@c.d"}, {Name: "From", Value: " a@b.c"}, {Name: "Subject", Value: " x"}}, "b", 0},
		// As the first line, "From " (even "From :") is an mbox envelope
		// line to Postfix, not a field (integration: TestEndToEnd spoofed_From).
		{"first line 'From :' is the mbox line", "From : a@b.c\r\nSubject: x\r\n\r\nb",
			[]wireField{{Name: "Subject", Value: " x"}}, "b", 1},
		{"only space before the colon is not a name", " : x\r\n", nil, " : x\r\n", 1},
		{"continuation first is body", " folded\r\nFrom: a\r\n", nil, " folded\r\nFrom: a\r\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(m.fields) != fmt.Sprint(tt.fields) || string(m.body) != tt.body || len(m.notes) != tt.notes {
				t.Errorf("got %q %q %q", m.fields, m.body, m.notes)
			}
		})
	}
	for _, bad := range []string{"", "\r\n\r\n", " \n"} {
		if _, err := parseMessage([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A body larger than one chunk is streamed in several; DKIM still passes,
// so the chunks join up exactly (and LF line ends were converted).
func TestVerifyLargeBodyChunks(t *testing.T) {
	_, cfg := verifyDNS(t, "")
	file := filepath.Join("testdata", "verify", "large.eml")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.body) < 3*chunkSize || bytes.Contains(raw, []byte("\r\n")) {
		t.Fatalf("fixture: body %d bytes, want > %d with LF line ends", len(m.body), 3*chunkSize)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"verify", "-config", cfg, "-ip", "192.0.2.10", "-mail-from", "alice@example.org", file},
		&out, &errb); code != 0 || !strings.Contains(out.String(), "#1 pass: d=example.org") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
}

// Any bytes: an error or a split whose fields and body rebuild the input
// (after the line-end conversion and the mbox line), never a panic.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{"From: a@b.c\r\n\r\nbody", "From x\nA: b\n c\n\nd", ":x\r\n", "A:\n\n", "\r\n\n\r", "X: y", "A: b\r\nFrom : a\r\nB\t:c\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMessage(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		for i, fl := range m.fields {
			if !validFieldName(fl.Name) || strings.Trim(m.gaps[i], " \t") != "" {
				t.Fatalf("bad name %q (gap %q)", fl.Name, m.gaps[i])
			}
			b.WriteString(fl.Name + m.gaps[i] + ":" + strings.ReplaceAll(fl.Value, "\n", "\r\n") + "\r\n")
		}
		in := toCRLF(data)
		if bytes.HasPrefix(in, []byte("From ")) {
			_, in, _ = bytes.Cut(in, []byte("\r\n")) // nil without CRLF
		}
		hdr := b.Bytes()
		ok := bytes.Equal(in, append(append(slices.Clone(hdr), "\r\n"...), m.body...)) || // blank line, body
			bytes.Equal(in, append(slices.Clone(hdr), m.body...)) || // a non-header line starts the body
			(len(m.body) == 0 && bytes.Equal(append(slices.Clone(in), "\r\n"...), hdr)) // header only, no final CRLF
		if !ok {
			t.Fatalf("split %q / %q does not rebuild %q", m.fields, m.body, in)
		}
	})
}
