package engine_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/authres"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/resultheader"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

const zone = `
example.org.        300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"
`

func newEngine(t *testing.T, o engine.Options) (*engine.Engine, *dnstest.Server) {
	t.Helper()
	d := dnstest.New(t, zone)
	// Generous: the tests that expect answers must not fail on a loaded
	// machine (issue 19); the ones about waiting bound it with their own
	// context (TestFinishDeadline) or abort (TestAbort).
	r, err := resolver.New(resolver.Config{Servers: []string{d.Addr()}, Timeout: 5 * time.Second, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return engine.New(r, o), d
}

func run(e *engine.Engine, ctx context.Context, headers [][2]string) *engine.Result {
	m := e.Begin(ctx, engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "mx.example.org", MailFrom: "a@example.org"})
	for _, h := range headers {
		m.Header(h[0], h[1])
	}
	m.EndOfHeaders()
	m.Body([]byte("body\r\n"))
	return m.Finish(ctx)
}

func TestEngine(t *testing.T) {
	from := [][2]string{{"From", " a@example.org"}}
	tests := []struct {
		name    string
		edit    func(*engine.Options)
		headers [][2]string
		check   func(*testing.T, *engine.Result)
	}{
		{"all checks", nil, from, func(t *testing.T, r *engine.Result) {
			if r.SPF.Status != spfcheck.StatusPass || r.DMARC.Status != dmarc.StatusPass || r.DKIM == nil || len(r.DKIM) != 0 {
				t.Errorf("%+v", r)
			}
		}},
		{"dkim=none for an unsigned message", nil, from, func(t *testing.T, r *engine.Result) {
			if !hasAR(r, "dkim", "none") {
				t.Errorf("%+v", resultheader.AuthResults(r))
			}
		}},
		{"checks off", func(o *engine.Options) { o.SPF, o.DKIM, o.ARC, o.DMARC = false, false, false, false }, from, func(t *testing.T, r *engine.Result) {
			if len(resultheader.AuthResults(r)) != 0 {
				t.Errorf("%+v", resultheader.AuthResults(r))
			}
		}},
		{"no From", nil, [][2]string{{"Subject", " x"}}, func(t *testing.T, r *engine.Result) {
			if r.DMARC.Status != dmarc.StatusPermError || r.FromProblem == "" {
				t.Errorf("%+v", r.DMARC)
			}
		}},
		{"header block too large", func(o *engine.Options) { o.MaxHeaderBytes = 100 },
			append([][2]string{{"DKIM-Signature", " v=1; d=example.org; s=x; " + strings.Repeat("a", 200)}}, from...),
			func(t *testing.T, r *engine.Result) {
				if !r.HeaderTooLarge || len(r.DKIM) != 1 || r.DKIM[0].Status != dkimverify.StatusPermError {
					t.Errorf("%+v", r.DKIM)
				}
				if r.DMARC.Status != dmarc.StatusPass { // SPF still aligns
					t.Errorf("%+v", r.DMARC)
				}
			}},
		{"too many header fields", func(o *engine.Options) { o.MaxHeaders = 3 },
			append(append([][2]string{}, from...), [2]string{"A", " 1"}, [2]string{"B", " 2"}, [2]string{"C", " 3"}),
			func(t *testing.T, r *engine.Result) {
				if !r.HeaderTooLarge {
					t.Error("not flagged")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := engine.DefaultOptions()
			if tt.edit != nil {
				tt.edit(&o)
			}
			e, _ := newEngine(t, o)
			tt.check(t, run(e, context.Background(), tt.headers))
		})
	}
}

// Finish's context bounds the wait: checks still running report temperror.
func TestFinishDeadline(t *testing.T) {
	e, d := newEngine(t, engine.DefaultOptions())
	d.Drop("example.org.")
	d.Drop("_dmarc.example.org.")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := run(e, ctx, [][2]string{{"From", " a@example.org"}})
	if r.SPF.Status != spfcheck.StatusTempError || r.DMARC.Status != dmarc.StatusTempError {
		t.Errorf("spf %v dmarc %v", r.SPF, r.DMARC)
	}
}

// Abort releases the lookups in flight; the message can't be finished after.
func TestAbort(t *testing.T) {
	e, d := newEngine(t, engine.DefaultOptions())
	d.Drop("example.org.")
	m := e.Begin(context.Background(), engine.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), HELO: "h.example", MailFrom: "a@example.org"})
	m.Header("From", " a@example.org")
	m.Abort()
	m.Abort() // twice is fine
}

func hasAR(r *engine.Result, method, value string) bool {
	for _, a := range resultheader.AuthResults(r) {
		if a.Method == method && a.Value == value {
			return true
		}
	}
	return false
}

var _ = authres.Format
