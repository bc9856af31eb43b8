package store

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"time"
)

// The schema is the same on SQLite and PostgreSQL: plain TEXT and BIGINT
// columns, times as Unix microseconds (UTC), partial indexes (both support
// them). The columns are what the queries select on; the whole
// report.Record is kept as JSON in data, so that fields added to the model
// need no migration.
//
// migrations[i] is schema version i+1. Never edit a released entry: append
// a new one.
var migrations = [][]string{
	{ // 1: records
		`CREATE TABLE records (
			id            TEXT PRIMARY KEY,  -- random 128-bit id, hex, made at record time
			ts            BIGINT NOT NULL,   -- end of message, Unix microseconds UTC
			reporter      TEXT NOT NULL,
			policy_domain TEXT NOT NULL,
			header_from   TEXT NOT NULL,
			queue_id      TEXT NOT NULL,
			data          TEXT NOT NULL,     -- report.Record as JSON
			report_id     TEXT,              -- NULL until reported
			reported_at   BIGINT             -- Unix microseconds
		)`,
		`CREATE INDEX records_pending ON records (policy_domain, ts) WHERE report_id IS NULL`,
		`CREATE INDEX records_ts ON records (ts)`,
	},
	{ // 2: failure reports (internal/store/failure.go)
		`CREATE TABLE failure_reports (
			id            TEXT PRIMARY KEY,  -- random 128-bit id, hex
			ts            BIGINT NOT NULL,   -- queued at, Unix microseconds UTC
			policy_domain TEXT NOT NULL,
			uri           TEXT NOT NULL,     -- the ruf URI as published
			data          TEXT NOT NULL,     -- failrep.Report as JSON
			state         TEXT NOT NULL,     -- pending, sent, dropped
			attempts      BIGINT NOT NULL,
			next_try      BIGINT NOT NULL,   -- Unix microseconds
			done_at       BIGINT             -- sent or dropped at
		)`,
		`CREATE INDEX failure_reports_due ON failure_reports (next_try) WHERE state = 'pending'`,
		`CREATE TABLE report_limits (
			name       TEXT PRIMARY KEY,  -- what is limited, e.g. "fr|example.com|192.0.2.1|dmarc"
			window_end BIGINT NOT NULL,   -- end of the current window, Unix microseconds
			taken      BIGINT NOT NULL    -- reports taken in the window
		)`,
	},
	{ // 3: incoming aggregate reports (issue 22; incoming.go)
		`CREATE TABLE agg_reports (
			key         TEXT PRIMARY KEY,  -- hex SHA-256 of lower(org) NUL report_id: the de-duplication key
			org         TEXT NOT NULL,     -- reporter org_name
			report_id   TEXT NOT NULL,
			email       TEXT NOT NULL,
			domain      TEXT NOT NULL,     -- policy_published/domain
			begin_ts    BIGINT NOT NULL,   -- date_range, Unix seconds; end exclusive
			end_ts      BIGINT NOT NULL,
			received_ts BIGINT NOT NULL,   -- when we stored it, Unix seconds
			sender      TEXT NOT NULL,     -- who sent it (mail From domain, else the email's domain): the per-day cap
			format      TEXT NOT NULL,
			policy      TEXT NOT NULL,     -- report.PolicyPublished as JSON
			nrows       BIGINT NOT NULL,
			messages    BIGINT NOT NULL
		)`,
		`CREATE INDEX agg_reports_sender ON agg_reports (sender, received_ts)`,
		`CREATE TABLE agg_rows (
			report        TEXT NOT NULL,   -- agg_reports.key
			domain        TEXT NOT NULL,   -- of the report, repeated for the queries
			begin_ts      BIGINT NOT NULL,
			org           TEXT NOT NULL,
			source_ip     TEXT NOT NULL,
			count         BIGINT NOT NULL,
			disposition   TEXT NOT NULL,
			dkim_aligned  TEXT NOT NULL,   -- policy_evaluated: pass or fail
			spf_aligned   TEXT NOT NULL,
			header_from   TEXT NOT NULL,
			envelope_from TEXT NOT NULL,
			dkim_domain   TEXT NOT NULL,   -- the first passing signature, else the first
			dkim_result   TEXT NOT NULL,
			spf_domain    TEXT NOT NULL,   -- the first SPF result
			spf_result    TEXT NOT NULL,
			data          TEXT NOT NULL    -- report.Row as JSON
		)`,
		`CREATE INDEX agg_rows_domain ON agg_rows (domain, begin_ts)`,
		`CREATE INDEX agg_rows_report ON agg_rows (report)`,
	},
	{ // 4: incoming report counts kept per row and per report, so that the
		// dashboard sums integers (and reads agg_reports, not agg_rows, for
		// its per-domain, per-reporter and per-day totals). n_pass counts
		// the messages that passed DMARC (DKIM or SPF aligned and passing).
		`ALTER TABLE agg_rows ADD COLUMN n_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_dkim_aligned BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_spf_aligned BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_dkim_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_spf_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_quarantined BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_rows ADD COLUMN n_rejected BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_dkim_aligned BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_spf_aligned BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_dkim_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_spf_pass BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_quarantined BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE agg_reports ADD COLUMN n_rejected BIGINT NOT NULL DEFAULT 0`,
		`UPDATE agg_rows SET n_pass = CASE WHEN dkim_aligned = 'pass' OR spf_aligned = 'pass' THEN count ELSE 0 END, n_dkim_aligned = CASE WHEN dkim_aligned = 'pass' THEN count ELSE 0 END, n_spf_aligned = CASE WHEN spf_aligned = 'pass' THEN count ELSE 0 END, n_dkim_pass = CASE WHEN dkim_result = 'pass' THEN count ELSE 0 END, n_spf_pass = CASE WHEN spf_result = 'pass' THEN count ELSE 0 END, n_quarantined = CASE WHEN disposition = 'quarantine' THEN count ELSE 0 END, n_rejected = CASE WHEN disposition = 'reject' THEN count ELSE 0 END`,
		`UPDATE agg_reports SET n_pass = (SELECT COALESCE(SUM(n_pass), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_dkim_aligned = (SELECT COALESCE(SUM(n_dkim_aligned), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_spf_aligned = (SELECT COALESCE(SUM(n_spf_aligned), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_dkim_pass = (SELECT COALESCE(SUM(n_dkim_pass), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_spf_pass = (SELECT COALESCE(SUM(n_spf_pass), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_quarantined = (SELECT COALESCE(SUM(n_quarantined), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key), n_rejected = (SELECT COALESCE(SUM(n_rejected), 0) FROM agg_rows WHERE agg_rows.report = agg_reports.key)`,
		`CREATE INDEX agg_reports_domain ON agg_reports (domain, begin_ts)`,
	},
	{ // 5: the dashboard's sources of a domain read this index alone (an
		// index-only scan), never the wide rows with their JSON.
		`CREATE INDEX agg_rows_sources ON agg_rows (domain, begin_ts, source_ip, count, ` +
			`n_pass, n_dkim_aligned, n_spf_aligned, n_dkim_pass, n_spf_pass, n_quarantined, n_rejected, ` +
			`dkim_domain, spf_domain, header_from)`,
		`DROP INDEX agg_rows_domain`, // its prefix
	},
}

// txer is the little a migration needs of a transaction, on either backend.
type txer interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryInt(ctx context.Context, q string, args ...any) (int64, error)
}

// migrate applies the missing migrations inside tx, recording each in
// schema_migrations. The caller holds a lock that keeps other instances out
// (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory transaction lock).
func migrate(ctx context.Context, tx txer) error {
	if _, err := tx.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: schema_migrations: %w", err)
	}
	have, err := tx.queryInt(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("store: schema version: %w", err)
	}
	if have > int64(len(migrations)) {
		return fmt.Errorf("store: %w: database is at version %d, this build knows %d", ErrSchemaTooNew, have, len(migrations))
	}
	for v := have + 1; v <= int64(len(migrations)); v++ {
		for _, stmt := range migrations[v-1] {
			if _, err := tx.exec(ctx, stmt); err != nil {
				return fmt.Errorf("store: migration %d: %w", v, err)
			}
		}
		if _, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			v, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return nil
}

// The queries, written once with "?" placeholders; the PostgreSQL backend
// numbers them ($1, $2, ...).
const (
	insertCols  = `INSERT INTO records (id, ts, reporter, policy_domain, header_from, queue_id, data) VALUES `
	insertTuple = `(?, ?, ?, ?, ?, ?, ?)`
	// Replays and retries insert the same ids again: idempotent.
	insertTail = ` ON CONFLICT (id) DO NOTHING`

	selectCols = `SELECT id, data, COALESCE(report_id, '') FROM records`

	markHead = `UPDATE records SET report_id = ?, reported_at = ? WHERE id IN (`

	// Deleting in slices keeps SQLite's write lock short.
	pruneQuery = `DELETE FROM records WHERE id IN (
		SELECT id FROM records WHERE report_id IS NOT NULL AND ts < ? LIMIT 5000)`

	domainsQuery = `SELECT DISTINCT policy_domain FROM records WHERE report_id IS NULL AND ts < ? ORDER BY policy_domain`
)

// insertBatch is the most ids one UPDATE of MarkReported carries (well
// under SQLite's and PostgreSQL's parameter limits).
const insertBatch = 500

// Inserts carry 1, 2, 4 ... 256 rows (7 parameters each): a few statement
// texts that each connection prepares once and reuses, whatever the batch
// sizes. A batch of n rows runs the largest that fits, then the rest.
const insertSizes = 9

// insertSize returns k such that the next INSERT for n > 0 rows carries
// 1<<k of them.
func insertSize(n int) int {
	return min(bits.Len(uint(n))-1, insertSizes-1)
}

func insertQuery(n int) string {
	var b strings.Builder
	b.WriteString(insertCols)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(insertTuple)
	}
	b.WriteString(insertTail)
	return b.String()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// selectQuery builds the SELECT for q.
func selectQuery(q Query) (string, []any) {
	var where []string
	var args []any
	if !q.Begin.IsZero() {
		where = append(where, "ts >= ?")
		args = append(args, q.Begin.UnixMicro())
	}
	if !q.End.IsZero() {
		where = append(where, "ts < ?")
		args = append(args, q.End.UnixMicro())
	}
	if q.PolicyDomain != "" {
		where = append(where, "policy_domain = ?")
		args = append(args, q.PolicyDomain)
	}
	if q.Unreported {
		where = append(where, "report_id IS NULL")
	}
	s := selectCols
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	return s + " ORDER BY ts, id", args
}

// numbered rewrites "?" placeholders as $1, $2, ... for PostgreSQL. Our
// queries have no "?" inside string literals.
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
