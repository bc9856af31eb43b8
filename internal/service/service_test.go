package service_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/config"
)

// Postfix keeps one milter connection per SMTP connection and does not send
// CONNECT again for the second message: both must see the client address.
func TestTwoMessagesOneConnection(t *testing.T) {
	h := newHarness(t, baseZone, nil)
	c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	for i := 0; i < 2; i++ {
		r := c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "hi\r\n"})
		ar := r.ar(t)
		for _, want := range []string{"spf=pass", "smtp.mailfrom=alice@sender.test", "192.0.2.1", "dmarc=pass"} {
			if !strings.Contains(ar, want) {
				t.Errorf("message %d: A-R lacks %q:\n%s", i+1, want, ar)
			}
		}
		if r.reply() != "" {
			t.Errorf("message %d: reply %q", i+1, r.reply())
		}
	}
	// A third message from a sender not permitted for this IP on the same
	// connection is judged on the same client address.
	r := c.send(msg{from: "bob@other.test", headers: stdHeaders("other.test"), body: "hi\r\n"})
	if ar := r.ar(t); !strings.Contains(ar, "spf=fail") || !strings.Contains(ar, "192.0.2.1") {
		t.Errorf("third message: %s", ar)
	}
}

func TestSPFResults(t *testing.T) {
	h := newHarness(t, baseZone, func(c *config.Config) { c.DMARC.Monitor = true })
	tests := []struct {
		name, ip, helo, from string
		want                 []string
	}{
		{"pass v4", "192.0.2.9", "mx.sender.test", "a@sender.test", []string{"spf=pass smtp.mailfrom=a@sender.test"}},
		{"pass v6", "2001:db8::25", "mx.sender.test", "a@sender.test", []string{"spf=pass smtp.mailfrom=a@sender.test", "2001:db8::25"}},
		{"fail", "198.51.100.7", "mx.sender.test", "a@sender.test", []string{"spf=fail", "198.51.100.7"}},
		{"softfail", "198.51.100.7", "mx.sender.test", "a@soft.test", []string{"spf=softfail"}},
		{"none", "198.51.100.7", "mx.sender.test", "a@nospf.test", []string{"spf=none smtp.mailfrom=a@nospf.test"}},
		{"helo pass", "192.0.2.1", "mx.sender.test", "a@sender.test", []string{"spf=pass smtp.helo=mx.sender.test"}},
		{"null sender uses HELO", "192.0.2.1", "mx.sender.test", "", []string{"spf=pass smtp.mailfrom=postmaster@mx.sender.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.connect(tt.ip, "["+tt.ip+"]", tt.helo)
			ar := c.send(msg{from: tt.from, headers: stdHeaders("sender.test"), body: "x\r\n"}).ar(t)
			for _, w := range tt.want {
				if !hasResult(ar, w) && !strings.Contains(ar, w) {
					t.Errorf("A-R lacks %q:\n%s", w, ar)
				}
			}
		})
	}
}

// RFC 8601 §5: existing A-R fields with our authserv-id are removed, others
// kept; ours goes to the very top.
func TestForgedAuthResultsRemoved(t *testing.T) {
	h := newHarness(t, baseZone, nil)
	c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	hdrs := append([][2]string{
		{"Authentication-Results", " other.example; spf=pass smtp.mailfrom=x@y"},
		{"Authentication-Results", " MX.RCPT.TEST; dmarc=pass header.from=paypal.com"},
		{"authentication-results", " mx.rcpt.test (malformed"},
		{"Authentication-Results", " (comment) mx.rcpt.test; dkim=pass"},
	}, stdHeaders("sender.test")...)
	r := c.send(msg{from: "alice@sender.test", headers: hdrs, body: "x\r\n"})
	r.ar(t)
	var deleted []uint32
	for _, m := range r.mods {
		if m.Code == gomilter.ActChangeHeader {
			if !strings.EqualFold(m.HeaderName, "Authentication-Results") || m.HeaderValue != "" {
				t.Errorf("unexpected change %+v", m)
			}
			deleted = append(deleted, m.HeaderIndex)
		}
	}
	// Indexes are 1-based per name, highest first so the others stay valid.
	if len(deleted) != 3 || deleted[0] != 4 || deleted[1] != 3 || deleted[2] != 2 {
		t.Errorf("deleted indexes %v, want [4 3 2]", deleted)
	}
	if len(r.mods) != 4 {
		t.Errorf("want 3 deletes and 1 insert, got %+v", r.mods)
	}
}

func TestIgnoredHostsAndAuthenticated(t *testing.T) {
	h := newHarness(t, baseZone, func(c *config.Config) {
		c.Policy.IgnoreHosts = []string{"127.0.0.0/8", "::1", "203.0.113.0/24", ".relay.test"}
	})
	tests := []struct{ name, ip, host, auth string }{
		{"loopback", "127.0.0.1", "localhost", ""},
		{"cidr", "203.0.113.5", "[203.0.113.5]", ""},
		{"host name", "198.51.100.1", "out.relay.test", ""},
		{"authenticated", "198.51.100.2", "[198.51.100.2]", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.connect(tt.ip, tt.host, "client.test")
			r := c.send(msg{from: "alice@other.test", auth: tt.auth, headers: stdHeaders("other.test"), body: "x\r\n"})
			if len(r.mods) != 0 || r.reply() != "" {
				t.Errorf("ignored client got mods %+v reply %q", r.mods, r.reply())
			}
		})
	}
	// Authenticated clients are checked when so configured.
	h2 := newHarness(t, baseZone, func(c *config.Config) { c.Policy.SkipAuthenticated = false })
	c := h2.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	c.send(msg{from: "alice@sender.test", auth: "alice", headers: stdHeaders("sender.test"), body: "x\r\n"}).ar(t)
}

// With the DNS server gone, SPF ends in temperror within its budget and the
// milter goes on serving.
func TestDNSDownGivesTemperror(t *testing.T) {
	h := newHarness(t, baseZone, func(c *config.Config) { c.SPF.CheckHELO = false })
	h.dns.Stop()
	c := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	start := time.Now()
	ar := c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "x\r\n"}).ar(t)
	if !strings.Contains(ar, "spf=temperror") || !strings.Contains(ar, "dmarc=temperror") {
		t.Errorf("A-R:\n%s", ar)
	}
	t.Logf("end of message after %v with DNS down", time.Since(start).Round(time.Millisecond))
	// The next message on a new connection is served too.
	c2 := h.connect("192.0.2.1", "mx.sender.test", "mx.sender.test")
	if ar := c2.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test")}).ar(t); !strings.Contains(ar, "spf=temperror") {
		t.Errorf("second: %s", ar)
	}
}

// A DNS server that never answers: the SPF budget ends the wait.
func TestSPFBudget(t *testing.T) {
	h := newHarness(t, baseZone, func(c *config.Config) {
		c.SPF.Timeout = config.Duration{Duration: 500 * time.Millisecond}
		c.DNS.Timeout = config.Duration{Duration: 2 * time.Second}
		c.DNS.Attempts = 3
		c.DMARC.Enabled = false
	})
	h.dns.Drop("slow.test.")
	c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
	ar := c.send(msg{from: "a@slow.test", headers: stdHeaders("slow.test")}).ar(t)
	if !strings.Contains(ar, "spf=temperror smtp.mailfrom") && !strings.Contains(ar, "spf=temperror (") {
		t.Errorf("A-R:\n%s", ar)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, baseZone, nil)
	big := strings.Repeat("x", 500*1024)
	tests := []struct {
		name string
		m    msg
	}{
		{"malformed MAIL FROM", msg{from: "no-at-sign<>\"; (", headers: stdHeaders("sender.test"), body: "x\r\n"}},
		{"MAIL FROM with only @", msg{from: "@", headers: stdHeaders("sender.test")}},
		{"NUL bytes in a header", msg{from: "a@sender.test", headers: append(stdHeaders("sender.test"), [2]string{"X-Nul", " a\x00b"}), body: "nul\x00body\r\n"}},
		{"8-bit headers", msg{from: "a@sender.test", headers: [][2]string{{"From", " Jörg <jörg@bücher.test>"}, {"Subject", " caf\xe9 \xff\xfe"}}, body: "x\r\n"}},
		{"500 KB header", msg{from: "a@sender.test", headers: append(stdHeaders("sender.test"), [2]string{"X-Big", " " + big}), body: "x\r\n"}},
		{"unknown macro", msg{from: "a@sender.test", headers: stdHeaders("sender.test"), macros: []string{"{no_such_macro}", "v", "{x}", ""}, body: "x\r\n"}},
		{"no headers at all", msg{from: "a@sender.test", body: "just a body\r\n"}},
		{"garbage From", msg{from: "a@sender.test", headers: [][2]string{{"From", " <<<@@@>>>"}, {"From", ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
			c.send(tt.m).ar(t)
			// The daemon still serves the next message.
			c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "x\r\n"}).ar(t)
		})
	}
}

// SIGTERM's path: Shutdown waits for a message in flight, which completes.
func TestShutdownFinishesMessageInFlight(t *testing.T) {
	h := newHarness(t, baseZone+"\nslowdmarc.test. 300 IN TXT \"v=spf1 -all\"\n", func(c *config.Config) {
		c.DNS.Timeout = config.Duration{Duration: 2 * time.Second}
	})
	h.dns.Drop("_dmarc.slowdmarc.test.")
	c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
	idle := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
	_ = idle
	got := make(chan result, 1)
	go func() {
		// No Abort after the reply: the server may close the connection
		// as soon as the reply is out.
		got <- c.send(msg{from: "a@slowdmarc.test", headers: stdHeaders("slowdmarc.test"), body: "x\r\n", noAbort: true})
	}()
	time.Sleep(500 * time.Millisecond) // the message is waiting on DNS (2 s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// Shutdown returned once the reply was written; the client reads it.
	select {
	case r := <-got:
		if ar := r.ar(t); !strings.Contains(ar, "dmarc=temperror") {
			t.Errorf("A-R: %s", ar)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message in flight got no reply")
	}
	if n := h.srv.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	// New connections are refused now.
	if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
}

func TestServfailIsTemperror(t *testing.T) {
	h := newHarness(t, baseZone, nil)
	h.dns.Fail("sender.test.", dns.RcodeServerFailure)
	c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
	ar := c.send(msg{from: "a@sender.test", headers: stdHeaders("quar.test")}).ar(t)
	if !strings.Contains(ar, "spf=temperror") {
		t.Errorf("A-R: %s", ar)
	}
}

// RFC 7208 §9.1: the optional Received-SPF field, below our A-R.
func TestReceivedSPF(t *testing.T) {
	h := newHarness(t, baseZone, func(c *config.Config) { c.SPF.ReceivedSPFHeader = true })
	c := h.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test")
	r := c.send(msg{from: "alice@sender.test", headers: stdHeaders("sender.test"), body: "x\r\n"})
	var names []string
	var rspf string
	for _, m := range r.mods {
		if m.Code == gomilter.ActInsertHeader {
			names = append(names, m.HeaderName)
			if m.HeaderName == "Received-SPF" {
				rspf = m.HeaderValue
			}
		}
	}
	// Inserted at 0 in reverse order, so that A-R ends up on top.
	if strings.Join(names, ",") != "Received-SPF,Authentication-Results" {
		t.Errorf("inserted %v", names)
	}
	for _, w := range []string{" pass (mx.rcpt.test: domain of alice@sender.test designates 192.0.2.1", "client-ip=192.0.2.1;",
		"envelope-from=alice@sender.test;", "helo=mx.sender.test;", "receiver=mx.rcpt.test;", "identity=mailfrom"} {
		if !strings.Contains(rspf, w) {
			t.Errorf("Received-SPF lacks %q: %q", w, rspf)
		}
	}
	// Off by default.
	h2 := newHarness(t, baseZone, nil)
	for _, m := range h2.connect("192.0.2.1", "[192.0.2.1]", "mx.sender.test").send(msg{from: "a@sender.test", headers: stdHeaders("sender.test")}).mods {
		if m.HeaderName == "Received-SPF" {
			t.Error("Received-SPF added by default")
		}
	}
}
