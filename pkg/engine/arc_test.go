package engine_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
)

// feed runs a whole message file through the engine as the milter does.
func feed(t *testing.T, e *engine.Engine, file string) *engine.Result {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	ctx := context.Background()
	m := e.Begin(ctx, engine.Envelope{ClientIP: netip.MustParseAddr("198.51.100.20"), HELO: "mail.lists.example", MailFrom: "list-bounces@lists.example"})
	var name, value string
	flush := func() {
		if name != "" {
			m.Header(name, value)
		}
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			value += "\r\n" + line // folds as internal/milter hands them: CRLF
			continue
		}
		flush()
		name, value, _ = strings.Cut(line, ":")
	}
	flush()
	m.EndOfHeaders()
	m.Body(body)
	return m.Finish(ctx)
}

// RFC 8617 §10: arc=none|pass|fail with header.oldest-pass and
// smtp.remote-ip, from the engine's result.
func TestARCAuthResults(t *testing.T) {
	keys, err := os.ReadFile("../arc/testdata/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	d := dnstest.New(t, string(keys))
	r, err := resolver.New(resolver.Config{Servers: []string{d.Addr()}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file string
		off  bool
		want string // the arc resinfo as formatted; "" for none written
	}{
		{"list-footer.eml", false, "arc=pass (as[2].d=lists.example as[2].s=s2) header.oldest-pass=2 smtp.remote-ip=192.0.2.10"},
		{"three-hops.eml", false, "arc=pass (as[3].d=relay.example as[3].s=s3) smtp.remote-ip=192.0.2.10"},
		{"cv-fail.eml", false, "arc=fail (chain marked cv=fail)"},
		{"none.eml", false, "arc=none"},
		{"two-hops.eml", true, ""},
	}
	for _, tt := range tests {
		o := engine.DefaultOptions()
		o.ARC = !tt.off
		res := feed(t, engine.New(r, o), "../arc/testdata/chains/"+tt.file)
		got := ""
		for _, ar := range resultheader.AuthResults(res) {
			if ar.Method == "arc" {
				got = strings.TrimPrefix(authres.Format("x", []authres.Result{ar}), "x;\r\n\t")
				got = strings.Join(strings.Fields(got), " ")
			}
		}
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.file, got, tt.want)
		}
		if tt.off && res.ARC.Status != "" || !tt.off && res.ARC.Status == "" {
			t.Errorf("%s: status %q with ARC off=%v", tt.file, res.ARC.Status, tt.off)
		}
	}
	// A chain but the header block over max_header_bytes: not verified.
	o := engine.DefaultOptions()
	o.MaxHeaderBytes = 200
	if res := feed(t, engine.New(r, o), "../arc/testdata/chains/one-hop.eml"); res.ARC.Status != arc.StatusFail {
		t.Errorf("too large: %+v", res.ARC)
	}
}
