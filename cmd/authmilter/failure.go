package main

import (
	"context"
	"log/slog"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/failrep"
	"github.com/authmilter/authmilter/internal/metrics"
	"github.com/authmilter/authmilter/internal/reportmail"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
)

// startFailureReports runs DMARC failure reporting in serve
// (failure_reports.enabled): the Reporter that queues reports from the mail
// path, and the sender that mails them through report.smtp. Both use the
// daemon's resolver. stop ends them and waits; call it before the store is
// closed. With failure reports off it returns a nil Reporter.
func startFailureReports(cfg *config.Config, st *store.Store, res *resolver.Resolver, log *slog.Logger, m *metrics.Metrics) (*failrep.Reporter, func(), error) {
	f := cfg.FailureReports
	if !f.Enabled || st == nil {
		return nil, func() {}, nil
	}
	agg, err := newReporter(cfg, st, res, log) // the relay settings, shared with aggregate reports
	if err != nil {
		return nil, nil, err
	}
	log = log.With("component", "failure-report")
	rep := &failrep.Reporter{Store: st, Resolver: res, ReportingMTA: cfg.AuthservID, PolicyDomains: f.PolicyDomains,
		Redact: f.Redact == "local-part", Interval: f.Interval.Duration, MaxPerHour: f.MaxPerHour, Log: log,
		Observe: m.FailureQueue}
	snd := &reportmail.FailureSender{Store: st, Resolver: res, Mailer: agg.Mailer, From: cfg.Report.From,
		UserAgent: "authmilter/" + versionString(), Suppress: cfg.Report.Suppress,
		MaxPerDestinationPerDay: f.MaxPerDestinationPerDay, GiveUpAfter: f.GiveUpAfter.Duration,
		Log: log, Observe: m.FailureSend}
	ctx, cancel := context.WithCancel(context.Background())
	rep.Start(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		snd.Loop(ctx, f.SendInterval.Duration)
	}()
	log.Info("failure reports on", "policy_domains", f.PolicyDomains, "redact", f.Redact,
		"interval", f.Interval.String(), "max_per_hour", f.MaxPerHour, "max_per_destination_per_day", f.MaxPerDestinationPerDay)
	return rep, func() { cancel(); <-done; rep.Stop() }, nil
}
