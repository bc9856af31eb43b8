package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/pkg/dkimsign"
)

// migrated runs the built `authmilter migrate` on one of issue 19's seeds
// (internal/migrate/testdata/NAME, a copy of its files with the key files
// made 0600) and returns the TOML, made to run in the suite: its socket is
// the per-test milter port behind Postfix's smtpAlt, DNS is the suite's
// server, the store is private. Everything else is as migrate wrote it.
func migrated(t *testing.T, seed string, dnsAddr string, args ...string) (toml, root, report string) {
	t.Helper()
	root = t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join("..", "internal", "migrate", "testdata", seed, "root")+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	keys, _ := filepath.Glob(filepath.Join(root, "etc", "opendkim", "*.private"))
	more, _ := filepath.Glob(filepath.Join(root, "etc", "opendkim", "keys", "*", "*.private"))
	for _, k := range append(keys, more...) {
		if err := os.Chmod(k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "authmilter.toml")
	for i, a := range args { // paths of the old server: under the copy
		if strings.HasPrefix(a, "/") {
			args[i] = filepath.Join(root, a)
		}
	}
	cmd := exec.Command(milterBin, append([]string{"migrate", "-root", root, "-user", "root", "-out", out}, args...)...)
	rep, err := cmd.CombinedOutput()
	report = string(rep)
	if err != nil {
		t.Fatalf("authmilter migrate: %v\n%s", err, report)
	}
	if !strings.Contains(report, "passes authmilter check-config") {
		t.Errorf("migrate report:\n%s", report)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !strings.Contains(s, "\n[milter]\n") {
		s += "\n[milter]\nlisten = []\n"
	}
	s = regexp.MustCompile(`(?m)^listen = \[.*\]$`).ReplaceAllString(s, `listen = ["inet:`+pf.milterAlt+`"]`)
	// Key files: where the copy is.
	s = regexp.MustCompile(`(?m)^file = "(/[^"]*)"$`).ReplaceAllString(s, `file = "`+root+`$1"`)
	s = `authserv_id = "` + authservID + `"` + "\n" + s + `
[dns]
servers = ["` + dnsAddr + `"]
timeout = "1s"
attempts = 1

[log]
level = "debug"

[store]
dir = "` + filepath.Join(root, "store") + `"

[metrics]
listen = ""
`
	return s, root, report
}

// keyRecord is the DNS record of a seed's key file.
func keyRecord(t *testing.T, file, selector, domain string) string {
	t.Helper()
	k, err := dkimsign.LoadKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := dkimsign.TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return dkimsign.ZoneRecord(dkimsign.RecordName(selector, domain), txt) + "\n"
}

// dkimpyRecords verifies a delivered file with python3-dkim against the
// given "NAME VALUE" records and returns its verdicts.
func dkimpyRecords(t *testing.T, path string, records ...string) string {
	t.Helper()
	var keygenStyle []string
	for _, r := range records {
		name, value, _ := strings.Cut(r, " ")
		keygenStyle = append(keygenStyle, "; a TXT record named\n;   "+name+"\n; with the value\n;   "+value+"\n")
	}
	return dkimpy(t, path, keygenStyle...)
}

// TestMigratedSeeds is issue 19's acceptance: for each seed installation,
// `authmilter migrate` writes the configuration, authmilter runs it behind
// the real Postfix, and the mail comes out as the old stack left it.
func TestMigratedSeeds(t *testing.T) {
	needMilter(t)

	// OpenDKIM Mode s with KeyTable/SigningTable/TrustedHosts: outbound mail
	// from the trusted hosts is signed with hoge._domainkey.hogehoge.com and
	// verifies in dkimpy; other mail passes untouched and unsigned.
	t.Run("opendkim-keytable", func(t *testing.T) {
		dnsSrv := dnstest.New(t, baseZone)
		toml, root, _ := migrated(t, "opendkim-keytable", dnsSrv.Addr(), "-opendkim", "/etc/opendkim.conf")
		keyFile := filepath.Join(root, "etc/opendkim/keys/hogehoge.com/hoge.private")
		rec := keyRecord(t, keyFile, "hoge", "hogehoge.com")
		m := runMilter(t, "seed-keytable", milterConfig{Listen: []string{"inet:" + pf.milterAlt}, Raw: toml})
		from := "alice@hogehoge.com"
		for _, cl := range []client{
			{IP: "127.0.0.1", Name: "localhost", HELO: "localhost"},
			{IP: "192.0.2.25", Name: "mail.hogehoge.com", HELO: "mail.hogehoge.com"},
		} {
			id := newID(t.Name() + cl.IP)
			d := deliver(t, pf.smtpAlt, cl, from, message(id, from), id)
			sigs := d.get("DKIM-Signature")
			if len(sigs) != 1 || !strings.Contains(strings.Join(strings.Fields(sigs[0]), ""), "d=hogehoge.com;") ||
				!strings.Contains(strings.Join(strings.Fields(sigs[0]), ""), "s=hoge;") {
				t.Fatalf("from %s: want one signature d=hogehoge.com s=hoge:\n%s", cl.IP, d.headerText())
			}
			name, value, _ := strings.Cut(strings.TrimSpace(rec), " IN TXT ")
			value = strings.Join(regexp.MustCompile(`"([^"]*)"`).FindAllString(value, -1), "")
			value = strings.ReplaceAll(value, `"`, "")
			if got := dkimpyRecords(t, d.Path, strings.TrimSuffix(name, ".")+" "+value); got != "pass" {
				t.Errorf("dkimpy: %q, want pass", got)
			}
		}
		id := newID(t.Name() + "outside")
		d := deliver(t, pf.smtpAlt, client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}, from, message(id, from), id)
		if n := len(d.get("DKIM-Signature")); n != 0 {
			t.Errorf("outside mail was signed")
		}
		// ExternalIgnoreList: an outside host not in it is logged.
		if !strings.Contains(m.log.String(), "external host sent mail as a signing domain") {
			t.Errorf("no log line for the outside host sending as hogehoge.com:\n%s", tail(m.log.String(), 3000))
		}
	})

	// The ArchWiki single-domain form: Mode sv (the default), so local mail
	// is signed and other mail is DKIM-verified.
	t.Run("arch-single", func(t *testing.T) {
		toml0, root, _ := migrated(t, "arch-single", "127.0.0.1:1", "-opendkim", "/etc/opendkim.conf")
		rec := keyRecord(t, filepath.Join(root, "etc/opendkim/myselector.private"), "myselector", "example.com")
		dnsSrv := dnstest.New(t, baseZone+rec)
		toml := strings.Replace(toml0, `servers = ["127.0.0.1:1"]`, `servers = ["`+dnsSrv.Addr()+`"]`, 1)
		runMilter(t, "seed-arch", milterConfig{Listen: []string{"inet:" + pf.milterAlt}, Raw: toml})
		from := "bob@example.com"
		id := newID(t.Name())
		d := deliver(t, pf.smtpAlt, client{IP: "127.0.0.1", Name: "localhost", HELO: "localhost"}, from, message(id, from), id)
		if sigs := d.get("DKIM-Signature"); len(sigs) != 1 || !strings.Contains(strings.Join(strings.Fields(sigs[0]), ""), "c=relaxed/simple;") {
			t.Fatalf("want one relaxed/simple signature:\n%s", d.headerText())
		}
		// The signed copy sent in again from outside verifies (Mode v).
		id2 := newID(t.Name() + "in")
		got := deliver(t, pf.smtpAlt, client{IP: goodV4, Name: "relay.example.net", HELO: "relay.example.net"}, "bounce@spf-pass.test", resend(d, id2), id2)
		wantResult(t, wantAR(t, got), "dkim", "header.d", "example.com", "pass")
	})

	// OpenDMARC with RejectFailures unset (monitor), an IgnoreHosts file and
	// IgnoreMailFrom: failing mail is marked, not rejected; ignored hosts
	// and senders are not touched.
	t.Run("opendmarc-ignore", func(t *testing.T) {
		dnsSrv := dnstest.New(t, baseZone)
		toml, _, _ := migrated(t, "opendmarc-ignore", dnsSrv.Addr(), "-opendmarc", "/usr/local/etc/mail/opendmarc.conf")
		if !strings.Contains(toml, `socket_group = "postfix"`) {
			t.Errorf("the local: socket did not get socket_group:\n%s", toml)
		}
		runMilter(t, "seed-opendmarc", milterConfig{Listen: []string{"inet:" + pf.milterAlt}, Raw: toml})
		spoofer := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
		from := "ceo@dmarc-reject.test"
		id := newID(t.Name() + "fail")
		d := deliver(t, pf.smtpAlt, spoofer, from, message(id, from), id)
		wantResult(t, wantAR(t, d), "dmarc", "header.from", "dmarc-reject.test", "fail")

		id = newID(t.Name() + "pass")
		d = deliver(t, pf.smtpAlt, client{IP: goodV4, Name: "mail.example.net", HELO: "mail.example.net"}, from, message(id, from), id)
		wantResult(t, wantAR(t, d), "dmarc", "header.from", "dmarc-reject.test", "pass")

		for _, c := range []struct {
			name string
			cl   client
			from string
		}{
			{"ignored host 192.168.0.0/24", client{IP: "192.168.0.9", Name: "lan.example.net", HELO: "lan.example.net"}, from},
			{"ignored host 2001:db8::/32", client{IP: "2001:db8:5::9", Name: "v6.example.net", HELO: "v6.example.net"}, from},
			{"IgnoreMailFrom example.com", spoofer, "news@example.com"},
		} {
			id := newID(t.Name() + c.name)
			d := deliver(t, pf.smtpAlt, c.cl, c.from, message(id, c.from), id)
			if ars, _ := d.ours(); len(ars) != 0 {
				t.Errorf("%s: got our Authentication-Results:\n%s", c.name, d.headerText())
			}
		}

		// The local: socket as migrate wrote it (socket_group "postfix",
		// mode 0660), now really a unix socket behind Postfix's smtpd, which
		// runs as user postfix: it connects. Without socket_group the same
		// socket is root's, smtpd may not open it and every client gets 451
		// — the first-day outage — and the start log says what to set.
		unixTOML := strings.Replace(toml, `listen = ["inet:`+pf.milterAlt+`"]`, `listen = ["unix:`+pf.milterSock+`"]`, 1)
		t.Run("unix socket with socket_group", func(t *testing.T) {
			m := runMilter(t, "seed-opendmarc-unix", milterConfig{Listen: []string{"unix:" + pf.milterSock}, Raw: unixTOML})
			id := newID(t.Name())
			d := deliver(t, pf.smtpUnix, spoofer, from, message(id, from), id)
			wantResult(t, wantAR(t, d), "dmarc", "header.from", "dmarc-reject.test", "fail")
			if !strings.Contains(m.log.String(), `msg="milter socket" path=`+pf.milterSock+` owner=root group=postfix mode=0660`) {
				t.Errorf("start log lacks the socket line:\n%s", tail(m.log.String(), 2000))
			}
		})
		t.Run("unix socket without socket_group", func(t *testing.T) {
			noGroup := regexp.MustCompile(`(?m)^socket_group = .*$`).ReplaceAllString(unixTOML, "")
			m := runMilter(t, "seed-opendmarc-nogroup", milterConfig{Listen: []string{"unix:" + pf.milterSock}, Raw: noGroup})
			if !strings.Contains(m.log.String(), `set milter.socket_group = \"postfix\"`) {
				t.Errorf("no hint in the start log:\n%s", tail(m.log.String(), 2000))
			}
			id := newID(t.Name())
			_, err := sendOne(pf.smtpUnix, spoofer, from, []string{"rcpt@rcpt.test"}, message(id, from))
			wantSMTPError(t, err, 451, "4.7.1")
		})
	})

	// postfix-policyd-spf-perl: spf=fail is rejected at the SMTP level,
	// other mail gets Received-SPF.
	t.Run("policyd-spf-perl", func(t *testing.T) {
		dnsSrv := dnstest.New(t, baseZone)
		toml, _, report := migrated(t, "policyd-spf-perl", dnsSrv.Addr(), "-master-cf", "/etc/postfix/master.cf", "-main-cf", "/etc/postfix/main.cf")
		// The Postfix changes it prints: one milter, no policy service.
		for _, want := range []string{"smtpd_milters = inet:127.0.0.1:8893", `remove the service "policy" (master.cf lines 10-11)`,
			"without check_policy_service unix:private/policy", "remove policy_time_limit = 3600"} {
			if !strings.Contains(report, want) {
				t.Errorf("report lacks %q:\n%s", want, report)
			}
		}
		runMilter(t, "seed-spf-perl", milterConfig{Listen: []string{"inet:" + pf.milterAlt}, Raw: toml})
		from := "alice@spf-fail.test"
		id := newID(t.Name() + "fail")
		_, err := sendOne(pf.smtpAlt, client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 550, "5.7.23")

		from = "alice@spf-pass.test"
		id = newID(t.Name() + "pass")
		d := deliver(t, pf.smtpAlt, client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}, from, message(id, from), id)
		if r := d.get("Received-SPF"); len(r) != 1 || !strings.HasPrefix(strings.TrimSpace(r[0]), "pass") {
			t.Errorf("Received-SPF %q, want one pass:\n%s", r, d.headerText())
		}
	})
}
