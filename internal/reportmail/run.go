package reportmail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

// Store is what the reporter needs from internal/store.
type Store interface {
	PendingDomains(ctx context.Context, before time.Time) ([]string, error)
	Rows(ctx context.Context, q store.Query) ([]store.Row, error)
	MarkReported(ctx context.Context, ids []string, reportID string) error
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// Mailer hands one message to the relay (*Sender).
type Mailer interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// LockName is the store lock held while reports are sent: with several MX
// hosts on one database exactly one of them sends.
const LockName = "aggregate-reports"

// Report ids stored for records that were not sent, so they stop being
// pending (and are pruned with the rest).
const (
	MarkUnreportable = "unreportable" // see report.Build
	MarkSuppressed   = "suppressed"   // policy domain on the suppression list
)

// Runner sends the reports of every closed period. Its zero value is not
// usable: set Store, Resolver, Mailer (unless OutDir or DryRun), From and
// Options.
type Runner struct {
	Store    Store
	Resolver report.Resolver
	Mailer   Mailer
	Options  report.Options // Options.Email defaults to From
	Format   report.Format
	From     string // envelope sender and header From of report mail

	Delay       time.Duration // a period is reported this long after it ended
	GiveUpAfter time.Duration // after this (from the period's end) a postponed report goes where it can, then is done; 0: 72h
	Suppress    []string      // policy domains (and subdomains) and rua addresses that get nothing

	DryRun bool   // build and check, log what would be sent; send and mark nothing
	OutDir string // write each report's .xml.gz here instead of mailing; mark nothing

	Log *slog.Logger
	Now func() time.Time // nil: time.Now

	// beforeMark, when set, runs after a report was sent and before its
	// records are marked (tests use it to stop the run there).
	beforeMark func(*report.Report)
}

// Summary counts what one Run did.
type Summary struct {
	Locked     bool // false: another instance holds the lock; nothing was done
	Reports    int  // reports built
	Sent       int  // messages the relay accepted
	Written    int  // files written to OutDir
	Done       int  // reports whose records were marked
	Postponed  int  // reports left pending for a later run
	Skipped    int  // records not reportable (marked MarkUnreportable)
	Unsendable int  // destinations dropped: invalid, not authorized, too small, rejected
	Suppressed int  // reports not sent because of the suppression list
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

// Cutoff is the end of the last period that may be reported at now: the
// start of the period that holds now-Delay.
func (r *Runner) Cutoff(now time.Time) (time.Time, error) {
	p, err := report.CheckPeriod(r.Options.Period)
	if err != nil {
		return time.Time{}, err
	}
	begin, _ := report.PeriodOf(now.Add(-r.Delay), p)
	return begin, nil
}

// Run builds and sends the reports of every closed period once. Records are
// marked reported only after the relay accepted the mail for every usable
// destination; a report with a temporary failure (DNS while verifying a
// destination, the relay) stays pending and is sent again, with the same
// Report-ID and attachment name, by a later Run.
func (r *Runner) Run(ctx context.Context) (Summary, error) {
	var sum Summary
	log := r.log()
	if !r.DryRun && r.OutDir == "" {
		release, ok, err := r.Store.TryLock(ctx, LockName)
		if err != nil {
			return sum, fmt.Errorf("reportmail: %w", err)
		}
		if !ok {
			log.Info("report: another instance is sending reports")
			return sum, nil
		}
		defer release()
	}
	sum.Locked = true
	now := r.now()
	cutoff, err := r.Cutoff(now)
	if err != nil {
		return sum, err
	}
	// One policy domain at a time: memory holds one domain's records, not
	// the whole period's.
	domains, err := r.Store.PendingDomains(ctx, cutoff)
	if err != nil {
		return sum, fmt.Errorf("reportmail: pending records: %w", err)
	}
	var firstErr error
	for _, dom := range domains {
		err := r.domain(ctx, now, cutoff, dom, &sum)
		if ctx.Err() != nil {
			return sum, err
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return sum, firstErr
}

// domain reports the pending records of one policy domain.
func (r *Runner) domain(ctx context.Context, now, cutoff time.Time, dom string, sum *Summary) error {
	log := r.log()
	rows, err := r.Store.Rows(ctx, store.Query{End: cutoff, PolicyDomain: dom, Unreported: true})
	if err != nil {
		return fmt.Errorf("reportmail: pending records of %q: %w", dom, err)
	}
	entries := make([]report.Entry, 0, len(rows))
	for _, row := range rows {
		if dom == "" && row.Record.Policy.Domain != "" {
			continue // Query reads "" as every domain; those come in their own turn
		}
		entries = append(entries, report.Entry{ID: row.ID, Record: row.Record})
	}
	opts := r.Options
	if opts.Email == "" {
		opts.Email = r.From
	}
	reps, skipped, err := report.Build(entries, opts)
	if err != nil {
		return err
	}
	sum.Reports += len(reps)
	sum.Skipped += len(skipped)
	if len(skipped) > 0 {
		ids := make([]string, len(skipped))
		for i, s := range skipped {
			ids[i] = s.ID
			log.Debug("report: record not reportable", "id", s.ID, "reason", s.Err)
		}
		if err := r.mark(ctx, ids, MarkUnreportable); err != nil {
			return err
		}
	}
	var firstErr error
	for _, rep := range reps {
		if err := r.one(ctx, now, rep, sum); err != nil {
			if ctx.Err() != nil {
				return err
			}
			log.Error("report: not finished; will retry", "domain", rep.Policy.Domain, "report_id", rep.ID, "err", err)
			sum.Postponed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func (r *Runner) mark(ctx context.Context, ids []string, reportID string) error {
	if r.DryRun || r.OutDir != "" || len(ids) == 0 {
		return nil
	}
	if err := r.Store.MarkReported(ctx, ids, reportID); err != nil {
		return fmt.Errorf("reportmail: mark %d records as %s: %w", len(ids), reportID, err)
	}
	return nil
}

// one handles one report. It returns an error only when marking failed;
// postponing is counted in sum.
func (r *Runner) one(ctx context.Context, now time.Time, rep *report.Report, sum *Summary) error {
	log := r.log().With("domain", rep.Policy.Domain, "report_id", rep.ID,
		"begin", rep.Begin.Format(time.RFC3339), "messages", rep.Messages())
	giveUp := r.GiveUpAfter
	if giveUp <= 0 {
		giveUp = 72 * time.Hour
	}
	late := now.After(rep.End.Add(giveUp))
	if r.suppressed(rep.Policy.Domain) {
		log.Info("report: policy domain is suppressed; not sent")
		sum.Suppressed++
		sum.Done++
		return r.mark(ctx, rep.EntryIDs, MarkSuppressed)
	}
	gz, err := rep.Gzip(r.Format)
	if err != nil {
		return err
	}
	if r.OutDir != "" {
		path := filepath.Join(r.OutDir, rep.Filename())
		if err := os.WriteFile(path, gz, 0o644); err != nil {
			return fmt.Errorf("reportmail: %w", err)
		}
		log.Info("report: written", "file", path)
		sum.Written++
		return nil
	}
	dests := report.Destinations(ctx, r.Resolver, rep.Policy)
	for _, d := range dests {
		if errors.Is(d.Err, report.ErrTemporary) && !late {
			log.Warn("report: destination check failed temporarily; postponed", "uri", d.URI.Address, "err", d.Err)
			sum.Postponed++
			return nil
		}
	}
	temp := false
	for _, d := range dests {
		dlog := log.With("uri", d.URI.Address)
		if d.Err != nil {
			dlog.Warn("report: destination skipped", "err", d.Err)
			sum.Unsendable++
			continue
		}
		if r.suppressed(d.Address) {
			dlog.Info("report: destination suppressed", "to", d.Address)
			continue
		}
		msg := Compose(rep, r.From, d.Address, gz, now)
		if d.MaxSize > 0 && int64(len(msg)) > d.MaxSize {
			dlog.Warn("report: larger than the destination's size limit; skipped",
				"size", len(msg), "limit", d.MaxSize)
			sum.Unsendable++
			continue
		}
		if r.DryRun {
			dlog.Info("report: would send", "to", d.Address, "size", len(msg), "file", rep.Filename())
			continue
		}
		err := r.Mailer.Send(ctx, r.From, d.Address, msg)
		switch {
		case err == nil:
			dlog.Info("report: sent", "to", d.Address, "size", len(msg))
			sum.Sent++
		case errors.Is(err, ErrRejected):
			dlog.Warn("report: relay refused the destination", "to", d.Address, "err", err)
			sum.Unsendable++
		default:
			dlog.Warn("report: sending failed temporarily", "to", d.Address, "err", err)
			temp = true
		}
	}
	if r.DryRun {
		return nil
	}
	if temp && !late {
		log.Warn("report: postponed; it will be sent again with the same Report-ID")
		sum.Postponed++
		return nil
	}
	if r.beforeMark != nil {
		r.beforeMark(rep)
	}
	if err := r.mark(ctx, rep.EntryIDs, rep.ID); err != nil {
		return err
	}
	sum.Done++
	return nil
}

// suppressed matches a policy domain (or a subdomain of a listed domain),
// or a rua address (exactly, or by its domain).
func (r *Runner) suppressed(name string) bool { return suppressed(r.Suppress, name) }

// suppressed matches name against a report.suppress list (aggregate and
// failure reports share it).
func suppressed(list []string, name string) bool {
	name = strings.ToLower(name)
	dom := name[strings.LastIndexByte(name, '@')+1:]
	for _, s := range list {
		s = strings.ToLower(strings.TrimSpace(s))
		if strings.Contains(s, "@") && !strings.HasPrefix(s, "@") {
			if s == name {
				return true
			}
			continue
		}
		s = strings.TrimPrefix(s, "@")
		if dom == s || strings.HasSuffix(dom, "."+s) {
			return true
		}
	}
	return false
}

// Loop runs the reporter as a scheduler until ctx ends: at start (to catch
// up), then once a period has closed (its end plus Delay), and every retry
// while reports are postponed or another instance held the lock.
func (r *Runner) Loop(ctx context.Context, retry time.Duration) {
	if retry <= 0 {
		retry = 30 * time.Minute
	}
	p, err := report.CheckPeriod(r.Options.Period)
	if err != nil {
		r.log().Error("report: scheduler not started", "err", err)
		return
	}
	for {
		sum, err := r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log().Error("report: run failed", "err", err)
		}
		now := r.now()
		_, end := report.PeriodOf(now.Add(-r.Delay), p)
		wait := end.Add(r.Delay).Sub(now)
		if (err != nil || sum.Postponed > 0 || !sum.Locked) && retry < wait {
			wait = retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
