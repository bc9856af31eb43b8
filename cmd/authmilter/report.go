package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/reportmail"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/report"
)

// cmdReport is `authmilter report`: build the aggregate reports of every
// closed period from the store and mail them once (the scheduler inside
// serve does the same on its own).
func cmdReport(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	dryRun := fl.Bool("dry-run", false, "build and check the reports and log where they would go; send and mark nothing")
	out := fl.String("out", "", "write each report (.xml.gz) into this directory instead of mailing it; mark nothing")
	period := fl.Duration("period", 0, "reporting period, 1h to 24h dividing a day (default: report.period)")
	nowFlag := fl.String("now", "", "act as if the time were this RFC 3339 time (for testing and catching up)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() != 0 {
		fmt.Fprintf(stderr, "authmilter report: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	if *period != 0 {
		if _, err := report.CheckPeriod(*period); err != nil {
			fmt.Fprintln(stderr, "authmilter report: -period:", err)
			return 2
		}
		cfg.Report.Period.Duration = *period
	}
	var now time.Time
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			fmt.Fprintln(stderr, "authmilter report: -now:", err)
			return 2
		}
	}
	if *out != "" {
		if fi, err := os.Stat(*out); err != nil || !fi.IsDir() {
			fmt.Fprintf(stderr, "authmilter report: -out %s is not a directory\n", *out)
			return 2
		}
	}
	log := newLogger(cfg, stderr)
	if cfg.Store.Backend == "off" {
		log.Error("no records: store.backend is \"off\"")
		return 1
	}
	st, err := openStore(cfg, log)
	if err != nil {
		log.Error("cannot open the record store", "err", err)
		return 1
	}
	defer st.Close()
	res, err := newResolver(cfg, log)
	if err != nil {
		log.Error("cannot report", "err", err)
		return 1
	}
	r, err := newReporter(cfg, st, res, log)
	if err != nil {
		log.Error("cannot report", "err", err)
		return 1
	}
	r.DryRun, r.OutDir = *dryRun, *out
	if !now.IsZero() {
		r.Now = func() time.Time { return now }
	}
	if !r.DryRun && r.OutDir == "" && r.From == "" {
		log.Error("report.from is not set: reports cannot be mailed (use -dry-run or -out)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sum, err := r.Run(ctx)
	fmt.Fprintf(stdout, "reports %d, sent %d, written %d, done %d, postponed %d, suppressed %d, unsendable destinations %d, records not reportable %d\n",
		sum.Reports, sum.Sent, sum.Written, sum.Done, sum.Postponed, sum.Suppressed, sum.Unsendable, sum.Skipped)
	if !sum.Locked {
		fmt.Fprintln(stdout, "another instance is sending reports; nothing done")
	}
	if err == nil && sum.Locked && sum.Reports == 0 {
		fmt.Fprintln(stdout, notDueYet(ctx, r, st))
	}
	if err != nil {
		log.Error("report run incomplete", "err", err)
		return 1
	}
	return 0
}

// notDueYet says why a run built no report: no records at all, or records
// whose period has not closed yet, and when it will be reported (the end
// of the period plus report.delay), so that a dry run right after setting
// up does not look like a failure (issue 19).
func notDueYet(ctx context.Context, r *reportmail.Runner, st reportmail.Store) string {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	t := now().UTC()
	pending, err := st.PendingDomains(ctx, t.Add(48*time.Hour))
	if err != nil || len(pending) == 0 {
		return "no records waiting to be reported"
	}
	begin, end := report.PeriodOf(t.Add(-r.Delay), r.Options.Period)
	return fmt.Sprintf("no period has closed yet: records of %d policy domain(s) wait in the period %s to %s UTC, "+
		"reported from %s UTC (its end plus report.delay %s)",
		len(pending), begin.Format("2006-01-02 15:04"), end.Format("2006-01-02 15:04"),
		end.Add(r.Delay).Format("2006-01-02 15:04"), r.Delay)
}

// newReporter builds the report runner the configuration describes, on
// the given store; serve's scheduler and `authmilter report` share it.
func newReporter(cfg *config.Config, st reportmail.Store, res report.Resolver, log *slog.Logger) (*reportmail.Runner, error) {
	c := cfg.Report
	var err error
	receiver := c.Receiver
	if receiver == "" && c.From != "" {
		receiver = identity.DomainOf(c.From) // report.from is validated: a plain address
	}
	if receiver == "" {
		receiver = cfg.AuthservID
	}
	smtpCfg := reportmail.SMTPConfig{Host: c.SMTP.Host, Port: c.SMTP.Port, StartTLS: c.SMTP.StartTLS,
		Username: c.SMTP.Username, Password: c.SMTP.Password, HELO: c.SMTP.HELO, Timeout: c.SMTP.Timeout.Duration}
	if c.SMTP.CAFile != "" {
		if smtpCfg.RootCAs, err = reportmail.LoadCAFile(c.SMTP.CAFile); err != nil {
			return nil, err
		}
	}
	if smtpCfg.HELO == "" {
		smtpCfg.HELO = cfg.AuthservID
	}
	if _, err := report.CheckPeriod(c.Period.Duration); err != nil {
		return nil, errors.New("report.period: " + err.Error())
	}
	return &reportmail.Runner{
		Store:    st,
		Resolver: res,
		Mailer:   reportmail.NewSender(smtpCfg),
		Options: report.Options{Period: c.Period.Duration, Receiver: receiver, OrgName: c.OrgName,
			Email: c.From, ExtraContactInfo: c.ExtraContactInfo, Generator: "authmilter " + versionString(),
			EnvelopeTo: c.EnvelopeTo},
		Format:      report.Format(c.Format),
		From:        c.From,
		Delay:       c.Delay.Duration,
		GiveUpAfter: c.GiveUpAfter.Duration,
		Suppress:    c.Suppress,
		Log:         log.With("component", "report"),
	}, nil
}

// startReporter runs the report scheduler of serve (report.enabled): the
// reports of each closed period are sent without a cron job; the store's
// lock makes one MX of several send. stop ends it and waits; call it
// before the store is closed. wrap, if not nil, wraps the mailer (metrics).
func startReporter(cfg *config.Config, st reportmail.Store, res report.Resolver, log *slog.Logger, wrap func(reportmail.Mailer) reportmail.Mailer) (stop func(), err error) {
	if !cfg.Report.Enabled {
		return func() {}, nil
	}
	r, err := newReporter(cfg, st, res, log)
	if err != nil {
		return nil, err
	}
	if wrap != nil {
		r.Mailer = wrap(r.Mailer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Loop(ctx, cfg.Report.RetryInterval.Duration)
	}()
	log.Info("report scheduler started", "period", cfg.Report.Period.String(), "delay", cfg.Report.Delay.String(),
		"receiver", r.Options.Receiver, "format", cfg.Report.Format)
	return func() { cancel(); <-done }, nil
}
