package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/metrics"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/reportmail"
	"github.com/authmilter/authmilter/internal/reportmail/smtptest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/engine"
)

const zone = `
sender.test.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.sender.test.   300 IN TXT "v=DMARC1; p=reject"
quar.test.            300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.quar.test.     300 IN TXT "v=DMARC1; p=quarantine"
`

// rig is the real milter server with the real service, resolver and a
// test DNS server, observed by one *Metrics served on a loopback port.
type rig struct {
	t      *testing.T
	m      *metrics.Metrics
	milter string // milter address
	http   string // metrics address
	dns    *dnstest.Server
	ready  atomic.Bool
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, m: metrics.New("test"), dns: dnstest.New(t, zone)}
	log := slog.New(slog.DiscardHandler)
	res, err := resolver.New(resolver.Config{Servers: []string{r.dns.Addr()}, Timeout: time.Second, Attempts: 1, Observe: r.m.DNS})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.AuthservID = "mx.rcpt.test"
	cfg.Policy.IgnoreHosts = []string{"203.0.113.0/24"}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc := &service.Service{AuthservID: cfg.AuthservID, Policy: pol, Log: log, Observe: r.m,
		Engine: engine.New(res, engine.Options{SPF: true, CheckHELO: true, DKIM: true, DMARC: true, DMARCMode: "rfc9989",
			MultiFrom: cfg.DMARC.MultiFrom, MaxAuthorDomains: 5, SPFTimeout: 5 * time.Second})}
	srv := milter.NewServer(service.NewCurrent(svc), milter.Options{IdleTimeout: 10 * time.Second, Log: log})
	r.m.Sessions(srv.Sessions, srv.Refused)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.milter = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	hs, err := metrics.Listen("127.0.0.1:0", r.m.Handler([]metrics.Check{{Name: "milter", Fn: func() (string, error) {
		if !r.ready.Load() {
			return "", errors.New("not serving")
		}
		return "ok", nil
	}}}), log)
	if err != nil {
		t.Fatal(err)
	}
	r.http = hs.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		hs.Shutdown(ctx)
	})
	return r
}

// get fetches a path of the metrics listener.
func (r *rig) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.http + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns every sample of /metrics by its series name with labels,
// as written (`authmilter_spf_results_total{result="pass"}`).
func (r *rig) scrape() map[string]float64 {
	r.t.Helper()
	code, body := r.get("/metrics")
	if code != 200 {
		r.t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			r.t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// session opens one milter connection as Postfix would.
func (r *rig) session(ip string) *gomilter.ClientSession {
	r.t.Helper()
	c := gomilter.NewClientWithOptions("tcp", r.milter, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { s.Close() })
	if _, err := s.Conn("mx.sender.test", gomilter.FamilyInet, 25, ip); err != nil {
		r.t.Fatal(err)
	}
	if _, err := s.Helo("mx.sender.test"); err != nil {
		r.t.Fatal(err)
	}
	return s
}

// send sends one message on s and returns the reply code ('c' continue,
// 'y' a custom reply such as a reject).
func (r *rig) send(s *gomilter.ClientSession, mailFrom, fromDomain string) byte {
	r.t.Helper()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Mail("<"+mailFrom+">", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<b@rcpt.test>", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("From", " a@"+fromDomain) },
		func() (*gomilter.Action, error) { return s.HeaderEnd() },
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("hello\r\n")) },
	}
	for _, st := range steps {
		if _, err := st(); err != nil {
			r.t.Fatal(err)
		}
	}
	_, act, err := s.End()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := s.Abort(); err != nil {
		r.t.Fatal(err)
	}
	return byte(act.Code)
}

func TestMetricsChangeAsMessagesPass(t *testing.T) {
	r := newRig(t)
	before := r.scrape()
	for _, k := range []string{`authmilter_messages_total{action="accept",disposition="pass"}`, `authmilter_dns_lookups_total{outcome="ok",source="server"}`} {
		if before[k] != 0 {
			t.Fatalf("%s = %v before any message", k, before[k])
		}
	}
	if before[`authmilter_build_info{version="test"}`] != 1 {
		t.Errorf("build_info missing")
	}

	s := r.session("192.0.2.1")
	if got := r.scrape()["authmilter_milter_sessions"]; got != 1 {
		t.Errorf("sessions in flight = %v with one connection open, want 1", got)
	}
	// pass, then a DMARC reject, then a quarantine, on one connection.
	if c := r.send(s, "a@sender.test", "sender.test"); c != 'c' {
		t.Errorf("pass message: reply %c", c)
	}
	if c := r.send(s, "a@other.test", "sender.test"); c != 'y' {
		t.Errorf("reject message: reply %c", c)
	}
	r.send(s, "a@other.test", "quar.test")
	// An ignored client: counted as not checked.
	r.send(r.session("203.0.113.9"), "a@sender.test", "sender.test")

	got := r.scrape()
	want := map[string]float64{
		`authmilter_spf_results_total{result="pass"}`:                             1,
		`authmilter_spf_results_total{result="none"}`:                             2, // other.test has no record
		`authmilter_spf_helo_results_total{result="none"}`:                        3, // mx.sender.test has no SPF record
		`authmilter_dkim_results_total{result="none"}`:                            3,
		`authmilter_dmarc_results_total{policy="none",result="pass"}`:             1,
		`authmilter_dmarc_results_total{policy="reject",result="fail"}`:           1,
		`authmilter_dmarc_results_total{policy="quarantine",result="fail"}`:       1,
		`authmilter_messages_total{action="accept",disposition="pass"}`:           1,
		`authmilter_messages_total{action="reject",disposition="reject"}`:         1,
		`authmilter_messages_total{action="quarantine",disposition="quarantine"}`: 1,
		`authmilter_messages_not_checked_total{reason="ignored_host"}`:            1,
		`authmilter_end_of_message_seconds_count`:                                 3,
		`authmilter_milter_sessions`:                                              2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// DNS: queries were sent and every one answered; the second message's
	// _dmarc.sender.test came from the cache.
	sent := got[`authmilter_dns_lookups_total{outcome="ok",source="server"}`] +
		got[`authmilter_dns_lookups_total{outcome="nxdomain",source="server"}`] +
		got[`authmilter_dns_lookups_total{outcome="nodata",source="server"}`]
	if sent == 0 || got[`authmilter_dns_query_duration_seconds_count`] != sent {
		t.Errorf("dns queries %v, latency observations %v", sent, got[`authmilter_dns_query_duration_seconds_count`])
	}
	if got[`authmilter_dns_lookups_total{outcome="ok",source="cache"}`] == 0 {
		t.Errorf("no cache hit counted")
	}
	if ratio := got["authmilter_dns_cache_hit_ratio"]; ratio <= 0 || ratio >= 1 {
		t.Errorf("cache hit ratio %v", ratio)
	}
	// No series carries a domain or an address.
	for k := range got {
		for _, bad := range []string{"sender.test", "quar.test", "192.0.2", "203.0.113"} {
			if strings.Contains(k, bad) {
				t.Errorf("series %s carries %q", k, bad)
			}
		}
	}
}

// A DNS failure shows as its outcome.
func TestMetricsDNSOutcomes(t *testing.T) {
	r := newRig(t)
	r.dns.Fail("_dmarc.sender.test.", 2) // SERVFAIL
	r.send(r.session("192.0.2.1"), "a@sender.test", "sender.test")
	got := r.scrape()
	if got[`authmilter_dns_lookups_total{outcome="servfail",source="server"}`] != 1 {
		t.Errorf("servfail not counted: %v", got)
	}
	if got[`authmilter_dmarc_results_total{policy="none",result="temperror"}`] != 1 {
		t.Errorf("temperror not counted")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	r := newRig(t)
	if code, body := r.get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := r.get("/readyz"); code != 503 || body != "milter: not serving\n" {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	r.ready.Store(true)
	if code, body := r.get("/readyz"); code != 200 || body != "milter: ok\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := r.get("/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}
}

// Report mails through the real sender to a test SMTP server: one
// accepted, one refused.
func TestReportMailsCounted(t *testing.T) {
	r := newRig(t)
	smtp := smtptest.New(t, smtptest.Options{})
	smtp.Refuse("refused@rua.test", "550 5.1.1 no such user")
	mailer := r.m.Mailer(reportmail.NewSender(reportmail.SMTPConfig{Host: "127.0.0.1", Port: smtp.Port(),
		StartTLS: reportmail.StartTLSNone, HELO: "mx.rcpt.test", Timeout: 10 * time.Second}))
	msg := []byte("Subject: x\r\n\r\nx\r\n")
	ctx := context.Background()
	if err := mailer.Send(ctx, "dmarc@rcpt.test", "ok@rua.test", msg); err != nil {
		t.Fatal(err)
	}
	if err := mailer.Send(ctx, "dmarc@rcpt.test", "refused@rua.test", msg); err == nil {
		t.Fatal("refused recipient accepted")
	}
	got := r.scrape()
	if got[`authmilter_reports_total{result="sent"}`] != 1 || got[`authmilter_reports_total{result="failed"}`] != 1 {
		t.Errorf("reports: sent %v failed %v", got[`authmilter_reports_total{result="sent"}`], got[`authmilter_reports_total{result="failed"}`])
	}
	r.m.Reload(true)
	r.m.Reload(false)
	got = r.scrape()
	if got[`authmilter_config_reloads_total{result="ok"}`] != 1 || got[`authmilter_config_reloads_total{result="failed"}`] != 1 {
		t.Errorf("reloads not counted")
	}
}

// Observer values a sender chooses never become label values.
func TestLabelsBounded(t *testing.T) {
	m := metrics.New("test")
	m.NotChecked("ignored host")
	m.NotChecked("Evil\nlabel")
	m.NotChecked(strings.Repeat("a", 100))
	m.NotChecked("")
	b := exposition(t, m)
	for _, want := range []string{
		`authmilter_messages_not_checked_total{reason="ignored_host"} 1`,
		`authmilter_messages_not_checked_total{reason="other"} 2`,
		`authmilter_messages_not_checked_total{reason="none"} 1`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

// ARC results per message, and overrides by trusted sealer.
func TestARCMetrics(t *testing.T) {
	m := metrics.New("test")
	pass := &engine.Result{ARC: arc.Result{Status: arc.StatusPass}}
	m.Message(pass, policy.Decision{Override: policy.ReasonLocalPolicy, Sealer: "lists.example"}, time.Millisecond)
	m.Message(pass, policy.Decision{}, time.Millisecond)
	m.Message(&engine.Result{ARC: arc.Result{Status: arc.StatusNone}}, policy.Decision{}, time.Millisecond)
	m.Message(&engine.Result{}, policy.Decision{}, time.Millisecond) // ARC off: not counted
	b := exposition(t, m)
	for _, want := range []string{
		`authmilter_arc_results_total{result="pass"} 2`,
		`authmilter_arc_results_total{result="none"} 1`,
		`authmilter_arc_overrides_total{sealer="lists.example"} 1`,
		`authmilter_overrides_total{reason="local_policy"} 1`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

// exposition serves m's handler on a loopback port and returns what
// GET /metrics answers.
func exposition(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	var b strings.Builder
	srv := &http.Server{Handler: m.Handler(nil)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(&b, resp.Body)
	resp.Body.Close()
	return b.String()
}
