package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/incoming"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

const reportsUsage = `usage: authmilter reports <command> [options]

commands:
  import [-config FILE] FILE|DIR|-   read aggregate reports (XML, .xml.gz, .zip, report
                                     mails, a Maildir, an mbox) into the store
  summary [-config FILE] [-domain D] [-since 30d|YYYY-MM-DD] [-sources N]
                                     per-domain, per-reporter and per-source tables
`

// cmdReports is `authmilter reports`: the incoming aggregate reports.
func cmdReports(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, reportsUsage)
		return 2
	}
	switch args[0] {
	case "import":
		return cmdReportsImport(args[1:], stdin, stdout, stderr)
	case "summary":
		return cmdReportsSummary(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, reportsUsage)
		return 0
	}
	fmt.Fprintf(stderr, "authmilter reports: unknown command %q\n\n%s", args[0], reportsUsage)
	return 2
}

// newIngester builds the ingester the configuration describes; serve's
// milter hook and `reports import` share it.
func newIngester(cfg *config.Config, st incoming.Store, log *slog.Logger, observe func(string)) *incoming.Ingester {
	ir := cfg.IncomingReports
	return &incoming.Ingester{Store: st, Domains: cfg.OwnDomains(), MaxPerSenderPerDay: ir.MaxPerSenderPerDay,
		Limits: &report.Limits{MaxInput: ir.MaxMailBytes, MaxXML: ir.MaxXMLBytes, MaxRows: ir.MaxRows},
		Log:    log, Observe: observe}
}

func openReportsStore(cfgPath string, stderr io.Writer) (*config.Config, *store.Store, *slog.Logger, int) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return nil, nil, nil, 1
	}
	log := newLogger(cfg, stderr)
	if cfg.Store.Backend == "off" {
		log.Error(`no store: store.backend is "off"`)
		return nil, nil, nil, 1
	}
	st, err := openStore(cfg, log)
	if err != nil {
		log.Error("cannot open the store", "err", err)
		return nil, nil, nil, 1
	}
	return cfg, st, log, 0
}

func cmdReportsImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("reports import", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() == 0 {
		fmt.Fprint(stderr, "authmilter reports import: name at least one FILE, DIR or - (stdin)\n")
		return 2
	}
	cfg, st, log, rc := openReportsStore(*cfgPath, stderr)
	if rc != 0 {
		return rc
	}
	defer st.Close()
	in := newIngester(cfg, st, log, nil)
	if len(in.Domains) == 0 {
		log.Error("no own domains: set incoming_reports.domains (or signing keys); every report would be dropped")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var total incoming.Result
	rc = 0
	for _, p := range fl.Args() {
		res, err := in.Import(ctx, p, stdin)
		total.Add(res)
		if err != nil {
			log.Error("import", "path", p, "err", err)
			rc = 1
		}
	}
	fmt.Fprintf(stdout, "stored %d (%d rows, %d messages), duplicates %d, not our domains %d, over the sender cap %d, unreadable %d\n",
		total.Stored, total.Rows, total.Messages, total.Duplicate, total.Foreign, total.Capped, total.Invalid)
	return rc
}

// parseSince reads "30d", "12h" (a duration back from now) or a date
// "2026-01-31" (UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a period like 30d or 12h, nor a date like 2026-01-31", s)
}

func cmdReportsSummary(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("reports summary", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	domain := fl.String("domain", "", "only this policy domain")
	since := fl.String("since", "30d", "reports that began since: 30d, 12h, or a date 2026-01-31")
	sources := fl.Int("sources", 20, "the largest N sources")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	from, err := parseSince(*since, time.Now().UTC())
	if err != nil {
		fmt.Fprintln(stderr, "authmilter reports summary: -since:", err)
		return 2
	}
	_, st, log, rc := openReportsStore(*cfgPath, stderr)
	if rc != 0 {
		return rc
	}
	defer st.Close()
	if err := writeSummary(context.Background(), st, store.IncomingFilter{Domain: strings.ToLower(*domain), Since: from}, *sources, stdout); err != nil {
		log.Error("summary", "err", err)
		return 1
	}
	return 0
}

func pct(n, of int64) string {
	if of == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}

// writeSummary prints the per-domain, per-reporter and per-source tables.
func writeSummary(ctx context.Context, st *store.Store, f store.IncomingFilter, sources int, out io.Writer) error {
	fmt.Fprintf(out, "Aggregate reports received about your domains since %s\n\n", f.Since.Format(time.DateOnly))
	for _, sec := range []struct {
		title string
		g     store.IncomingGroup
		limit int
	}{{"DOMAIN", store.ByDomain, 0}, {"REPORTER", store.ByReporter, 0}, {"SOURCE", store.BySource, sources}} {
		ts, err := st.IncomingTotals(ctx, f, sec.g, sec.limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		if sec.g == store.BySource {
			fmt.Fprintln(tw, "SOURCE\tMESSAGES\tDMARC PASS\tDKIM ALIGNED\tSPF ALIGNED\tDKIM PASS\tSPF PASS\tWOULD FAIL\tHEADER FROM\t")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", t.Key, t.Messages, pct(t.DMARCPass, t.Messages),
					pct(t.DKIMAligned, t.Messages), pct(t.SPFAligned, t.Messages), pct(t.DKIMPass, t.Messages),
					pct(t.SPFPass, t.Messages), t.Failing(), t.HeaderFrom)
			}
		} else {
			fmt.Fprintf(tw, "%s\tREPORTS\tMESSAGES\tDMARC PASS\tDKIM ALIGNED\tSPF ALIGNED\tQUARANTINED\tREJECTED\t\n", sec.title)
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t\n", t.Key, t.Reports, t.Messages, pct(t.DMARCPass, t.Messages),
					pct(t.DKIMAligned, t.Messages), pct(t.SPFAligned, t.Messages), t.Quarantined, t.Rejected)
			}
		}
		if len(ts) == 0 {
			fmt.Fprintln(tw, "(none)\t")
		}
		tw.Flush()
		fmt.Fprintln(out)
	}
	return nil
}

// stdinOf is os.Stdin; tests call run with their own.
var stdinOf io.Reader = os.Stdin
