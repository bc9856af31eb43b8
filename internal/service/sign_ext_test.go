package service_test

// Verifiers that are not ours, for what the milter signs: Debian's
// python3-dkim (dkimpy) and OpenDKIM in verify mode, run as a milter and
// fed through go-milter's client as Postfix would feed it.

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// needTool skips a test when an external verifier is missing, except in CI,
// where a missing tool is a failure (nothing may be skipped there).
func needTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (Debian package %s; scripts/test-all installs it)", path, pkg)
	}
	t.Skipf("%s is missing (Debian package %s)", path, pkg)
}

// testKey is a private key written to a file for the key table, with the
// TXT record that publishes it.
type testKey struct {
	name, domain, selector, file string
	signer                       crypto.Signer
	record                       string
}

func (k testKey) recordName() string { return dkimsign.RecordName(k.selector, k.domain) }

// newTestKeys makes a 2048-bit RSA and an Ed25519 key in dir, mode 0600.
func newTestKeys(t testing.TB, dir string) (rsaKey, edKey testKey) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name, selector string, s crypto.Signer) testKey {
		pemData, err := dkimsign.MarshalPrivateKey(s)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".key")
		if err := os.WriteFile(file, pemData, 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := dkimsign.TXTRecord(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		return testKey{name: name, domain: "example.com", selector: selector, file: file, signer: s, record: rec}
	}
	return mk("rsa", "rsa2048", rk), mk("ed", "ed2026", ek)
}

// field is one header field as the milter protocol carries it: the value
// byte-exact after the colon (leading space kept, folds as bare LF).
type field struct{ name, value string }

// signedMessage is a message as it left the signing milter.
type signedMessage struct {
	fields []field // inserted fields first, in their final order
	body   string
}

// raw is the message as an MTA stores it: CRLF line ends.
func (m signedMessage) raw() []byte {
	var b []byte
	for _, f := range m.fields {
		b = headerblock.Append(b, f.name, f.value)
	}
	b = append(b, "\r\n"...)
	return append(b, m.body...)
}

// count returns how many fields are named name.
func (m signedMessage) count(name string) int {
	n := 0
	for _, f := range m.fields {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

// applyInserts builds the message an MTA would deliver from the fields it
// sent and the milter's InsertHeader(0, …) actions, in the order received.
func applyInserts(t testing.TB, mods []gomilter.ModifyAction, sent [][2]string, body string) signedMessage {
	t.Helper()
	var m signedMessage
	for _, mod := range mods {
		if mod.Code != gomilter.ActInsertHeader || mod.HeaderIndex != 0 {
			t.Fatalf("unexpected modification %+v (want only inserts at the top)", mod)
		}
		m.fields = append([]field{{mod.HeaderName, mod.HeaderValue}}, m.fields...)
	}
	for _, f := range sent {
		m.fields = append(m.fields, field{f[0], f[1]})
	}
	m.body = body
	return m
}

// dkimpyVerify runs Debian's python3-dkim on every message (one process):
// per message, "pass" or "fail" per signature, or "none".
func dkimpyVerify(t *testing.T, records map[string]string, msgs []signedMessage) [][]string {
	t.Helper()
	needTool(t, "/usr/bin/python3", "python3-dkim")
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-dkim or python3-nacl missing: %v", err)
		}
		t.Skipf("python3-dkim or python3-nacl missing: %v", err)
	}
	dir := t.TempDir()
	var rec strings.Builder
	for n, v := range records {
		rec.WriteString(n + " " + v + "\n")
	}
	rf := filepath.Join(dir, "records")
	if err := os.WriteFile(rf, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"testdata/dkimpy_verify.py", rf}
	for i, m := range msgs {
		f := filepath.Join(dir, fmt.Sprintf("msg%d.eml", i))
		if err := os.WriteFile(f, m.raw(), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	res := make([][]string, len(msgs))
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var i int
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("dkimpy output %q", l)
		}
		if _, err := fmt.Sscan(f[0], &i); err != nil || i >= len(msgs) {
			t.Fatalf("dkimpy output %q", l)
		}
		r, _, _ := strings.Cut(f[len(f)-1], ":") // "fail:reason"
		res[i] = append(res[i], r)
	}
	return res
}

// openDKIM is an OpenDKIM milter in verify mode with the test keys in a
// TestPublicKeys file (no DNS).
type openDKIM struct {
	addr string
}

const openDKIMServID = "opendkim.verify.test"

func startOpenDKIM(t *testing.T, records map[string]string) *openDKIM {
	t.Helper()
	needTool(t, "/usr/sbin/opendkim", "opendkim")
	dir := t.TempDir()
	var rec strings.Builder
	for n, v := range records {
		rec.WriteString(n + " " + v + "\n")
	}
	keys := filepath.Join(dir, "testkeys")
	if err := os.WriteFile(keys, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "opendkim.conf")
	text := fmt.Sprintf(`Mode v
Socket inet:%d@127.0.0.1
Syslog no
AlwaysAddARHeader yes
AuthservID %s
TestPublicKeys %s
SoftwareHeader no
Background no
PidFile %s
`, port, openDKIMServID, keys, filepath.Join(dir, "opendkim.pid"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testmilter.Logs
	cmd := exec.Command("/usr/sbin/opendkim", "-f", "-l", "-x", conf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start opendkim: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("opendkim output:\n%s", logs.String())
		}
	})
	o := &openDKIM{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", o.addr, time.Second)
		if err == nil {
			c.Close()
			return o
		}
		select {
		case err := <-exited:
			t.Fatalf("opendkim exited at start: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendkim does not listen on %s: %v\n%s", o.addr, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify feeds one message through OpenDKIM as Postfix would (inserted
// fields stored and passed on with bare LF folds) and returns the dkim
// results of the Authentication-Results field it adds.
func (o *openDKIM) verify(t *testing.T, m signedMessage) []string {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", o.addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		ProtocolMask: gomilter.OptHeaderLeadingSpace,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leadSpace := s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	must(t, s.Macros(gomilter.CodeConn, "j", "mx.example.net"))
	cont(t)(s.Conn("client.example.org", gomilter.FamilyInet, 25, "192.0.2.1"))
	cont(t)(s.Helo("client.example.org"))
	cont(t)(s.Mail("<alice@example.com>", nil))
	cont(t)(s.Rcpt("<bob@example.net>", nil))
	for _, f := range m.fields {
		v := strings.ReplaceAll(f.value, "\r\n", "\n")
		if !leadSpace {
			v = strings.TrimPrefix(v, " ") // without SMFIP_HDR_LEADSPC Postfix removes exactly one space after the colon
		}
		must(t, s.Macros(gomilter.CodeHeader, "i", "ODK1"))
		cont(t)(s.HeaderField(f.name, v))
	}
	cont(t)(s.HeaderEnd())
	if m.body != "" {
		cont(t)(s.BodyChunk([]byte(m.body)))
	}
	mods, act, err := s.End()
	if err != nil {
		t.Fatalf("opendkim end of message: %v", err)
	}
	if act.Code != gomilter.ActContinue && act.Code != gomilter.ActAccept {
		t.Fatalf("opendkim answered %c %d %s", act.Code, act.SMTPCode, act.SMTPText)
	}
	var out []string
	for _, mod := range mods {
		if mod.HeaderName != "Authentication-Results" {
			continue
		}
		id, rs := authres.Parse(mod.HeaderValue)
		if id != openDKIMServID {
			continue
		}
		for _, r := range rs {
			if r.Method == "dkim" {
				out = append(out, r.Value)
			}
		}
	}
	return out
}
