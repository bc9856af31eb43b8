package engine_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// MessageBudget bounds all of a message's DNS work, even when every other
// bound (resolver timeout, SPF budget, the caller's context) is an hour:
// SPF, the DKIM key lookup (which holds the body stream) and DMARC
// discovery all end in temperror, never in a pass or fail.
func TestMessageBudget(t *testing.T) {
	d := dnstest.New(t, zone)
	for _, n := range []string{"example.org.", "_dmarc.example.org.", "sel._domainkey.example.org.", "org.", "_dmarc.org.", "mx.example.org."} {
		d.Drop(n)
	}
	r, err := resolver.New(resolver.Config{Servers: []string{d.Addr()}, Timeout: time.Hour, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	o := engine.DefaultOptions()
	o.SPFTimeout = time.Hour
	o.MessageBudget = 300 * time.Millisecond
	e := engine.New(r, o)

	got := make(chan *engine.Result, 1)
	go func() {
		m := e.Begin(context.Background(), engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mx.example.org", MailFrom: "a@example.org"})
		m.Header("DKIM-Signature", " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; h=from;"+
			" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==")
		m.Header("From", " a@example.org")
		m.EndOfHeaders()
		m.Body([]byte("body\r\n")) // blocks while the key lookup is pending
		got <- m.Finish(context.Background())
	}()
	var res *engine.Result
	select {
	case res = <-got:
	case <-time.After(60 * time.Second): // liveness bound, far above the budget
		t.Fatal("the message budget did not end the DNS work")
	}
	if res.SPF.Status != spfcheck.StatusTempError || res.HELO.Status != spfcheck.StatusTempError {
		t.Errorf("spf %+v helo %+v, want temperror", res.SPF, res.HELO)
	}
	if len(res.DKIM) != 1 || res.DKIM[0].Status != dkimverify.StatusTempError {
		t.Errorf("dkim %+v, want one temperror", res.DKIM)
	}
	if res.DMARC.Status != dmarc.StatusTempError {
		t.Errorf("dmarc %+v, want temperror", res.DMARC)
	}
}

// The default budget is on and below Postfix's milter_content_timeout.
func TestMessageBudgetDefault(t *testing.T) {
	if b := engine.DefaultOptions().MessageBudget; b <= 0 || b >= 300*time.Second {
		t.Errorf("default MessageBudget %v", b)
	}
}
