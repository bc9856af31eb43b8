package dkimsign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// testFields are header fields as the milter hands them over with the
// leading-space option: values keep their leading space, folds are bare LF.
var testFields = [][2]string{
	{"Received", " from client.example.com by mx.example.com; Thu, 01 Jan 2026 00:00:00 +0000"},
	{"From", " Alice <alice@example.com>"},
	{"To", " bob@example.net,\n\tcarol@example.net"},
	{"Subject", "  a subject  \n\twith a fold  "},
	{"Date", " Thu, 01 Jan 2026 00:00:00 +0000"},
	{"Message-ID", " <1@example.com>"},
	{"X-Mailer", "no leading space"},
	{"MIME-Version", " 1.0"},
	{"Content-Type", " text/plain; charset=utf-8"},
}

const testBody = "Hello  \r\n\r\nline with trailing ws \t\r\n.dot line\r\n  \r\nlast\r\n\r\n\r\n"

func headerOf(fields [][2]string) []byte {
	var h []byte
	for _, f := range fields {
		h = headerblock.Append(h, f[0], f[1])
	}
	return h
}

// sign runs one message through Start/Write/Finish with the body cut into
// chunks of n bytes, and returns the values and the signed message.
func sign(t testing.TB, header []byte, body string, keys []*LoadedKey, o *Options, n int) ([]string, []byte) {
	t.Helper()
	s := Start(header, keys, o)
	for b := []byte(body); len(b) > 0; {
		c := min(n, len(b))
		if k, err := s.Write(b[:c]); k != c || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		b = b[c:]
	}
	values, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return values, assemble(values, header, body)
}

// assemble prepends the signatures, first value topmost, as the milter
// will insert them.
func assemble(values []string, header []byte, body string) []byte {
	var msg []byte
	for _, v := range values {
		msg = headerblock.Append(msg, "DKIM-Signature", v)
	}
	msg = append(msg, header...)
	msg = append(msg, "\r\n"...)
	return append(msg, body...)
}

// keySet is loaded keys plus the DNS records that publish them.
type keySet struct {
	table   *Table
	zone    string            // for dnstest
	records map[string]string // name -> value, for dkimpy
}

func newKeySet(t testing.TB, keys map[string]crypto.Signer, rules []SigningRule) *keySet {
	t.Helper()
	dir := t.TempDir()
	ks := &keySet{records: map[string]string{}}
	var kt []Key
	for name, k := range keys {
		file := writeFile(t, dir, name+".pem", mustPKCS8(t, k), 0o600)
		kt = append(kt, Key{Name: name, Domain: "example.com", Selector: name, File: file})
		txt, err := TXTRecord(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		rn := RecordName(name, "example.com")
		ks.zone += ZoneRecord(rn, txt) + "\n"
		ks.records[rn] = txt
	}
	var err error
	if ks.table, err = NewTable(kt, rules); err != nil {
		t.Fatal(err)
	}
	return ks
}

// verifyOurs verifies msg with pkg/dkimverify over dnstest and the resolver.
func verifyOurs(t testing.TB, zone string, msg []byte) []dkimverify.Result {
	t.Helper()
	srv := dnstest.New(t, zone)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	v := dkimverify.Start(context.Background(), r, msg[:i+4], nil)
	_, _ = v.Write(msg[i+4:])
	return v.Results()
}

// verifyDkimpy verifies messages with Debian's python3-dkim (one process
// for all: its start is slow). It returns, per message, "pass" or "fail"
// per signature.
func verifyDkimpy(t testing.TB, records map[string]string, msgs ...[]byte) [][]string {
	t.Helper()
	return runDkimpy(t, "testdata/dkimpy_verify.py", records, msgs...)
}

// runDkimpy runs script (testdata/dkimpy_verify.py) on msgs.
func runDkimpy(t testing.TB, script string, records map[string]string, msgs ...[]byte) [][]string {
	t.Helper()
	dir := t.TempDir()
	rf := filepath.Join(dir, "records")
	var rec strings.Builder
	for n, v := range records {
		rec.WriteString(n + " " + v + "\n")
	}
	if err := os.WriteFile(rf, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{script, rf}
	for i, m := range msgs {
		mf := filepath.Join(dir, fmt.Sprintf("msg%d.eml", i))
		if err := os.WriteFile(mf, m, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, mf)
	}
	// Debian's interpreter, where python3-dkim is installed (a pyenv
	// python3 earlier in PATH would not have it).
	out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy (needs Debian packages python3-dkim python3-nacl): %v\n%s", err, out)
	}
	res := make([][]string, len(msgs))
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		m, err := strconv.Atoi(f[0])
		if err != nil || m >= len(msgs) || len(f) < 2 {
			t.Fatalf("dkimpy output %q", l)
		}
		res[m] = append(res[m], f[len(f)-1])
	}
	return res
}

func tagOf(value, tag string) string {
	for _, item := range strings.Split(value, ";") {
		k, v, _ := strings.Cut(item, "=")
		if strings.TrimSpace(k) == tag {
			return stripFWS(v)
		}
	}
	return ""
}

func TestSignVerifies(t *testing.T) {
	testKeys(t)
	ks := newKeySet(t, map[string]crypto.Signer{"rsa": testRSA, "ed": testEd}, []SigningRule{
		{Pattern: "rsa.example.com", Keys: []string{"rsa"}},
		{Pattern: "ed.example.com", Keys: []string{"ed"}},
		{Pattern: "example.com", Keys: []string{"rsa", "ed"}},
	})
	header := headerOf(testFields)
	canons := [][2]string{{Relaxed, Relaxed}, {Simple, Simple}, {Relaxed, Simple}, {Simple, Relaxed}}
	var names []string
	var msgs [][]byte
	var nsigs []int
	for _, from := range []string{"rsa.example.com", "ed.example.com", "example.com"} {
		keys := ks.table.Select(from)
		for _, c := range canons {
			name := from + "/" + c[0] + "/" + c[1]
			t.Run(name, func(t *testing.T) {
				o := &Options{HeaderCanonicalization: c[0], BodyCanonicalization: c[1]}
				values, msg := sign(t, header, testBody, keys, o, 7)
				if len(values) != len(keys) {
					t.Fatalf("%d values for %d keys", len(values), len(keys))
				}
				for i, v := range values {
					if !strings.HasPrefix(v, " ") || strings.HasSuffix(v, "\n") {
						t.Errorf("value %q: want a leading space and no final line end", v[:20])
					}
					if got := tagOf(v, "c"); got != c[0]+"/"+c[1] {
						t.Errorf("c=%s", got)
					}
					if got := tagOf(v, "s"); got != keys[i].Selector {
						t.Errorf("s=%s, want %s", got, keys[i].Selector)
					}
					want := "From:From:Subject:Date:Message-ID:To:MIME-Version:Content-Type"
					if got := tagOf(v, "h"); got != want {
						t.Errorf("h=%s, want %s", got, want)
					}
					if tagOf(v, "t") == "" || tagOf(v, "x") != "" {
						t.Errorf("t=%q x=%q", tagOf(v, "t"), tagOf(v, "x"))
					}
				}
				for i, r := range verifyOurs(t, ks.zone, msg) {
					if r.Status != dkimverify.StatusPass {
						t.Errorf("dkimverify signature %d: %s %s %v", i, r.Status, r.Reason, r.Err)
					}
				}
				names, msgs, nsigs = append(names, name), append(msgs, msg), append(nsigs, len(keys))
			})
		}
	}
	checkDkimpy(t, ks.records, names, msgs, nsigs)
}

// checkDkimpy verifies msgs with dkimpy and wants every one of the nsigs[i]
// signatures of msgs[i] to pass.
func checkDkimpy(t *testing.T, records map[string]string, names []string, msgs [][]byte, nsigs []int) {
	t.Helper()
	for i, res := range verifyDkimpy(t, records, msgs...) {
		if strings.Count(strings.Join(res, " "), "pass") != nsigs[i] || len(res) != nsigs[i] {
			t.Errorf("dkimpy, %s: %v, want %d passes\n%s", names[i], res, nsigs[i], msgs[i])
		}
	}
}

func TestSignEdgeCases(t *testing.T) {
	testKeys(t)
	ks := newKeySet(t, map[string]crypto.Signer{"rsa": testRSA, "ed": testEd}, []SigningRule{
		{Pattern: "example.com", Keys: []string{"ed", "rsa"}},
	})
	keys := ks.table.Select("example.com")
	var names []string
	var msgs [][]byte
	var nsigs []int
	tests := []struct {
		name   string
		header []byte
		body   string
		o      *Options
	}{
		{"empty body", headerOf(testFields), "", nil},
		{"header block with its empty line", append(headerOf(testFields), "\r\n"...), "x\r\n", nil},
		{"one-byte chunks simple", headerOf(testFields), testBody, &Options{HeaderCanonicalization: Simple, BodyCanonicalization: Simple}},
		{"no oversigning", headerOf(testFields), testBody, &Options{Oversign: []string{""}}},
		{"only From", headerOf(testFields[1:2]), "hi\r\n", nil},
		{"no From at all", headerOf(testFields[2:4]), "hi\r\n", nil},
		{"big body", headerOf(testFields), strings.Repeat("0123456789 abcdefghij\r\n", 20000), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 1
			if len(tt.body) > 1000 {
				n = 65535
			}
			hdr := tt.header
			if bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
				hdr = hdr[:len(hdr)-2]
			}
			values, _ := sign(t, tt.header, tt.body, keys, tt.o, n)
			msg := assemble(values, hdr, tt.body)
			for i, r := range verifyOurs(t, ks.zone, msg) {
				if r.Status != dkimverify.StatusPass {
					t.Errorf("dkimverify signature %d: %s %s %v", i, r.Status, r.Reason, r.Err)
				}
			}
			names, msgs, nsigs = append(names, tt.name), append(msgs, msg), append(nsigs, len(keys))
		})
	}
	checkDkimpy(t, ks.records, names, msgs, nsigs)
}

// From is oversigned, Subject is not: a From added anywhere breaks the
// signature, a Subject added on top does not (verifiers pick fields from
// the bottom, RFC 6376 §5.4.2).
func TestOversigning(t *testing.T) {
	testKeys(t)
	ks := newKeySet(t, map[string]crypto.Signer{"ed": testEd}, []SigningRule{{Pattern: "*", Keys: []string{"ed"}}})
	header := headerOf(testFields)
	values, _ := sign(t, header, testBody, ks.table.Select("example.com"), nil, 4096)
	var msgs [][]byte
	tests := []struct {
		added [2]string
		want  dkimverify.Status
	}{
		{[2]string{"X-Other", " x"}, dkimverify.StatusPass},
		{[2]string{"Subject", " a new subject"}, dkimverify.StatusPass},
		{[2]string{"From", " Mallory <m@evil.example>"}, dkimverify.StatusFail},
	}
	for _, tt := range tests {
		h := headerblock.Append(nil, tt.added[0], tt.added[1])
		msg := assemble(values, append(h, header...), testBody)
		if r := verifyOurs(t, ks.zone, msg); len(r) != 1 || r[0].Status != tt.want {
			t.Errorf("added %s: %+v, want %s", tt.added[0], r, tt.want)
		}
		msgs = append(msgs, msg)
	}
	// dkimpy agrees, which also shows that its check can fail.
	got := verifyDkimpy(t, ks.records, msgs...)
	for i, tt := range tests {
		if len(got[i]) != 1 || got[i][0] != string(tt.want) {
			t.Errorf("dkimpy, added %s: %v, want %s", tt.added[0], got[i], tt.want)
		}
	}
}

func TestExpire(t *testing.T) {
	testKeys(t)
	ks := newKeySet(t, map[string]crypto.Signer{"ed": testEd}, []SigningRule{{Pattern: "*", Keys: []string{"ed"}}})
	values, msg := sign(t, headerOf(testFields), testBody, ks.table.Select("example.com"), &Options{Expire: 48 * time.Hour}, 100)
	ts, _ := strconv.ParseInt(tagOf(values[0], "t"), 10, 64)
	xs, err := strconv.ParseInt(tagOf(values[0], "x"), 10, 64)
	if err != nil || xs-ts < 48*3600-2 || xs-ts > 48*3600+2 {
		t.Errorf("t=%d x=%d (%v), want x = t + 172800", ts, xs, err)
	}
	if r := verifyOurs(t, ks.zone, msg); r[0].Status != dkimverify.StatusPass {
		t.Errorf("%+v", r)
	}
	if r := verifyDkimpy(t, ks.records, msg); len(r[0]) != 1 || r[0][0] != "pass" {
		t.Errorf("dkimpy: %s", r)
	}
}

func TestSignerErrors(t *testing.T) {
	testKeys(t)
	ks := newKeySet(t, map[string]crypto.Signer{"ed": testEd}, []SigningRule{{Pattern: "*", Keys: []string{"ed"}}})
	keys := ks.table.Select("example.com")

	// No keys: nothing to do, no error.
	if v, err := Start(headerOf(testFields), nil, nil).Finish(); v != nil || err != nil {
		t.Errorf("no keys: %v, %v", v, err)
	}
	// Bad options come out of Finish, naming the key.
	for _, o := range []*Options{
		{HeaderCanonicalization: "nofws"},
		{Headers: []string{"Subject"}},
		{Headers: []string{"From", "Bad Name"}},
		{Oversign: []string{"X-Not-Signed"}},
		{Expire: -time.Second},
	} {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("Validate(%+v) = %v", o, err)
		}
		s := Start(headerOf(testFields), keys, o)
		_, _ = s.Write([]byte("body\r\n"))
		if v, err := s.Finish(); len(v) != 0 || !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), `key "ed"`) {
			t.Errorf("options %+v: %v, %v", o, v, err)
		}
	}
	var nilOpts *Options
	if err := nilOpts.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	// Finish twice, Abort then Finish, Abort after Finish.
	s := Start(headerOf(testFields), keys, nil)
	if _, err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Finish(); !errors.Is(err, ErrSign) {
		t.Errorf("second Finish: %v", err)
	}
	s.Abort()
	s = Start(headerOf(testFields), keys, nil)
	_, _ = s.Write([]byte("partial"))
	s.Abort()
	if n, err := s.Write([]byte("more")); n != 4 || err != nil {
		t.Errorf("Write after Abort = %d, %v", n, err)
	}
	if _, err := s.Finish(); !errors.Is(err, ErrSign) {
		t.Errorf("Finish after Abort: %v", err)
	}
}

func TestHeaderKeys(t *testing.T) {
	h := headerOf([][2]string{
		{"from", " a@example.com"}, {"Received", " x"}, {"To", " b"}, {"TO", " c"},
		{"Subject", " s\n\tFrom: not a field"}, {"Reply-To", " r"},
	})
	o := (&Options{Oversign: []string{"From", "Reply-To"}}).withDefaults()
	got := strings.Join(headerKeys(h, o), ":")
	if want := "From:From:Reply-To:Reply-To:Subject:To:To"; got != want {
		t.Errorf("h = %s, want %s", got, want)
	}
}

// stripFWS removes the folding whitespace RFC 6376 §3.2 allows in values.
func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}
