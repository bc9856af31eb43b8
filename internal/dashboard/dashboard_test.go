package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/incoming"
	"github.com/authmilter/authmilter/internal/incoming/incomingtest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

const token = "0123456789abcdef-test-token"

// now is the dashboard's clock in the tests: the seeded reports are in the
// last 30 days before it.
var now = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

// seed fills a fresh SQLite store: two reports about example.org (1,550
// messages, 1,400 passing DMARC; 150 failing from two sources), one about
// example.com, and this MX's records of three author domains.
func seed(t testing.TB) *store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "r.db"), SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in := &incoming.Ingester{Store: st, Domains: []string{"example.org", "example.com"}}
	day := func(n int) int64 { return now.Truncate(24*time.Hour).AddDate(0, 0, -n).Unix() }
	for _, x := range [][]byte{
		incomingtest.XML("google.test", "g1", "example.org", day(2),
			incomingtest.Row{IP: "192.0.2.1", Count: 900, DKIM: "pass", SPF: "pass"},
			incomingtest.Row{IP: "198.51.100.7", Count: 100, DKIM: "fail", SPF: "fail", Disposition: "reject"}),
		incomingtest.XML("microsoft.test", "m1", "example.org", day(1),
			incomingtest.Row{IP: "192.0.2.1", Count: 500, DKIM: "pass", SPF: "fail"},
			incomingtest.Row{IP: "203.0.113.9", Count: 50, DKIM: "fail", SPF: "fail", DKIMRes: "pass"}),
		incomingtest.XML("google.test", "g2", "example.com", day(3),
			incomingtest.Row{IP: "192.0.2.2", Count: 10, DKIM: "pass", SPF: "pass"}),
	} {
		if res, err := in.File(context.Background(), x, "seed"); err != nil || res.Stored != 1 {
			t.Fatalf("seed: %+v %v", res, err)
		}
	}
	var recs []report.Record
	for i, r := range []struct {
		from, disp, dmarc string
		n                 int
	}{{"example.net", "pass", "pass", 30}, {"example.net", "reject", "fail", 4}, {"spoofed.test", "quarantine", "fail", 6}, {"nodmarc.test", "none", "none", 2}} {
		for range r.n {
			recs = append(recs, report.Record{Time: now.Add(-time.Duration(i+1) * time.Hour), HeaderFrom: r.from, SourceIP: "192.0.2.50",
				Disposition: r.disp, DMARCResult: r.dmarc, Policy: report.PolicyPublished{Domain: r.from}})
		}
	}
	if err := st.Put(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	return st
}

func testServer(t testing.TB, st *store.Store) *httptest.Server {
	// Reverse names through the real resolver from a test DNS server: one
	// source has a PTR record, the others none.
	dns := dnstest.New(t, "1.2.0.192.in-addr.arpa. 300 IN PTR mail.example.org.\n")
	res, err := resolver.New(resolver.Config{Servers: []string{dns.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(Options{Store: st, Auth: Auth{Token: token}, Now: func() time.Time { return now }, Names: ReverseNames(res)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, auth string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAuthAndHeaders: no page, API or asset is served without the token
// (or with a wrong one, or with basic auth when only a token is set);
// every answer carries the security headers.
func TestAuthAndHeaders(t *testing.T) {
	srv := testServer(t, seed(t))
	for _, path := range []string{"/", "/domain?d=example.org", "/sources?d=example.org", "/policy?d=example.org", "/local",
		"/api/overview", "/api/domain?d=example.org", "/static/style.css"} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token[:len(token)-1], "Basic dTpw"} {
			resp, body := get(t, srv.URL+path, auth)
			if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "example.org") {
				t.Errorf("%s with %q: %d %q", path, auth, resp.StatusCode, body)
			}
		}
		resp, _ := get(t, srv.URL+path, "Bearer "+token)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("%s: no %s", path, h)
			}
		}
	}
	// Basic authentication, when configured.
	b := httptest.NewServer(Handler(Options{Store: seed(t), Auth: Auth{User: "pm", Password: "secret"}}))
	defer b.Close()
	req, _ := http.NewRequest("GET", b.URL+"/", nil)
	req.SetBasicAuth("pm", "secret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("basic auth: %v %v", resp.StatusCode, err)
	}
	if resp, _ := get(t, b.URL+"/", ""); resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("basic auth refusal: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// No authentication configured: nothing is served.
	n := httptest.NewServer(Handler(Options{Store: seed(t)}))
	defer n.Close()
	if resp, _ := get(t, n.URL+"/", "Bearer "); resp.StatusCode != 401 {
		t.Errorf("no auth configured: %d", resp.StatusCode)
	}
	for _, q := range []string{"/domain?d=%3Cscript%3E", "/domain", "/?days=0", "/?days=x"} {
		if resp, _ := get(t, srv.URL+q, "Bearer "+token); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}
}

// TestAPI: the JSON of each page has the seeded numbers.
func TestAPI(t *testing.T) {
	srv := testServer(t, seed(t))
	var ov Overview
	getJSON(t, srv.URL+"/api/overview", &ov)
	if len(ov.Domains) != 2 || ov.Domains[0].Key != "example.org" || ov.Domains[0].Messages != 1550 || ov.Domains[0].DMARCPass != 1400 || ov.Reports != 3 {
		t.Errorf("overview %+v", ov)
	}
	var d Domain
	getJSON(t, srv.URL+"/api/domain?d=example.org&days=30", &d)
	if d.Total.Messages != 1550 || len(d.Reporters) != 2 || d.Reporters[0].Key != "google.test" || len(d.Daily) != 30 ||
		d.Policy == nil || d.Policy.P != "none" || d.Policy.Pct != 100 {
		t.Errorf("domain %+v", d)
	}
	if last := d.Daily[len(d.Daily)-2]; last.Messages != 550 { // yesterday: Microsoft's report
		t.Errorf("daily %+v", d.Daily)
	}
	var s Sources
	getJSON(t, srv.URL+"/api/sources?d=example.org", &s)
	if len(s.Sources) != 3 || s.Sources[0].Key != "192.0.2.1" || s.Sources[0].Name != "mail.example.org" || s.Sources[0].Messages != 1400 {
		t.Errorf("sources %+v", s)
	}
	var p Sources
	getJSON(t, srv.URL+"/api/policy?d=example.org", &p)
	if p.Failing != 150 || len(p.Sources) != 2 || p.Sources[0].Key != "198.51.100.7" || p.Sources[0].Failing() != 100 {
		t.Errorf("policy %+v", p)
	}
	var l Local
	getJSON(t, srv.URL+"/api/local", &l)
	if len(l.Domains) != 3 || l.Domains[0].HeaderFrom != "example.net" || l.Domains[0].Messages != 34 || l.Domains[0].Dispositions["reject"] != 4 {
		t.Errorf("local %+v", l)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, body := get(t, url, "Bearer "+token)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
