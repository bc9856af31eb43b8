package integration

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEndToEnd runs every case of issue #5 against the private Postfix, the
// built authmilter and the test DNS zone. One top-level test so the DNS
// server and the main milter live across all cases.
func TestEndToEnd(t *testing.T) {
	needMilter(t)
	dnsSrv := startDNS(t)
	mainCfg := defaultConfig(dnsSrv.Addr(), "inet:"+pf.milterTCP, "unix:"+pf.milterSock)

	t.Run("check-config", func(t *testing.T) { testCheckConfig(t, mainCfg) })

	runMilter(t, "main", mainCfg)

	t.Run("spf", testSPF)
	t.Run("dkim", testDKIM)
	t.Run("dmarc", testDMARC)
	t.Run("spoofed From", testSpoofFrom)
	t.Run("MAIL FROM as parsed", testMailFrom)
	t.Run("authentication-results", testAuthResults)
	t.Run("two messages on one connection", testTwoMessages)
	t.Run("authenticated submission", func(t *testing.T) { testAuthenticated(t, dnsSrv.Addr()) })
	t.Run("unix socket", testUnixSocket)
	t.Run("variants", func(t *testing.T) { testVariants(t, dnsSrv.Addr()) })
	t.Run("milter stop and restart", func(t *testing.T) { testStopRestart(t, dnsSrv.Addr()) })
	t.Run("records and report", func(t *testing.T) { testRecordsReport(t, dnsSrv.Addr()) })
	t.Run("incoming aggregate reports", func(t *testing.T) { testIncomingReports(t, dnsSrv.Addr()) })
}

func testCheckConfig(t *testing.T, good milterConfig) {
	dir := t.TempDir()
	check := func(cfg string) ([]byte, error) {
		p := filepath.Join(dir, "c.toml")
		if err := writeFile(p, cfg); err != nil {
			t.Fatal(err)
		}
		return exec.Command(milterBin, "check-config", p).CombinedOutput()
	}
	if out, err := check(good.toml()); err != nil {
		t.Errorf("check-config of the suite's config: %v\n%s", err, out)
	}
	bad := strings.Replace(good.toml(), `quarantine = "hold"`, `quarantine = "bogus"`, 1)
	if out, err := check(bad); err == nil {
		t.Errorf("check-config accepted quarantine = \"bogus\":\n%s", out)
	} else if !strings.Contains(string(out), "quarantine") {
		t.Errorf("check-config error does not name the key: %s", out)
	}
}

// testSPF: RFC 7208 results of the MAIL FROM identity for IPv4 and IPv6
// clients, and the HELO identity for the null sender (§2.4).
func testSPF(t *testing.T) {
	cases := []struct {
		name, domain, want string
	}{
		{"pass", "spf-pass.test", "pass"},
		{"fail", "spf-fail.test", "fail"},
		{"softfail", "spf-softfail.test", "softfail"},
		{"none", "spf-none.test", "none"},
		{"temperror", "spf-temp.test", "temperror"}, // TXT answers SERVFAIL
	}
	for _, fam := range []struct{ name, good, bad string }{{"ipv4", goodV4, badV4}, {"ipv6", goodV6, badV6}} {
		for _, c := range cases {
			t.Run(c.name+"/"+fam.name, func(t *testing.T) {
				ip := fam.bad
				if c.want == "pass" {
					ip = fam.good
				}
				cl := client{IP: ip, Name: "client.example.net", HELO: "client.example.net"}
				id := newID(t.Name())
				from := "alice@" + c.domain
				d := deliver(t, pf.smtpTCP, cl, from, message(id, from), id)
				wantResult(t, wantAR(t, d), "spf", "smtp.mailfrom", from, c.want)
			})
		}
	}
	// Null sender: SPF checks postmaster@HELO (RFC 7208 §2.4). Accept the
	// result reported as smtp.helo or as smtp.mailfrom=postmaster@HELO.
	for _, c := range []struct{ name, helo, want string }{
		{"null sender pass", "mail.spf-pass.test", "pass"},
		{"null sender fail", "mail.spf-fail.test", "fail"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := client{IP: goodV4, Name: c.helo, HELO: c.helo}
			id := newID(t.Name())
			d := deliver(t, pf.smtpTCP, cl, "", message(id, "mailer-daemon@spf-none.test"), id)
			ar := wantAR(t, d)
			var found bool
			for _, r := range ar.find("spf", "") {
				if strings.EqualFold(r.Props["smtp.helo"], c.helo) ||
					strings.EqualFold(r.Props["smtp.mailfrom"], "postmaster@"+c.helo) {
					found = true
					if r.Result != c.want {
						t.Errorf("spf=%s, want %s in:\n%s", r.Result, c.want, ar.Raw)
					}
				}
			}
			if !found {
				t.Errorf("no spf result for HELO %s in:\n%s", c.helo, ar.Raw)
			}
		})
	}
}

// testDKIM: committed fixtures signed by dkimpy over headers with odd
// whitespace and folding must still verify after Postfix carried them.
// dkim.test publishes p=reject and SPF -all, so DMARC passes only by DKIM.
func testDKIM(t *testing.T) {
	cl := client{IP: badV4, Name: "relay.example.net", HELO: "relay.example.net"}
	for _, c := range []struct{ file, selector, algo string }{
		{"simple.eml", "rsa", "rsa-sha256"},  // c=simple/simple
		{"relaxed.eml", "rsa", "rsa-sha256"}, // c=relaxed/relaxed
		{"ed25519.eml", "ed", "ed25519-sha256"},
	} {
		t.Run(strings.TrimSuffix(c.file, ".eml"), func(t *testing.T) {
			id := newID(t.Name())
			msg := withTestID(id, fixture(t, "dkim/"+c.file))
			d := deliver(t, pf.smtpTCP, cl, "bounces@dkim.test", msg, id)
			ar := wantAR(t, d)
			r := wantResult(t, ar, "dkim", "header.d", "dkim.test", "pass")
			if r.Props["header.s"] != "" && r.Props["header.s"] != c.selector {
				t.Errorf("header.s=%q, want %q", r.Props["header.s"], c.selector)
			}
			if a := r.Props["header.a"]; a != "" && a != c.algo {
				t.Errorf("header.a=%q, want %q", a, c.algo)
			}
			// header.b: the first 8+ characters of b= tell several
			// signatures apart (RFC 6008 §4).
			sig := d.get("DKIM-Signature")
			if hb := r.Props["header.b"]; len(hb) < 8 || len(sig) != 1 ||
				!strings.Contains(strings.Join(strings.Fields(sig[0]), ""), "b="+hb) {
				t.Errorf("header.b=%q is not a prefix of the signature's b= (%q)", hb, sig)
			}
			wantResult(t, ar, "spf", "smtp.mailfrom", "bounces@dkim.test", "fail")
			wantResult(t, ar, "dmarc", "header.from", "dkim.test", "pass")
		})
	}
	t.Run("body changed fails, p=reject rejects", func(t *testing.T) {
		id := newID(t.Name())
		msg := bytes.Replace(fixture(t, "dkim/simple.eml"), []byte("two dots"), []byte("three dots"), 1)
		_, err := sendOne(pf.smtpTCP, cl, "bounces@dkim.test", []string{"rcpt@rcpt.test"}, withTestID(id, msg))
		se := wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for dkim.test")
		if se.Stage != "EOM" {
			t.Errorf("rejected at %s, want end of message", se.Stage)
		}
	})
}

// testDMARC: pass and fail under each published policy (RFC 9989 §5.8).
func testDMARC(t *testing.T) {
	for _, p := range []struct{ policy, domain string }{
		{"reject", "dmarc-reject.test"}, {"quarantine", "dmarc-quar.test"}, {"none", "dmarc-none.test"},
	} {
		t.Run("p="+p.policy+"/pass", func(t *testing.T) {
			cl := client{IP: goodV4, Name: "mail." + p.domain, HELO: "mail." + p.domain}
			id := newID(t.Name())
			from := "alice@" + p.domain
			d := deliver(t, pf.smtpTCP, cl, from, message(id, from), id)
			ar := wantAR(t, d)
			wantResult(t, ar, "spf", "smtp.mailfrom", from, "pass")
			wantResult(t, ar, "dmarc", "header.from", p.domain, "pass")
		})
	}
	badClient := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}

	t.Run("p=reject/fail gets 550", func(t *testing.T) {
		id := newID(t.Name())
		from := "alice@dmarc-reject.test"
		_, err := sendOne(pf.smtpTCP, badClient, from, []string{"rcpt@rcpt.test"}, message(id, from))
		se := wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for dmarc-reject.test")
		if se.Stage != "EOM" {
			t.Errorf("rejected at %s, want end of message", se.Stage)
		}
	})

	t.Run("p=quarantine/fail goes to the hold queue", func(t *testing.T) {
		id := newID(t.Name())
		from := "alice@dmarc-quar.test"
		qid, err := sendOne(pf.smtpTCP, badClient, from, []string{"rcpt@rcpt.test"}, message(id, from))
		if err != nil {
			t.Fatal(err)
		}
		held, h, err := pf.held(qid)
		if err != nil || !held {
			q, _ := pf.queueListing()
			t.Fatalf("queue id %s not in the hold queue (err %v); postqueue -p:\n%s", qid, err, q)
		}
		ar := wantAR(t, h)
		r := wantResult(t, ar, "dmarc", "header.from", "dmarc-quar.test", "fail")
		if pol := r.Props["policy.dmarc"]; pol != "quarantine" {
			t.Errorf("policy.dmarc=%q, want quarantine in:\n%s", pol, ar.Raw)
		}
	})

	t.Run("p=none/fail delivered with headers", func(t *testing.T) {
		id := newID(t.Name())
		from := "alice@dmarc-none.test"
		d := deliver(t, pf.smtpTCP, badClient, from, message(id, from), id)
		ar := wantAR(t, d)
		wantResult(t, ar, "spf", "smtp.mailfrom", from, "fail")
		r := wantResult(t, ar, "dmarc", "header.from", "dmarc-none.test", "fail")
		if pol := r.Props["policy.dmarc"]; pol != "none" {
			t.Errorf("policy.dmarc=%q, want none in:\n%s", pol, ar.Raw)
		}
	})

	t.Run("temperror tempfails by default", func(t *testing.T) {
		// _dmarc.dmarc-temp.test answers SERVFAIL: no policy applies
		// (§4.10), and the sender is asked to retry (§7.2; issue #15 item 6).
		id := newID(t.Name())
		from := "alice@dmarc-temp.test"
		_, err := sendOne(pf.smtpTCP, badClient, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 451, "4.7.5 Temporary DNS failure evaluating DMARC policy for dmarc-temp.test")
	})
}

// testAuthResults: our A-R is the top field; forged ones carrying our
// authserv-id are removed, foreign ones kept (RFC 8601 §5).
func testAuthResults(t *testing.T) {
	const foreign = " other.example; spf=pass smtp.mailfrom=x@other.example"
	cl := client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	for _, c := range []struct{ name, forged string }{
		{"forged exact id", "Authentication-Results: mx.rcpt.test; spf=pass smtp.mailfrom=forged@forged.test"},
		{"forged id other case, folded", "Authentication-Results: MX.RCPT.TEST;\r\n\tdkim=pass header.d=forged.test"},
		{"forged id with comment and version", "Authentication-Results: (forged) mx.rcpt.test 1;\r\n dmarc=pass header.from=forged.test"},
		{"forged id without results", "Authentication-Results: mx.rcpt.test; none"},
		// Issue #15 item 7: characters go-msgauth and Perl readers take for
		// white space around the id.
		{"forged id after VT", "Authentication-Results:\vmx.rcpt.test; dmarc=pass header.from=forged.test"},
		{"forged id before FF", "Authentication-Results: mx.rcpt.test\f; dmarc=pass header.from=forged.test"},
		{"forged id after NO-BREAK SPACE", "Authentication-Results:\u00a0mx.rcpt.test; dmarc=pass header.from=forged.test"},
		{"forged id before NEL", "Authentication-Results: mx.rcpt.test\u0085; dmarc=pass header.from=forged.test"},
		{"forged field with space before the colon", "Authentication-Results : mx.rcpt.test; dmarc=pass header.from=forged.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newID(t.Name())
			from := "alice@spf-pass.test"
			msg := message(id, from, c.forged, "Authentication-Results:"+foreign)
			d := deliver(t, pf.smtpTCP, cl, from, msg, id)
			ar := wantAR(t, d) // exactly one of ours, at the top
			if strings.Contains(strings.ToLower(ar.Raw), "forged") {
				t.Errorf("forged content in our A-R:\n%s", ar.Raw)
			}
			wantResult(t, ar, "spf", "smtp.mailfrom", from, "pass")
			var kept bool
			for _, v := range d.get("Authentication-Results") {
				if v == foreign {
					kept = true
				}
			}
			if !kept {
				t.Errorf("foreign A-R %q not kept byte for byte:\n%s", foreign, d.headerText())
			}
			for _, v := range d.get("Authentication-Results") {
				if strings.Contains(strings.ToLower(v), "forged") {
					t.Errorf("forged A-R delivered: %q", v)
				}
			}
		})
	}
}

// testTwoMessages: several transactions on one SMTP connection each get
// their own results, also after a reject (go-milter resets on replies).
func testTwoMessages(t *testing.T) {
	cl := client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	s, err := dial(pf.smtpTCP, cl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	steps := []struct {
		from, spf, dmarcDomain, dmarc string
		reject                        bool
	}{
		{"a@spf-pass.test", "pass", "", "", false},
		{"b@spf-fail.test", "fail", "", "", false},
		{"c@dmarc-reject.test", "pass", "dmarc-reject.test", "pass", false},
		{"d@spf-none.test", "none", "", "", false},
	}
	var ids []string
	for i, st := range steps {
		id := newID(t.Name())
		if _, err := s.send(st.from, []string{"rcpt@rcpt.test"}, message(id, st.from)); err != nil {
			t.Fatalf("message %d (%s): %v", i+1, st.from, err)
		}
		ids = append(ids, id)
	}
	for i, st := range steps {
		d, err := pf.waitDelivered(ids[i])
		if err != nil {
			t.Fatal(err)
		}
		ar := wantAR(t, d)
		wantResult(t, ar, "spf", "smtp.mailfrom", st.from, st.spf)
		if st.dmarcDomain != "" {
			wantResult(t, ar, "dmarc", "header.from", st.dmarcDomain, st.dmarc)
		}
	}
	// A DMARC reject in the middle of a session: SPF passes for the MAIL
	// FROM domain, which is not aligned with the From domain (p=reject).
	idr := newID(t.Name())
	_, err = s.send("e@spf-pass.test", []string{"rcpt@rcpt.test"}, message(idr, "e@dmarc-reject.test"))
	wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for dmarc-reject.test")
	id := newID(t.Name())
	if _, err := s.send("f@spf-softfail.test", []string{"rcpt@rcpt.test"}, message(id, "f@spf-softfail.test")); err != nil {
		t.Fatalf("message after a reject: %v", err)
	}
	d, err := pf.waitDelivered(id)
	if err != nil {
		t.Fatal(err)
	}
	wantResult(t, wantAR(t, d), "spf", "smtp.mailfrom", "f@spf-softfail.test", "softfail")
}

// testAuthenticated: XCLIENT LOGIN= sets {auth_authen}; with
// skip_authenticated the message passes untouched, without it it is checked.
func testAuthenticated(t *testing.T, dnsAddr string) {
	cl := client{IP: badV4, Name: "laptop.example.net", HELO: "laptop.example.net", Login: "alice"}
	from := "alice@dmarc-reject.test" // would be rejected if checked
	t.Run("skipped with skip_authenticated", func(t *testing.T) {
		id := newID(t.Name())
		d := deliver(t, pf.smtpTCP, cl, from, message(id, from), id)
		if ars, _ := d.ours(); len(ars) != 0 {
			t.Errorf("authenticated mail got our A-R:\n%s", d.headerText())
		}
	})
	t.Run("checked without skip_authenticated", func(t *testing.T) {
		cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
		cfg.SkipAuthenticated = false
		runMilter(t, "noskip", cfg)
		id := newID(t.Name())
		_, err := sendOne(pf.smtpAlt, cl, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 550, "5.7.1 Email rejected per DMARC policy for dmarc-reject.test")
	})
}

// testUnixSocket: the same milter reached over its Unix socket.
func testUnixSocket(t *testing.T) {
	cl := client{IP: goodV6, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	id := newID(t.Name())
	from := "alice@spf-pass.test"
	d := deliver(t, pf.smtpUnix, cl, from, message(id, from), id)
	wantResult(t, wantAR(t, d), "spf", "smtp.mailfrom", from, "pass")
}

// testVariants: configuration switches, each with its own milter instance
// behind the alt port.
func testVariants(t *testing.T, dnsAddr string) {
	bad := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}

	t.Run("monitor mode", func(t *testing.T) {
		cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
		cfg.Monitor = true
		runMilter(t, "monitor", cfg)
		for _, c := range []struct{ policy, domain string }{{"reject", "dmarc-reject.test"}, {"quarantine", "dmarc-quar.test"}} {
			t.Run("p="+c.policy+" fail delivered", func(t *testing.T) {
				id := newID(t.Name())
				from := "alice@" + c.domain
				d := deliver(t, pf.smtpAlt, bad, from, message(id, from), id)
				wantResult(t, wantAR(t, d), "dmarc", "header.from", c.domain, "fail")
			})
		}
		t.Run("dkim body changed reported as fail", func(t *testing.T) {
			id := newID(t.Name())
			msg := bytes.Replace(fixture(t, "dkim/relaxed.eml"), []byte("two dots"), []byte("three dots"), 1)
			d := deliver(t, pf.smtpAlt, bad, "bounces@dkim.test", withTestID(id, msg), id)
			ar := wantAR(t, d)
			wantResult(t, ar, "dkim", "header.d", "dkim.test", "fail")
			wantResult(t, ar, "dmarc", "header.from", "dkim.test", "fail")
		})
	})

	t.Run("quarantine=header", func(t *testing.T) {
		cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
		cfg.Quarantine = "header"
		runMilter(t, "qheader", cfg)
		id := newID(t.Name())
		from := "alice@dmarc-quar.test"
		d := deliver(t, pf.smtpAlt, bad, from, message(id, from), id)
		wantResult(t, wantAR(t, d), "dmarc", "header.from", "dmarc-quar.test", "fail")
	})

	t.Run("dns down gives temperror, accepted with temperror=accept", func(t *testing.T) {
		// A milter of its own whose only DNS server stops answering: fail
		// safe (temperror, never a fail or reject) and say so in the header.
		down := startDNS(t)
		cfg := defaultConfig(down.Addr(), "inet:"+pf.milterAlt)
		cfg.Temperror = "accept"
		runMilter(t, "dnsdown", cfg)
		down.Stop()
		id := newID(t.Name())
		from := "alice@dmarc-reject.test"
		d := deliver(t, pf.smtpAlt, bad, from, message(id, from), id)
		ar := wantAR(t, d)
		wantResult(t, ar, "spf", "smtp.mailfrom", from, "temperror")
		wantResult(t, ar, "dmarc", "header.from", "dmarc-reject.test", "temperror")
	})

	t.Run("temperror=tempfail", func(t *testing.T) {
		cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
		cfg.Temperror = "tempfail"
		runMilter(t, "tempfail", cfg)
		id := newID(t.Name())
		from := "alice@dmarc-temp.test"
		_, err := sendOne(pf.smtpAlt, bad, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 451, "4.")
	})
}

// testStopRestart: with the milter gone Postfix applies
// milter_default_action = tempfail (451 4.7.1); once it is back, mail flows
// again without touching Postfix.
func testStopRestart(t *testing.T, dnsAddr string) {
	cfg := defaultConfig(dnsAddr, "inet:"+pf.milterAlt)
	cl := client{IP: goodV4, Name: "mail.spf-pass.test", HELO: "mail.spf-pass.test"}
	from := "alice@spf-pass.test"
	check := func(t *testing.T) {
		id := newID(t.Name())
		d := deliver(t, pf.smtpAlt, cl, from, message(id, from), id)
		wantResult(t, wantAR(t, d), "spf", "smtp.mailfrom", from, "pass")
	}

	m := runMilter(t, "restart-1", cfg)
	t.Run("running", check)
	t.Run("stopped gives 451", func(t *testing.T) {
		if err := m.stop(); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		id := newID(t.Name())
		_, err := sendOne(pf.smtpAlt, cl, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 451, "4.7.1")
	})
	t.Run("restarted", func(t *testing.T) {
		runMilter(t, "restart-2", cfg)
		check(t)
	})
}
