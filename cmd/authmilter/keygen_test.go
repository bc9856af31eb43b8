package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// TestKeygenRoundTrip: the record keygen prints, served by the test DNS
// server, verifies a signature made with the key it wrote — checked by
// pkg/dkimverify (zone-file form) and by dkimpy (the one-line form).
func TestKeygenRoundTrip(t *testing.T) {
	tests := []struct {
		args []string
		alg  string
		bits int
	}{
		{nil, "rsa", 2048},
		{[]string{"--type", "rsa", "--bits", "1024"}, "rsa", 1024},
		{[]string{"--type", "ed25519"}, "ed25519", 256},
	}
	var msgs [][]byte
	records := map[string]string{}
	for i, tt := range tests {
		dir := t.TempDir()
		sel := "s" + strconv.Itoa(i)
		args := append([]string{"keygen", "--domain", "Example.COM", "--selector", sel, "--out", dir}, tt.args...)
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		keyFile := filepath.Join(dir, "example.com."+sel+".key")
		fi, err := os.Stat(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
		}
		text := out.String()
		if !strings.Contains(text, "; DKIM key for example.com, selector "+sel+": "+tt.alg+", "+strconv.Itoa(tt.bits)+" bits") {
			t.Errorf("header line missing:\n%s", text)
		}

		// The zone-file form: every character-string at most 255 bytes,
		// together the same value as the one-line form.
		oneLine := regexp.MustCompile(`(?m)^;   (v=DKIM1;.*)$`).FindStringSubmatch(text)
		if oneLine == nil {
			t.Fatalf("no one-line value:\n%s", text)
		}
		var joined string
		for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(text, -1) {
			if len(q[1]) > 255 {
				t.Errorf("character-string of %d bytes", len(q[1]))
			}
			joined += q[1]
		}
		if joined != oneLine[1] {
			t.Errorf("zone strings %q != one-line value %q", joined, oneLine[1])
		}
		name := sel + "._domainkey.example.com"
		records[name] = oneLine[1]

		// The whole output is zone-file text: serve it as it is.
		srv := dnstest.New(t, text)
		r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		txts, err := r.LookupTXT(context.Background(), name+".")
		if err != nil || len(txts) != 1 || txts[0] != oneLine[1] {
			t.Fatalf("served record %q, %v", txts, err)
		}

		// Sign with the written key through the key table (which checks
		// the file mode) and verify.
		tab, err := dkimsign.NewTable([]dkimsign.Key{{Name: "k", Domain: "example.com", Selector: sel, File: keyFile}},
			[]dkimsign.SigningRule{{Pattern: "example.com", Keys: []string{"k"}}})
		if err != nil {
			t.Fatal(err)
		}
		var hdr []byte
		hdr = headerblock.Append(hdr, "From", " a@example.com")
		hdr = headerblock.Append(hdr, "Subject", " keygen round trip")
		body := "Hello.\r\n"
		res, msg := signAndVerify(t, r, tab.Select("example.com"), hdr, body)
		if len(res) != 1 || res[0].Status != dkimverify.StatusPass || res[0].Algorithm != tt.alg+"-sha256" {
			t.Errorf("%v: dkimverify: %+v", args, res)
		}
		msgs = append(msgs, msg)
	}
	for i, res := range runDkimpy(t, records, msgs...) {
		if strings.Join(res, " ") != "pass" {
			t.Errorf("dkimpy, %v: %v", tests[i].args, res)
		}
	}
}

// runDkimpy verifies messages with Debian's python3-dkim through
// pkg/dkimsign's helper script, key records from records (name -> value).
// It returns, per message, "pass" or "fail" per signature.
func runDkimpy(t testing.TB, records map[string]string, msgs ...[]byte) [][]string {
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
	args := []string{"../../pkg/dkimsign/testdata/dkimpy_verify.py", rf}
	for i, m := range msgs {
		mf := filepath.Join(dir, "msg"+strconv.Itoa(i)+".eml")
		if err := os.WriteFile(mf, m, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, mf)
	}
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

func TestKeygenErrors(t *testing.T) {
	dir := t.TempDir()
	base := []string{"keygen", "--domain", "example.com", "--selector", "s1", "--out", dir}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keygen"}, 2, "usage"},
		{[]string{"keygen", "--domain", "example.com"}, 2, "usage"},
		{[]string{"keygen", "--domain", "exa mple.com", "--selector", "s"}, 2, "--domain"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "a b"}, 2, "--selector"},
		{append(base, "--bits", "512"), 2, "1024 to 4096"},
		{append(base, "--bits", "8192"), 2, "1024 to 4096"},
		{append(base, "--type", "dsa"), 2, "want rsa or ed25519"},
		{append(base, "--type", "ed25519", "--bits", "2048"), 2, "rsa keys only"},
		{append(base, "extra"), 2, "usage"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s1", "--out", filepath.Join(dir, "missing")}, 1, "no such file"},
		{append(base, "--type", "ed25519"), 0, ""},
		{append(base, "--type", "ed25519"), 1, "exists; not overwriting"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args[1:], code, errb.String(), tt.code, tt.want)
		}
	}
}

// signAndVerify signs the message (header block without the empty line,
// body) with keys, as the signing milter does, and verifies the result
// with our verifier on r. It returns the verifier's results and the signed
// message.
func signAndVerify(t testing.TB, r dkimverify.TXTResolver, keys []*dkimsign.LoadedKey, hdr []byte, body string) ([]dkimverify.Result, []byte) {
	t.Helper()
	s := dkimsign.Start(hdr, keys, nil)
	_, _ = s.Write([]byte(body))
	values, err := s.Finish()
	if err != nil || len(values) != len(keys) {
		t.Fatalf("sign: %v %v", values, err)
	}
	var msg []byte
	for _, v := range values {
		msg = headerblock.Append(msg, "DKIM-Signature", v)
	}
	msg = append(append(msg, hdr...), "\r\n"...)
	v := dkimverify.Start(context.Background(), r, msg, nil)
	_, _ = v.Write([]byte(body))
	return v.Results(), append(msg, body...)
}
