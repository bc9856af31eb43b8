package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
)

// signZone is the DNS of the signing cases: sign.test is our own domain
// (SPF never passes for it, DMARC p=reject), so an outside message
// claiming it is rejected and a signed one passes DMARC by DKIM alone.
// The key records are appended from `authmilter keygen`'s output.
const signZone = `
sign.test.         IN TXT "v=spf1 -all"
_dmarc.sign.test.  IN TXT "v=DMARC1; p=reject"
`

// internalV4 is the internal network of the signing cases (RFC 5737
// TEST-NET-3).
const internalV4 = "203.0.113.5"

// keygen runs the built `authmilter keygen` and returns the private key
// file and the zone text it printed (its whole output is zone-file text).
func keygen(t *testing.T, dir, selector string, args ...string) (file, zone string) {
	t.Helper()
	cmd := exec.Command(milterBin, append([]string{"keygen", "--domain", "sign.test", "--selector", selector, "--out", dir}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("authmilter keygen: %v\n%s", err, out)
	}
	return filepath.Join(dir, "sign.test."+selector+".key"), string(out)
}

// TestSigning is issue #11 through Postfix: a message submitted by an
// authenticated client (XCLIENT LOGIN) or an internal host leaves signed;
// a message from outside is verified and not signed. The signed copy,
// taken from the Maildir and sent in again from outside, passes DKIM and
// DMARC in our verifier.
func TestSigning(t *testing.T) {
	needMilter(t)
	keyDir := t.TempDir()
	rsaFile, rsaZone := keygen(t, keyDir, "rsa2026")
	edFile, edZone := keygen(t, keyDir, "ed2026", "--type", "ed25519")
	keys, err := os.ReadFile("testdata/dkim/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := dnstest.New(t, baseZone+string(keys)+signZone+rsaZone+edZone)

	signing := func(extra string) string {
		return `
[signing]
enabled = true
internal_hosts = ["203.0.113.0/24"]
sign_authenticated = true
` + extra + `
[[signing.keys]]
name = "rsa"
domain = "sign.test"
selector = "rsa2026"
file = "` + rsaFile + `"

[[signing.keys]]
name = "ed"
domain = "sign.test"
selector = "ed2026"
file = "` + edFile + `"

[[signing.rules]]
pattern = ".sign.test"
keys = ["rsa", "ed"]
`
	}
	authed := client{IP: badV4, Name: "laptop.example.net", HELO: "laptop.example.net", Login: "alice"}
	internal := client{IP: internalV4, Name: "app1.internal.test", HELO: "app1.internal.test"}
	outside := client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	from := "alice@sign.test"

	t.Run("by client", func(t *testing.T) {
		cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
		cfg.Extra = signing("")
		runMilter(t, "signing", cfg) // until this subtest ends

		var signed []*delivered
		for _, c := range []struct {
			name string
			cl   client
		}{{"authenticated client", authed}, {"internal host", internal}} {
			t.Run(c.name+" is signed", func(t *testing.T) {
				id := newID(t.Name())
				d := deliver(t, pf.smtpAlt, c.cl, from, message(id, from), id)
				wantSigned(t, d)
				signed = append(signed, d)
			})
		}

		t.Run("delivered files verify with dkimpy", func(t *testing.T) {
			if len(signed) == 0 {
				t.Fatal("no signed message delivered")
			}
			for _, d := range signed {
				if got := dkimpy(t, d.Path, rsaZone, edZone); got != "pass pass" {
					t.Errorf("dkimpy on %s: %q, want pass for both signatures", d.Path, got)
				}
			}
		})

		t.Run("outside mail is verified, not signed", func(t *testing.T) {
			id := newID(t.Name())
			f := "alice@spf-pass.test"
			d := deliver(t, pf.smtpAlt, outside, f, message(id, f), id)
			wantResult(t, wantAR(t, d), "spf", "smtp.mailfrom", f, "pass")
			if n := len(d.get("DKIM-Signature")); n != 0 {
				t.Errorf("outside mail got %d DKIM-Signature fields:\n%s", n, d.headerText())
			}
		})

		t.Run("outside mail claiming our domain is rejected, not signed", func(t *testing.T) {
			id := newID(t.Name())
			spoofer := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
			_, err := sendOne(pf.smtpAlt, spoofer, from, []string{"rcpt@rcpt.test"}, message(id, from))
			wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for sign.test")
		})

		t.Run("signed copy verifies", func(t *testing.T) {
			if len(signed) == 0 {
				t.Fatal("no signed message delivered")
			}
			for _, d := range signed {
				id := newID(t.Name())
				got := deliver(t, pf.smtpAlt, outside, "bounces@spf-pass.test", resend(d, id), id)
				ar := wantAR(t, got)
				res := map[string]string{} // selector -> result
				for _, r := range ar.find("dkim", "header.s") {
					if r.Props["header.d"] == "sign.test" {
						res[r.Props["header.s"]] = r.Result
					}
				}
				if res["rsa2026"] != "pass" || res["ed2026"] != "pass" || len(res) != 2 {
					t.Errorf("dkim results %v for sign.test, want rsa2026 and ed2026 pass in:\n%s", res, ar.Raw)
				}
				wantResult(t, ar, "dmarc", "header.from", "sign.test", "pass")
			}
		})
	})

	t.Run("key rotation on SIGHUP", func(t *testing.T) {
		cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
		cfg.Extra = signing("")
		m := runMilter(t, "rotation", cfg)
		path := m.cmd.Args[len(m.cmd.Args)-1] // serve -config PATH
		selectors := func(t *testing.T) string {
			t.Helper()
			id := newID(t.Name())
			d := deliver(t, pf.smtpAlt, authed, from, message(id, from), id)
			var sels []string
			for _, v := range d.get("DKIM-Signature") {
				for _, tag := range strings.Split(strings.Join(strings.Fields(v), ""), ";") {
					if s, ok := strings.CutPrefix(tag, "s="); ok {
						sels = append(sels, s)
					}
				}
			}
			return strings.Join(sels, ",")
		}
		if got := selectors(t); got != "rsa2026,ed2026" {
			t.Fatalf("before: selectors %s", got)
		}

		// The new key is published, the configuration names it, SIGHUP.
		newFile, newZone := keygen(t, keyDir, "rsa2027")
		if err := dnsSrv.SetZone(baseZone + string(keys) + signZone + rsaZone + edZone + newZone); err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(cfg.toml(), "rsa2026", "rsa2027")
		text = strings.ReplaceAll(text, rsaFile, newFile)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		hup(t, m, "configuration reloaded")
		if got := selectors(t); got != "rsa2027,ed2026" {
			t.Errorf("after SIGHUP: selectors %s, want rsa2027,ed2026", got)
		}

		// A key file that became world-readable refuses the reload,
		// naming the file; the running keys go on signing.
		if err := os.Chmod(newFile, 0o644); err != nil {
			t.Fatal(err)
		}
		hup(t, m, "reload refused")
		if !strings.Contains(m.log.String(), newFile+" has mode 0644") {
			t.Errorf("the refusal does not name %s:\n%s", newFile, tail(m.log.String(), 2000))
		}
		if got := selectors(t); got != "rsa2027,ed2026" {
			t.Errorf("after a refused reload: selectors %s, want rsa2027,ed2026", got)
		}
	})

	t.Run("unsafe key file refuses to start", func(t *testing.T) {
		file, _ := keygen(t, keyDir, "unsafe")
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
		cfg.Extra = strings.ReplaceAll(signing(""), rsaFile, file)
		dir := t.TempDir()
		_, err := startMilter(milterBin, dir, "unsafe", cfg)
		if err == nil || !strings.Contains(err.Error(), file+" has mode 0640") {
			t.Errorf("serve with a group-readable key: %v; want an exit naming %s", err, file)
		}
		p := filepath.Join(dir, "check.toml")
		if err := writeFile(p, cfg.toml()); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(milterBin, "check-config", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "signing.keys[1].file") || !strings.Contains(string(out), file) {
			t.Errorf("check-config: %v\n%s", err, out)
		}
	})

	t.Run("signing socket signs everything", func(t *testing.T) {
		// The socket behind the alt port is in signing.listen (as a
		// submission service's would be); milter.listen is another port
		// Postfix never dials. Even mail from outside is signed there.
		ports, err := freePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		cfg := defaultConfig(dnsSrv.Addr(), "inet:127.0.0.1:"+strconv.Itoa(ports[0]))
		cfg.Extra = signing(`listen = ["inet:` + pf.milterAlt + `"]` + "\n")
		runMilter(t, "signing-socket", cfg)
		// runMilter waited for milter.listen; the signing socket opens
		// with it, but wait for it too.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", pf.milterAlt, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("signing socket %s: %v", pf.milterAlt, err)
			}
		}
		id := newID(t.Name())
		f := "bob@sign.test"
		d := deliver(t, pf.smtpAlt, outside, f, message(id, f), id)
		wantSigned(t, d)
	})
}

// wantSigned checks a delivered message carries our two signatures at the
// top (above Postfix's Received) and no A-R of ours.
func wantSigned(t *testing.T, d *delivered) {
	t.Helper()
	sigs := d.get("DKIM-Signature")
	if len(sigs) != 2 {
		t.Fatalf("%d DKIM-Signature fields, want 2 (RSA and Ed25519):\n%s", len(sigs), d.headerText())
	}
	if top := d.topField(); !strings.EqualFold(top.Name, "DKIM-Signature") {
		t.Errorf("top field is %s, want DKIM-Signature:\n%s", top.Name, d.headerText())
	}
	for i, want := range []string{"a=rsa-sha256", "a=ed25519-sha256"} {
		if v := strings.Join(strings.Fields(sigs[i]), ""); !strings.Contains(v, want+";") || !strings.Contains(v, "d=sign.test;") {
			t.Errorf("signature %d: want %s, d=sign.test: %s", i+1, want, sigs[i])
		}
	}
	if ars, _ := d.ours(); len(ars) != 0 {
		t.Errorf("a signed message got our A-R (it must not be verified):\n%s", d.headerText())
	}
}

// resend turns a delivered copy into a message to send again with a new
// X-Test-Id: the delivery fields virtual(8) added are dropped; X-Test-Id
// is not signed.
func resend(d *delivered, id string) []byte {
	var b strings.Builder
	for _, f := range d.Header {
		switch strings.ToLower(f.Name) {
		case "return-path", "x-original-to", "delivered-to":
			continue
		case "x-test-id":
			b.WriteString("X-Test-Id: " + id + "\r\n")
			continue
		}
		b.WriteString(f.Name + ":" + strings.ReplaceAll(f.Value, "\n", "\r\n") + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(d.Body, "\n", "\r\n"))
	return []byte(b.String())
}

// dkimpy verifies the message file with Debian's python3-dkim (a verifier
// that is not ours), the key records taken from keygen's output, and
// returns its verdict per signature ("pass fail …").
func dkimpy(t *testing.T, path string, keygenOutputs ...string) string {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-dkim / python3-nacl missing: %v", err)
		}
		t.Skipf("python3-dkim / python3-nacl missing: %v", err)
	}
	// keygen's one-line form for web panels: ";   NAME" after "a TXT
	// record named", ";   VALUE" after "with the value".
	var records strings.Builder
	for _, out := range keygenOutputs {
		var name, value string
		lines := strings.Split(out, "\n")
		for i := 0; i+1 < len(lines); i++ {
			next := strings.TrimSpace(strings.TrimPrefix(lines[i+1], ";"))
			switch {
			case strings.HasSuffix(lines[i], "a TXT record named"):
				name = next
			case strings.HasSuffix(lines[i], "with the value"):
				value = next
			}
		}
		if name == "" || value == "" {
			t.Fatalf("no record in keygen output:\n%s", out)
		}
		records.WriteString(name + " " + value + "\n")
	}
	rf := filepath.Join(t.TempDir(), "records")
	if err := os.WriteFile(rf, []byte(records.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", "../internal/service/testdata/dkimpy_verify.py", rf, path).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	var verdicts []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		verdicts = append(verdicts, f[len(f)-1])
	}
	return strings.Join(verdicts, " ")
}

// hup sends SIGHUP to the milter and waits for one more log line
// containing want.
func hup(t *testing.T, m *milterProc, want string) {
	t.Helper()
	before := strings.Count(m.log.String(), want)
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); strings.Count(m.log.String(), want) == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after SIGHUP:\n%s", want, tail(m.log.String(), 3000))
		}
	}
}
