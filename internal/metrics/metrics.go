// Package metrics turns what the daemon does into Prometheus metrics and
// serves them, with the liveness and readiness checks, on one HTTP listener.
//
// It is the only package that imports Prometheus: the service, the
// resolver, the store and the reporter know nothing of it and call small
// observer hooks (service.Observer, resolver.Config.Observe, a Mailer
// wrapper) that *Metrics implements.
//
// Labels are result values only (spf="pass", action="reject"…), each from
// a fixed set: never a domain, an address or anything else a sender
// chooses, so the number of series stays bounded whatever the mail.
package metrics

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/reportmail"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/engine"
)

const namespace = "authmilter"

// Metrics holds the collectors. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	spf, spfHELO, dkim, dmarc *prometheus.CounterVec
	actions                   *prometheus.CounterVec // action, disposition
	overrides                 *prometheus.CounterVec
	arc, arcOverrides         *prometheus.CounterVec // result; sealer
	notChecked                *prometheus.CounterVec
	eom                       prometheus.Histogram
	checks                    prometheus.Histogram

	dnsLookups            *prometheus.CounterVec // source, outcome
	dnsLatency            prometheus.Histogram
	cacheHits, dnsQueries atomic.Int64

	storePut prometheus.Histogram
	reports  *prometheus.CounterVec
	failures *prometheus.CounterVec // stage, outcome
	reloads  *prometheus.CounterVec
	reloaded prometheus.Gauge

	incoming *prometheus.CounterVec // incoming aggregate reports by result
}

// Latency buckets, in seconds. DNS: 1 ms (a warm local resolver) to 10 s
// (attempts × timeout). End of message: the checks usually finished during
// the body; the tail is DNS timeouts and the store's write_timeout.
var (
	dnsBuckets   = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	eomBuckets   = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120}
	storeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// New registers every metric in a registry of its own, with the Go runtime
// and process collectors and authmilter_build_info{version}.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
		m.reg.MustRegister(h)
		return h
	}
	m.spf = counter("spf_results_total", "SPF results of the MAIL FROM identity (RFC 7208 §2.6), one per checked message.", "result")
	m.spfHELO = counter("spf_helo_results_total", "SPF results of the HELO identity, one per checked message with a HELO check.", "result")
	m.dkim = counter("dkim_results_total", "DKIM results, one per signature (result \"none\" for a message without any).", "result")
	m.dmarc = counter("dmarc_results_total", "DMARC results (RFC 9989), one per checked message, with the policy applied.", "result", "policy")
	m.actions = counter("messages_total", "Checked messages by what the MTA was told (action) and the RFC 9990 disposition.", "action", "disposition")
	m.overrides = counter("overrides_total", "Messages whose DMARC outcome local policy changed, by RFC 9990 override reason.", "reason")
	m.arc = counter("arc_results_total", "ARC chain validation results (RFC 8617), one per checked message with ARC on.", "result")
	m.arcOverrides = counter("arc_overrides_total", "DMARC fails delivered on a trusted ARC sealer's assessment (arc.trusted_sealers), by sealer.", "sealer")
	m.notChecked = counter("messages_not_checked_total", "Messages not checked (ignored host, authenticated client).", "reason")
	m.eom = histogram("end_of_message_seconds", "Time from the end of the message to the reply: the checks still running, the policy, the store commit (sync mode).", eomBuckets)
	m.checks = histogram("check_duration_seconds", "Time from MAIL FROM to the end of the checks of a message.", eomBuckets)

	m.dnsLookups = counter("dns_lookups_total", "DNS lookups by source (cache: answered from the cache; server: a query sent) and outcome.", "source", "outcome")
	m.dnsLatency = histogram("dns_query_duration_seconds", "Time of each DNS query sent to a server (cache hits are not counted).", dnsBuckets)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "dns_cache_hit_ratio",
		Help: "Cache hits / (cache hits + queries sent) since start. For a window use rate() on authmilter_dns_lookups_total."},
		m.cacheHitRatio))

	m.storePut = histogram("store_put_seconds", "Time a message's records took to be stored (committed in sync mode, queued in async mode).", storeBuckets)
	m.reports = counter("reports_total", "Aggregate report mails handed to the relay, by result (sent, failed).", "result")
	m.failures = counter("failure_reports_total", "DMARC failure reports (RFC 9991) by stage (queue: a failing message was looked at; send: a queued report was handled) and outcome.", "stage", "outcome")
	m.incoming = counter("incoming_reports_total", "Incoming aggregate reports by result: stored, duplicate, foreign (not about our domains: dropped), capped (sender over its daily cap: dropped), invalid (a mail or file that could not be read).", "result")
	m.reloads = counter("config_reloads_total", "Configuration reloads (SIGHUP) by result (ok, failed).", "result")
	m.reloaded = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the running configuration was loaded (start or last successful reload)."})
	m.reg.MustRegister(m.reloaded)
	m.reloaded.SetToCurrentTime()

	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1; the version label says which build runs.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	m.reg.MustRegister(info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry the metrics are in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Message counts one checked message: its results, what the MTA was told,
// and eom, how long its end of message took (service.Observer).
func (m *Metrics) Message(r *engine.Result, d policy.Decision, eom time.Duration) {
	if r.SPF.Status != "" {
		m.spf.WithLabelValues(label(string(r.SPF.Status))).Inc()
	}
	if r.HELO.Status != "" {
		m.spfHELO.WithLabelValues(label(string(r.HELO.Status))).Inc()
	}
	for _, k := range r.DKIM {
		m.dkim.WithLabelValues(label(string(k.Status))).Inc()
	}
	if len(r.DKIM) == 0 {
		m.dkim.WithLabelValues("none").Inc()
	}
	if r.DMARC.Status != "" {
		m.dmarc.WithLabelValues(label(string(r.DMARC.Status)), label(string(r.DMARC.Applied))).Inc()
	}
	if r.ARC.Status != "" {
		m.arc.WithLabelValues(label(string(r.ARC.Status))).Inc()
	}
	if d.Sealer != "" {
		// Bounded: only domains of arc.trusted_sealers get here.
		m.arcOverrides.WithLabelValues(domainLabel(d.Sealer)).Inc()
	}
	m.actions.WithLabelValues(label(d.Action.String()), label(d.Disposition)).Inc()
	if d.Override != "" {
		m.overrides.WithLabelValues(label(d.Override)).Inc()
	}
	m.eom.Observe(eom.Seconds())
	if r.Duration > 0 {
		m.checks.Observe(r.Duration.Seconds())
	}
}

// NotChecked counts a message the policy skipped; reason is
// policy.Policy.Skip's answer (service.Observer).
func (m *Metrics) NotChecked(reason string) {
	m.notChecked.WithLabelValues(label(reason)).Inc()
}

// Recorded observes how long storing a message's records took
// (service.Observer).
func (m *Metrics) Recorded(took time.Duration) { m.storePut.Observe(took.Seconds()) }

// DNS is the resolver's Observe hook (resolver.Config.Observe).
func (m *Metrics) DNS(ev resolver.Event) {
	source := "server"
	if ev.CacheHit {
		source = "cache"
		m.cacheHits.Add(1)
	} else {
		m.dnsQueries.Add(1)
		m.dnsLatency.Observe(ev.Duration.Seconds())
	}
	m.dnsLookups.WithLabelValues(source, label(string(ev.Outcome))).Inc()
}

func (m *Metrics) cacheHitRatio() float64 {
	h, q := m.cacheHits.Load(), m.dnsQueries.Load()
	if h+q == 0 {
		return math.NaN() // no lookup yet: no ratio, rather than a made-up 0
	}
	return float64(h) / float64(h+q)
}

// Report counts one report mail handed to the relay: err nil is sent.
func (m *Metrics) Report(err error) {
	if err != nil {
		m.reports.WithLabelValues("failed").Inc()
		return
	}
	m.reports.WithLabelValues("sent").Inc()
}

// FailureQueue counts what happened to a failure report a message warranted
// (failrep.Outcome…).
func (m *Metrics) FailureQueue(outcome string) { m.failures.WithLabelValues("queue", outcome).Inc() }

// FailureSend counts what the sender did with a queued failure report
// (reportmail.Failure…).
func (m *Metrics) FailureSend(outcome string) { m.failures.WithLabelValues("send", outcome).Inc() }

// Incoming counts one incoming aggregate report (internal/incoming) by
// result.
func (m *Metrics) Incoming(result string) { m.incoming.WithLabelValues(result).Inc() }

// Reload counts a configuration reload.
func (m *Metrics) Reload(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("failed").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.reloaded.SetToCurrentTime()
}

// Sessions exports the milter server's gauges: connections open
// (sessions in flight) and connections refused for max_sessions.
func (m *Metrics) Sessions(open, refused func() int64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "milter_sessions",
			Help: "Milter connections open now (SMTP sessions the MTA is running through us)."},
			func() float64 { return float64(open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "milter_sessions_refused_total",
			Help: "Milter connections answered with tempfail because max sessions were open."},
			func() float64 { return float64(refused()) }),
	)
}

// Store exports the record store's counters and whether it is spooling.
func (m *Metrics) Store(stats func() store.Stats, down func() bool) {
	c := func(name, help string, f func(store.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(f(stats())) })
	}
	m.reg.MustRegister(
		c("store_records_committed_total", "Records inserted into the database by the writer.", func(s store.Stats) int64 { return s.Committed }),
		c("store_commits_total", "Database transactions of the writer (committed/commits is the batch size).", func(s store.Stats) int64 { return s.Commits }),
		c("store_records_spooled_total", "Records written to the spool because the database was slow or down.", func(s store.Stats) int64 { return s.Spooled }),
		c("store_records_replayed_total", "Records read back from the spool into the database.", func(s store.Stats) int64 { return s.Replayed }),
		c("store_records_lost_total", "Records kept neither in the database nor in the spool (e.g. disk full); each has an error log line.", func(s store.Stats) int64 { return s.Lost }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "store_down",
			Help: "1 while the database is unavailable and records go to the spool."},
			func() float64 {
				if down() {
					return 1
				}
				return 0
			}),
	)
}

// label keeps a label value to the shape of the result words it is meant
// for: lowercase letters, digits, '_' and '-', at most 32 bytes. Anything
// else becomes "other", so a bug upstream cannot explode the series count
// with free text.
func label(v string) string {
	if v == "" {
		return "none"
	}
	if len(v) > 32 {
		return "other"
	}
	v = strings.ReplaceAll(v, " ", "_") // "ignored host" → "ignored_host"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "other"
		}
	}
	return v
}

// domainLabel is label for a configured domain name: dots allowed, up to
// 253 characters.
func domainLabel(v string) string {
	if len(v) > 253 {
		return "other"
	}
	if l := label(strings.ReplaceAll(v, ".", "_")); l == "other" || l == "none" {
		return l
	}
	return v
}

// Mailer wraps the report relay so every report mail is counted as sent
// or failed.
func (m *Metrics) Mailer(next reportmail.Mailer) reportmail.Mailer {
	return countingMailer{next: next, m: m}
}

type countingMailer struct {
	next reportmail.Mailer
	m    *Metrics
}

func (c countingMailer) Send(ctx context.Context, from, to string, msg []byte) error {
	err := c.next.Send(ctx, from, to, msg)
	c.m.Report(err)
	return err
}
