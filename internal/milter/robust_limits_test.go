package milter_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/authres"
)

// results returns method → values of the A-R, in order.
func results(t *testing.T, ar string) map[string][]authres.Result {
	t.Helper()
	_, rs := authres.Parse(ar)
	out := map[string][]authres.Result{}
	for _, r := range rs {
		out[r.Method] = append(out[r.Method], r)
	}
	return out
}

// The per-message limits, each set low through the configuration and
// exercised through the milter: what is over the limit is reported, not
// silently dropped, and costs no more work.
func TestRobustLimits(t *testing.T) {
	sig := func(d string) [2]string {
		// Well-formed (b= is base64), so each is one the verifier would
		// look up: only the cap can stop it.
		b := base64.StdEncoding.EncodeToString([]byte(d))
		return [2]string{"DKIM-Signature", " v=1; a=rsa-sha256; d=" + d + "; s=sel; h=from; bh=AAAA; b=" + b}
	}

	t.Run("max_headers", func(t *testing.T) {
		r := newRig(t, signedZone(t), rigOptions{edit: func(c *config.Config) { c.Milter.MaxHeaders = 20 }})
		fields, body := signedMessage(t)
		for i := range 30 {
			fields = append(fields, [2]string{"X-Filler", fmt.Sprintf(" %d", i)})
		}
		o := r.sendOne(t, message{ip: "192.0.2.1", helo: "mx.example.org", from: "alice@example.org", headers: fields, body: []string{body}})
		rs := results(t, o.AR())
		if d := rs["dkim"]; len(d) != 1 || d[0].Value != "permerror" || !strings.Contains(d[0].Reason, "too large") {
			t.Errorf("dkim %+v, want permerror (header block too large)", d)
		}
		if rs["spf"][0].Value != "pass" || rs["dmarc"][0].Value == "" {
			t.Errorf("the other checks: %+v", rs)
		}
	})

	t.Run("max_header_bytes", func(t *testing.T) {
		r := newRig(t, signedZone(t), rigOptions{edit: func(c *config.Config) { c.Milter.MaxHeaderBytes = 2048 }})
		fields, body := signedMessage(t)
		fields = append(fields, [2]string{"X-Big", " " + strings.Repeat("b", 3000)})
		o := r.sendOne(t, message{ip: "192.0.2.1", helo: "mx.example.org", from: "alice@example.org", headers: fields, body: []string{body}})
		if d := results(t, o.AR())["dkim"]; len(d) != 1 || d[0].Value != "permerror" {
			t.Errorf("dkim %+v, want permerror (header block too large)", d)
		}
		// Under the limit the same message verifies.
		r2 := newRig(t, signedZone(t), rigOptions{})
		o = r2.sendOne(t, message{ip: "192.0.2.1", helo: "mx.example.org", from: "alice@example.org", headers: fields, body: []string{body}})
		if d := results(t, o.AR())["dkim"]; len(d) != 1 || d[0].Value != "pass" {
			t.Errorf("under the limit: dkim %+v, want pass", d)
		}
	})

	t.Run("dkim max_signatures", func(t *testing.T) {
		r := newRig(t, robustZone, rigOptions{edit: func(c *config.Config) { c.DKIM.MaxSignatures = 3 }})
		m := stdMessage("sender.test")
		for i := range 7 {
			m.headers = append(m.headers, sig(fmt.Sprintf("d%d.test", i)))
		}
		before := r.dns.Queries()
		o := r.sendOne(t, m)
		queries := r.dns.Queries() - before
		d := results(t, o.AR())["dkim"]
		if len(d) != 7 {
			t.Fatalf("%d dkim results, want all 7 reported", len(d))
		}
		for i, x := range d {
			policy := x.Value == "policy"
			if policy != (i >= 3) {
				t.Errorf("signature %d: %s (%s); want policy exactly beyond the first 3", i, x.Value, x.Reason)
			}
		}
		// SPF (MAIL FROM, HELO), the DMARC walk and 3 key lookups at most.
		if queries > 3+3+3 {
			t.Errorf("%d DNS queries: signatures beyond the limit were looked up", queries)
		}
	})

	t.Run("dmarc max_author_domains", func(t *testing.T) {
		r := newRig(t, robustZone, rigOptions{edit: func(c *config.Config) { c.DMARC.MaxAuthorDomains = 2 }})
		m := stdMessage("sender.test")
		var addrs []string
		for i := range 8 {
			addrs = append(addrs, fmt.Sprintf("a@a%d.test", i))
		}
		m.headers[0][1] = " " + strings.Join(addrs, ", ")
		before := r.dns.Queries()
		o := r.sendOne(t, m)
		queries := r.dns.Queries() - before
		dm := results(t, o.AR())["dmarc"]
		if len(dm) != 1 || dm[0].Value != "permerror" {
			t.Errorf("dmarc %+v, want permerror (evaluation incomplete)", dm)
		}
		// Each evaluated domain walks at most _dmarc.aN.test and
		// _dmarc.test: 2 domains, 4 queries, plus SPF's 2.
		if queries > 2*2+2 {
			t.Errorf("%d DNS queries for 2 evaluated author domains", queries)
		}
	})
}
