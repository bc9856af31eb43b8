package integration

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/pkg/report"
	"github.com/authmilter/authmilter/pkg/report/reporttest"
)

// arcZone: the keys of the dkimpy-sealed chains (pkg/arc/testdata), the
// author domain at p=reject with a rua (so that records are kept), the
// list's envelope domain with SPF for the list's address.
const arcZoneExtra = `
author.example.        300 IN TXT "v=spf1 -all"
_dmarc.author.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@author.example"
lists.example.         300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
`

// TestARCThroughPostfix (issue #21): a message from a p=reject domain that
// a mailing list changed (footer, subject tag: the author's DKIM signature
// breaks) and sealed, through the real Postfix. With the list's domain in
// arc.trusted_sealers it is delivered with the override explained in
// Authentication-Results, recorded as local_policy, and shown in the
// aggregate report `authmilter report` builds (valid against the RFC 9990
// schema). Without it, the same message is rejected.
func TestARCThroughPostfix(t *testing.T) {
	needMilter(t)
	keys, err := os.ReadFile("../pkg/arc/testdata/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := dnstest.New(t, string(keys)+arcZoneExtra)
	chain, err := os.ReadFile("../pkg/arc/testdata/chains/list-only.eml")
	if err != nil {
		t.Fatal(err)
	}
	list := client{IP: "198.51.100.20", Name: "mail.lists.example", HELO: "mail.lists.example"}
	const bounce = "list-bounces@lists.example"

	t.Run("trusted sealer: delivered, override explained and reported", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
		cfg.StoreDir = filepath.Join(dir, "store")
		cfg.Extra = "\n[arc]\ntrusted_sealers = [\"lists.example\"]\n"
		m := runMilter(t, "arc-trusted", cfg)

		id := newID(t.Name())
		d := deliver(t, pf.smtpAlt, list, bounce, withTestID(id, chain), id)
		ar := wantAR(t, d)
		// No hop changed the message after the list sealed it:
		// oldest-pass 0, which is not written (pkg/resultheader ARCAuthResult).
		r := wantResult(t, ar, "arc", "smtp.remote-ip", "198.51.100.20", "pass")
		if op, ok := r.Props["header.oldest-pass"]; ok {
			t.Errorf("header.oldest-pass=%q written for 0 in:\n%s", op, ar.Raw)
		}
		wantResult(t, ar, "dkim", "header.d", "author.example", "fail")
		wantResult(t, ar, "dmarc", "header.from", "author.example", "fail")
		raw := strings.Join(strings.Fields(ar.Raw), " ")
		for _, w := range []string{"arc=pass (as[1].d=lists.example as[1].s=s2)",
			"delivered by local policy, trusted ARC sealer lists.example: arc=pass as[1].d=lists.example as[1].s=s2 remote-ip[1]=198.51.100.20"} {
			if !strings.Contains(raw, w) {
				t.Errorf("A-R lacks %q:\n%s", w, ar.Raw)
			}
		}
		// The list's ARC headers reach the mailbox untouched.
		if got := len(d.get("ARC-Seal")); got != 1 {
			t.Errorf("%d ARC-Seal fields delivered, want 1", got)
		}

		out, _ := reportTomorrow(t, m, dir, cfg)
		files, _ := filepath.Glob(filepath.Join(out, "*!author.example!*.xml.gz"))
		if len(files) != 1 {
			t.Fatalf("reports for author.example: %v", files)
		}
		f, err := os.Open(files[0])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		xml, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"<disposition>none</disposition>", "<type>local_policy</type>",
			"<comment>arc=pass as[1].d=lists.example as[1].s=s2 remote-ip[1]=198.51.100.20</comment>"} {
			if !strings.Contains(string(xml), w) {
				t.Errorf("report lacks %s:\n%s", w, xml)
			}
		}
		reporttest.Validate(t, report.FormatRFC9990, xml)
	})

	t.Run("untrusted sealer: rejected; trusted after a reload: delivered", func(t *testing.T) {
		cfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterAlt)
		m := runMilter(t, "arc-untrusted", cfg)
		id := newID(t.Name())
		_, err := sendOne(pf.smtpAlt, list, bounce, []string{"rcpt@rcpt.test"}, withTestID(id, chain))
		wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for author.example")

		// SIGHUP applies arc.trusted_sealers without a restart.
		cfg.Extra = "\n[arc]\ntrusted_sealers = [\"lists.example\"]\n"
		cfg.StoreDir = filepath.Join(filepath.Dir(m.cmd.Args[3]), "arc-untrusted-store")
		if err := writeFile(m.cmd.Args[3], cfg.toml()); err != nil {
			t.Fatal(err)
		}
		if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(m.log.String(), "configuration reloaded"); {
			if time.Now().After(deadline) {
				t.Fatalf("no reload logged:\n%s", tail(m.log.String(), 3000))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(m.log.String(), "arc.trusted_sealers") {
			t.Errorf("reload does not name arc.trusted_sealers:\n%s", tail(m.log.String(), 2000))
		}
		id = newID(t.Name())
		d := deliver(t, pf.smtpAlt, list, bounce, withTestID(id, chain), id)
		wantResult(t, wantAR(t, d), "dmarc", "header.from", "author.example", "fail")
	})
}
