package reportmail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/authmilter/authmilter/internal/failrep"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

// FailureStore is what the failure report sender needs of internal/store.
type FailureStore interface {
	DueFailures(ctx context.Context, now time.Time, limit int) ([]store.QueuedFailure, error)
	FinishFailure(ctx context.Context, id, state string, now time.Time) error
	RetryFailure(ctx context.Context, id string, attempts int, next time.Time) error
	TakeLimit(ctx context.Context, name string, max int, window time.Duration, now time.Time) (bool, error)
	ReturnLimit(ctx context.Context, name string) error
	PruneFailures(ctx context.Context, olderThan time.Time) error
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// FailureLockName is the store lock held while failure reports are sent.
const FailureLockName = "failure-reports"

// Failure report send outcomes (metrics label values).
const (
	FailureSent       = "sent"
	FailureRetry      = "retry"
	FailureGaveUp     = "gave_up"
	FailureUnsendable = "unsendable" // destination invalid, not authorized, refused by the relay, too large
	FailureCapped     = "capped"     // max_per_destination_per_day reached
	FailureSuppressed = "suppressed" // report.suppress lists the domain or address
)

// FailureSender mails queued failure reports: each is for one ruf URI,
// checked like an aggregate report's rua (RFC 9991 §4: the external
// destination check of RFC 9990 §4, the same code), capped per destination
// per day, handed to the relay, and marked sent only after the relay took
// it. A temporary failure is retried with backoff until GiveUpAfter.
type FailureSender struct {
	Store     FailureStore
	Resolver  report.Resolver
	Mailer    Mailer
	From      string // report.from
	UserAgent string // e.g. "authmilter/1.2"
	Suppress  []string

	MaxPerDestinationPerDay int
	GiveUpAfter             time.Duration // 0: 24h

	Log     *slog.Logger
	Observe func(outcome string)
	Now     func() time.Time
}

func (s *FailureSender) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *FailureSender) observe(o string) {
	if s.Observe != nil {
		s.Observe(o)
	}
}

func (s *FailureSender) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// backoff is the wait before attempt n+1: 1m, 2m, 4m, ... at most 1h.
func backoff(attempts int) time.Duration {
	d := time.Minute << min(attempts, 6)
	return min(d, time.Hour)
}

// Run sends every failure report that is due, once. It returns how many the
// relay accepted.
func (s *FailureSender) Run(ctx context.Context) (int, error) {
	release, ok, err := s.Store.TryLock(ctx, FailureLockName)
	if err != nil {
		return 0, fmt.Errorf("reportmail: failure reports: %w", err)
	}
	if !ok {
		return 0, nil // another MX host is sending
	}
	defer release()
	sent := 0
	for {
		now := s.now()
		due, err := s.Store.DueFailures(ctx, now, 100)
		if err != nil {
			return sent, err
		}
		for _, q := range due {
			if s.one(ctx, now, q) {
				sent++
			}
			if ctx.Err() != nil {
				return sent, ctx.Err()
			}
		}
		if len(due) < 100 {
			return sent, nil
		}
	}
}

// one sends one queued report; it reports whether the relay took it.
func (s *FailureSender) one(ctx context.Context, now time.Time, q store.QueuedFailure) bool {
	var rep failrep.Report
	if err := json.Unmarshal([]byte(q.Data), &rep); err != nil {
		s.log().Error("failure report unreadable; dropped", "id", q.ID, "err", err)
		s.finish(ctx, q.ID, store.FailureDropped, now)
		return false
	}
	log := s.log().With("id", q.ID, "policy_domain", rep.PolicyDomain, "uri", rep.URI)
	giveUp := s.GiveUpAfter
	if giveUp <= 0 {
		giveUp = 24 * time.Hour
	}
	retry := func(why string, err error) {
		if now.After(rep.Arrival.Add(giveUp)) {
			log.Warn("failure report not sent in time; dropped", "why", why, "err", err, "attempts", q.Attempts+1)
			s.observe(FailureGaveUp)
			s.finish(ctx, q.ID, store.FailureDropped, now)
			return
		}
		next := now.Add(backoff(q.Attempts))
		log.Warn("failure report postponed", "why", why, "err", err, "next_try", next.Format(time.RFC3339))
		s.observe(FailureRetry)
		if err := s.Store.RetryFailure(ctx, q.ID, q.Attempts+1, next); err != nil {
			log.Error("failure report: cannot reschedule", "err", err)
		}
	}
	drop := func(outcome, why string, err error) {
		log.Warn("failure report not sent", "why", why, "err", err)
		s.observe(outcome)
		s.finish(ctx, q.ID, store.FailureDropped, now)
	}
	if suppressed(s.Suppress, rep.PolicyDomain) {
		drop(FailureSuppressed, "policy domain suppressed (report.suppress)", nil)
		return false
	}
	pol := report.PolicyPublished{Domain: rep.PolicyDomain, DiscoveryMethod: rep.DiscoveryMethod,
		RUA: []report.URI{{Address: rep.URI}}}
	d := report.Destinations(ctx, s.Resolver, pol)[0]
	switch {
	case errors.Is(d.Err, report.ErrTemporary):
		retry("destination check failed temporarily", d.Err)
		return false
	case d.Err != nil:
		drop(FailureUnsendable, "destination refused", d.Err)
		return false
	case suppressed(s.Suppress, d.Address):
		drop(FailureSuppressed, "destination suppressed (report.suppress)", nil)
		return false
	}
	msg := failrep.Compose(rep, q.ID, s.From, d.Address, s.UserAgent, now)
	if d.MaxSize > 0 && int64(len(msg)) > d.MaxSize {
		drop(FailureUnsendable, "larger than the destination's size limit", nil)
		return false
	}
	capName := "fr-dest|" + d.Address
	ok, err := s.Store.TakeLimit(ctx, capName, s.MaxPerDestinationPerDay, 24*time.Hour, now)
	switch {
	case err != nil:
		retry("rate limit unavailable", err)
		return false
	case !ok:
		drop(FailureCapped, "failure_reports.max_per_destination_per_day reached", nil)
		return false
	}
	err = s.Mailer.Send(ctx, s.From, d.Address, msg)
	switch {
	case err == nil:
		log.Info("failure report sent", "to", d.Address, "size", len(msg))
		s.observe(FailureSent)
		s.finish(ctx, q.ID, store.FailureSent, now)
		return true
	case errors.Is(err, ErrRejected):
		drop(FailureUnsendable, "relay refused the destination", err)
	default:
		// Not sent: the report is tried again and must not count twice.
		if err := s.Store.ReturnLimit(ctx, capName); err != nil {
			log.Warn("failure report: cannot return the destination's rate-limit slot", "err", err)
		}
		retry("relay unavailable", err)
	}
	return false
}

func (s *FailureSender) finish(ctx context.Context, id, state string, now time.Time) {
	if err := s.Store.FinishFailure(ctx, id, state, now); err != nil {
		s.log().Error("failure report: cannot mark "+state, "id", id, "err", err)
	}
}

// Loop runs the sender every interval until ctx ends, and prunes reports
// finished (and rate-limit windows ended) more than a week ago once a day.
func (s *FailureSender) Loop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	var pruned time.Time
	for {
		if _, err := s.Run(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("failure reports: run failed", "err", err)
		}
		if now := s.now(); now.Sub(pruned) > 24*time.Hour {
			if err := s.Store.PruneFailures(ctx, now.Add(-7*24*time.Hour)); err != nil && ctx.Err() == nil {
				s.log().Warn("failure reports: prune failed", "err", err)
			}
			pruned = now
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
