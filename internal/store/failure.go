package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Failure reports (RFC 9991) wait in the failure_reports table until the
// sender (internal/reportmail) has handed them to the relay, and their rate
// limits live in report_limits: both survive restarts, and several MX hosts
// on one PostgreSQL database share them.

// Failure report states.
const (
	FailurePending = "pending"
	FailureSent    = "sent"
	FailureDropped = "dropped"
)

// QueuedFailure is one failure report for one ruf destination.
type QueuedFailure struct {
	ID       string
	Data     string // the report as the caller encoded it (failrep.Report JSON)
	Attempts int
}

const (
	// takeLimit is one fixed-window counter per name: a window that has
	// ended starts again at 1; otherwise a report is taken only while
	// fewer than the maximum were. The upsert is one statement, so two
	// hosts never both take the last one. A row is changed (counted by
	// RowsAffected) only when the report was taken.
	takeLimit = `INSERT INTO report_limits (name, window_end, taken) VALUES (?, ?, 1)
		ON CONFLICT (name) DO UPDATE SET
			taken = CASE WHEN report_limits.window_end <= ? THEN 1 ELSE report_limits.taken + 1 END,
			window_end = CASE WHEN report_limits.window_end <= ? THEN excluded.window_end ELSE report_limits.window_end END
		WHERE report_limits.window_end <= ? OR report_limits.taken < ?`
	returnLimit  = `UPDATE report_limits SET taken = taken - 1 WHERE name = ? AND taken > 0`
	queueFailure = `INSERT INTO failure_reports (id, ts, policy_domain, uri, data, state, attempts, next_try)
		VALUES (?, ?, ?, ?, ?, 'pending', 0, ?)`
	dueFailures = `SELECT id, data, CAST(attempts AS TEXT) FROM failure_reports
		WHERE state = 'pending' AND next_try <= ? ORDER BY next_try, id LIMIT ?`
	finishFailure = `UPDATE failure_reports SET state = ?, done_at = ? WHERE id = ? AND state = 'pending'`
	retryFailure  = `UPDATE failure_reports SET attempts = ?, next_try = ? WHERE id = ? AND state = 'pending'`
	pruneFailures = `DELETE FROM failure_reports WHERE state <> 'pending' AND done_at < ?`
	pruneLimits   = `DELETE FROM report_limits WHERE window_end < ?`
)

// TakeLimit takes one report from the counter name, whose window is window
// long from the first report taken in it, allowing max reports per window.
// It reports whether the report may go.
func (s *Store) TakeLimit(ctx context.Context, name string, max int, window time.Duration, now time.Time) (bool, error) {
	if max < 1 {
		return false, nil
	}
	t := now.UnixMicro()
	n, err := s.db.exec(ctx, takeLimit, name, now.Add(window).UnixMicro(), t, t, t, int64(max))
	if err != nil {
		return false, fmt.Errorf("store: rate limit %q: %w", name, err)
	}
	return n > 0, nil
}

// ReturnLimit gives back a report taken from the counter name that was not
// sent after all (the relay failed temporarily): it is tried again later
// and must not count twice.
func (s *Store) ReturnLimit(ctx context.Context, name string) error {
	if _, err := s.db.exec(ctx, returnLimit, name); err != nil {
		return fmt.Errorf("store: rate limit %q: %w", name, err)
	}
	return nil
}

// QueueFailure queues one failure report for one destination URI, due at once.
func (s *Store) QueueFailure(ctx context.Context, now time.Time, policyDomain, uri, data string) (string, error) {
	if policyDomain == "" || uri == "" || data == "" {
		return "", errors.New("store: failure report without policy domain, URI or data")
	}
	id := newID()
	if _, err := s.db.exec(ctx, queueFailure, id, now.UnixMicro(), policyDomain, uri, data, now.UnixMicro()); err != nil {
		return "", fmt.Errorf("store: queue failure report: %w", err)
	}
	return id, nil
}

// DueFailures returns at most limit pending failure reports whose next try
// is at or before now, oldest first.
func (s *Store) DueFailures(ctx context.Context, now time.Time, limit int) ([]QueuedFailure, error) {
	var out []QueuedFailure
	err := s.db.each(ctx, dueFailures, []any{now.UnixMicro(), int64(limit)}, func(id, data, attempts string) error {
		n, err := strconv.Atoi(attempts)
		if err != nil {
			return fmt.Errorf("attempts of %s: %w", id, err)
		}
		out = append(out, QueuedFailure{ID: id, Data: data, Attempts: n})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: due failure reports: %w", err)
	}
	return out, nil
}

// FinishFailure marks a pending report sent or dropped (FailureSent,
// FailureDropped).
func (s *Store) FinishFailure(ctx context.Context, id, state string, now time.Time) error {
	if state != FailureSent && state != FailureDropped {
		return fmt.Errorf("store: %q is not a final failure report state", state)
	}
	if _, err := s.db.exec(ctx, finishFailure, state, now.UnixMicro(), id); err != nil {
		return fmt.Errorf("store: mark failure report %s %s: %w", id, state, err)
	}
	return nil
}

// RetryFailure records a failed attempt and when to try again.
func (s *Store) RetryFailure(ctx context.Context, id string, attempts int, next time.Time) error {
	if _, err := s.db.exec(ctx, retryFailure, int64(attempts), next.UnixMicro(), id); err != nil {
		return fmt.Errorf("store: reschedule failure report %s: %w", id, err)
	}
	return nil
}

// PruneFailures deletes failure reports finished before olderThan and rate
// limit windows that ended before it.
func (s *Store) PruneFailures(ctx context.Context, olderThan time.Time) error {
	if _, err := s.db.exec(ctx, pruneFailures, olderThan.UnixMicro()); err != nil {
		return fmt.Errorf("store: prune failure reports: %w", err)
	}
	if _, err := s.db.exec(ctx, pruneLimits, olderThan.UnixMicro()); err != nil {
		return fmt.Errorf("store: prune rate limits: %w", err)
	}
	return nil
}
