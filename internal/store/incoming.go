package store

// Incoming aggregate reports: what other receivers say about our domains
// (issue 22). Written by internal/incoming, read by the reports summary
// command and the dashboard. Tables agg_reports and agg_rows (schema.go,
// migration 2).

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// ErrSenderCap: the sender has sent its daily quota of reports already.
var ErrSenderCap = errors.New("store: reports per sender per day exceeded")

// aggRowCols are the columns of agg_rows, in insert order.
const aggRowCols = 23

// counts are a row's (or a report's) messages by outcome: the n_ columns
// of agg_rows and agg_reports (migration 4).
type counts struct {
	pass, dkimAligned, spfAligned, dkimPass, spfPass, quarantined, rejected int64
}

func (c *counts) add(o counts) {
	c.pass += o.pass
	c.dkimAligned += o.dkimAligned
	c.spfAligned += o.spfAligned
	c.dkimPass += o.dkimPass
	c.spfPass += o.spfPass
	c.quarantined += o.quarantined
	c.rejected += o.rejected
}

func (c counts) args() []any {
	return []any{c.pass, c.dkimAligned, c.spfAligned, c.dkimPass, c.spfPass, c.quarantined, c.rejected}
}

// rowCounts are the counts of one row; dkimResult and spfResult are the
// results the row is shown by (firstDKIM, the first SPF result).
func rowCounts(row *report.Row, dkimResult, spfResult string) counts {
	n := int64(row.Count)
	if1 := func(b bool) int64 {
		if b {
			return n
		}
		return 0
	}
	return counts{
		pass:        if1(row.DKIMAligned == "pass" || row.SPFAligned == "pass"),
		dkimAligned: if1(row.DKIMAligned == "pass"), spfAligned: if1(row.SPFAligned == "pass"),
		dkimPass: if1(dkimResult == "pass"), spfPass: if1(spfResult == "pass"),
		quarantined: if1(row.Disposition == "quarantine"), rejected: if1(row.Disposition == "reject"),
	}
}

// nCols are the count columns, in counts.args order.
const nCols = "n_pass, n_dkim_aligned, n_spf_aligned, n_dkim_pass, n_spf_pass, n_quarantined, n_rejected"

// IncomingKey is the de-duplication key of a report: (reporter org, report
// id), the org compared without regard to case.
func IncomingKey(org, reportID string) string {
	h := sha256.Sum256([]byte(strings.ToLower(org) + "\x00" + reportID))
	return hex.EncodeToString(h[:16])
}

// PutIncoming stores one incoming report and its rows in one transaction:
// all of it or nothing. It returns false, and stores nothing, when a report
// with the same (org, report id) is stored already. sender is who sent it
// (the domain the per-day cap counts); maxPerDay > 0 refuses a sender's
// report with ErrSenderCap once it has that many stored since 00:00 UTC
// of now.
func (s *Store) PutIncoming(ctx context.Context, r *report.Report, sender string, now time.Time, maxPerDay int) (bool, error) {
	key := IncomingKey(r.OrgName, r.ID)
	pol, err := json.Marshal(r.Policy)
	if err != nil {
		return false, fmt.Errorf("store: incoming: %w", err)
	}
	now = now.UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	// What each row is shown by and counts, and the report's totals.
	type shown struct {
		dd, dr, sd, sr string
		n              counts
	}
	rows := make([]shown, len(r.Rows))
	var total counts
	for i := range r.Rows {
		row := &r.Rows[i]
		x := &rows[i]
		x.dd, x.dr = firstDKIM(row.DKIM)
		if len(row.SPF) > 0 {
			x.sd, x.sr = row.SPF[0].Domain, row.SPF[0].Result
		}
		x.n = rowCounts(row, x.dr, x.sr)
		total.add(x.n)
	}
	stored := false
	err = s.db.inTx(ctx, func(t txer) error {
		if maxPerDay > 0 {
			n, err := t.queryInt(ctx, `SELECT COUNT(*) FROM agg_reports WHERE sender = ? AND received_ts >= ?`, sender, day.Unix())
			if err != nil {
				return err
			}
			if n >= int64(maxPerDay) {
				return fmt.Errorf("%w: %s has sent %d today", ErrSenderCap, sender, n)
			}
		}
		args := append([]any{key, r.OrgName, r.ID, r.Email, r.Policy.Domain, r.Begin.Unix(), r.End.Unix(), now.Unix(),
			sender, string(r.Format), string(pol), int64(len(r.Rows)), int64(r.Messages())}, total.args()...)
		n, err := t.exec(ctx, `INSERT INTO agg_reports (key, org, report_id, email, domain, begin_ts, end_ts, received_ts,
			sender, format, policy, nrows, messages, `+nCols+`) VALUES (`+placeholders(20)+`) ON CONFLICT (key) DO NOTHING`, args...)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // a duplicate
		}
		const per = 40 // rows per INSERT: 920 parameters
		for i := 0; i < len(r.Rows); i += per {
			k := min(len(r.Rows)-i, per)
			args := make([]any, 0, k*aggRowCols)
			for j := i; j < i+k; j++ {
				row, x := &r.Rows[j], &rows[j]
				data, err := json.Marshal(row)
				if err != nil {
					return err
				}
				args = append(args, key, r.Policy.Domain, r.Begin.Unix(), r.OrgName, row.SourceIP, int64(row.Count),
					row.Disposition, row.DKIMAligned, row.SPFAligned, row.HeaderFrom, row.EnvelopeFrom, x.dd, x.dr, x.sd, x.sr, string(data))
				args = append(args, x.n.args()...)
			}
			q := `INSERT INTO agg_rows (report, domain, begin_ts, org, source_ip, count, disposition, dkim_aligned, spf_aligned,
				header_from, envelope_from, dkim_domain, dkim_result, spf_domain, spf_result, data, ` + nCols + `) VALUES ` +
				strings.TrimSuffix(strings.Repeat("("+placeholders(aggRowCols)+"), ", k), ", ")
			if _, err := t.exec(ctx, q, args...); err != nil {
				return err
			}
		}
		stored = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: incoming report %q from %q: %w", r.ID, r.OrgName, err)
	}
	return stored, nil
}

// firstDKIM picks the signature a row is shown by: the first that passed,
// else the first.
func firstDKIM(ds []report.DKIMResult) (domain, result string) {
	for _, d := range ds {
		if d.Result == "pass" {
			return d.Domain, d.Result
		}
	}
	if len(ds) > 0 {
		return ds[0].Domain, ds[0].Result
	}
	return "", ""
}

// IncomingFilter selects incoming report rows: by policy domain, and by
// the report's begin time in [Since, Until) (zero: unbounded).
type IncomingFilter struct {
	Domain       string
	Since, Until time.Time
}

// IncomingGroup is what IncomingTotals groups by.
type IncomingGroup string

// Groupings.
const (
	ByDomain   IncomingGroup = "domain"
	ByReporter IncomingGroup = "org"
	BySource   IncomingGroup = "source_ip"
	ByDay      IncomingGroup = "day"
	// BySourceFailing is BySource for the sources with messages that
	// failed DMARC, most failing first.
	BySourceFailing IncomingGroup = "source_ip_failing"
)

// Totals are the message counts of one group of rows.
type Totals struct {
	Key         string // the domain, reporter, source address, or day (YYYY-MM-DD)
	Messages    int64
	DMARCPass   int64 // DKIM or SPF aligned and passing (policy_evaluated)
	DKIMAligned int64
	SPFAligned  int64
	DKIMPass    int64 // the shown DKIM signature passed (aligned or not)
	SPFPass     int64 // the SPF check passed (aligned or not)
	Quarantined int64 // the receiver's disposition
	Rejected    int64
	Reports     int64 // distinct reports
	DKIMDomain  string
	SPFDomain   string // one of the group's domains (the greatest), for display
	HeaderFrom  string
}

// Failing is the number of messages that failed DMARC: those a
// p=quarantine or p=reject policy would act on.
func (t Totals) Failing() int64 { return t.Messages - t.DMARCPass }

// IncomingTotals sums the rows f selects by g, largest first, at most
// limit groups (0: all); ByDay comes in day order. By domain, reporter and
// day it reads the per-report sums (agg_reports); by source, the rows.
// Reports is not counted by source (0).
func (s *Store) IncomingTotals(ctx context.Context, f IncomingFilter, g IncomingGroup, limit int) ([]Totals, error) {
	key, order, table := string(g), "2 DESC, 1", "agg_reports"
	extra := ", COUNT(*), '', '', ''"
	msgs := "messages"
	switch g {
	case ByDomain, ByReporter:
	case ByDay:
		key, order = "CAST(begin_ts / 86400 AS TEXT)", "MIN(begin_ts)"
	case BySource, BySourceFailing:
		// An index-only scan of agg_rows_sources (migration 5); the group
		// is sorted and cut in SQL, so that only limit rows come back.
		key, table, msgs = "source_ip", "agg_rows", "count"
		extra = ", 0, MAX(dkim_domain), MAX(spf_domain), MAX(header_from)"
	default:
		return nil, fmt.Errorf("store: unknown grouping %q", g)
	}
	q := "SELECT " + key + ", CAST(SUM(" + msgs + ") AS BIGINT)"
	for _, c := range strings.Split(nCols, ", ") {
		q += ", CAST(SUM(" + c + ") AS BIGINT)"
	}
	q += extra + " FROM " + table
	var where []string
	var args []any
	if f.Domain != "" {
		where, args = append(where, "domain = ?"), append(args, f.Domain)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "begin_ts >= ?"), append(args, f.Since.Unix())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "begin_ts < ?"), append(args, f.Until.Unix())
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " GROUP BY " + key
	if g == BySourceFailing {
		q += " HAVING SUM(count) > SUM(n_pass)"
		order = "SUM(count) - SUM(n_pass) DESC, 1"
	}
	q += " ORDER BY " + order
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	var out []Totals
	err := s.db.query(ctx, q, args, func(scan func(...any) error) error {
		var t Totals
		if err := scan(&t.Key, &t.Messages, &t.DMARCPass, &t.DKIMAligned, &t.SPFAligned, &t.DKIMPass, &t.SPFPass,
			&t.Quarantined, &t.Rejected, &t.Reports, &t.DKIMDomain, &t.SPFDomain, &t.HeaderFrom); err != nil {
			return err
		}
		if g == ByDay {
			var d int64
			fmt.Sscan(t.Key, &d)
			t.Key = time.Unix(d*86400, 0).UTC().Format(time.DateOnly)
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: incoming totals: %w", err)
	}
	return out, nil
}

// IncomingPolicy returns the policy_published of the latest report (by
// begin time) about domain in [since, until): the DMARC record the
// receivers found. ok is false when there is none.
func (s *Store) IncomingPolicy(ctx context.Context, domain string, since, until time.Time) (p report.PolicyPublished, ok bool, err error) {
	q := `SELECT policy FROM agg_reports WHERE domain = ? AND begin_ts >= ? AND begin_ts < ? ORDER BY begin_ts DESC, key LIMIT 1`
	err = s.db.query(ctx, q, []any{domain, since.Unix(), until.Unix()}, func(scan func(...any) error) error {
		var js string
		if err := scan(&js); err != nil {
			return err
		}
		ok = true
		return json.Unmarshal([]byte(js), &p)
	})
	if err != nil {
		return report.PolicyPublished{}, false, fmt.Errorf("store: incoming policy: %w", err)
	}
	return p, ok, nil
}

// IncomingReports counts the stored incoming reports and their rows.
func (s *Store) IncomingReports(ctx context.Context) (reports, rows int64, err error) {
	err = s.db.query(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(nrows), 0) AS BIGINT) FROM agg_reports`, nil,
		func(scan func(...any) error) error { return scan(&reports, &rows) })
	if err != nil {
		return 0, 0, fmt.Errorf("store: incoming reports: %w", err)
	}
	return reports, rows, nil
}

// LocalTotals are this MX's own records of one author domain.
type LocalTotals struct {
	HeaderFrom   string
	Messages     int64
	Dispositions map[string]int64 // none, pass, quarantine, reject
	DMARC        map[string]int64 // pass, fail, none, temperror, permerror
}

// LocalTotalsBy sums the per-message records (what this MX received) in
// [since, until) by author domain and disposition, largest first. The
// grouping runs in the database, reading the two values from the record's
// JSON with each backend's JSON function.
func (s *Store) LocalTotalsBy(ctx context.Context, since, until time.Time) ([]LocalTotals, error) {
	field := func(name string) string { // a top-level string of report.Record
		if s.o.Backend == Postgres {
			return "COALESCE(CAST(data AS jsonb) ->> '" + name + "', '')"
		}
		return "COALESCE(json_extract(data, '$." + name + "'), '')"
	}
	q := "SELECT header_from, " + field("Disposition") + ", " + field("DMARCResult") + ", COUNT(*) FROM records"
	var where []string
	var args []any
	if !since.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, since.UnixMicro())
	}
	if !until.IsZero() {
		where, args = append(where, "ts < ?"), append(args, until.UnixMicro())
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " GROUP BY 1, 2, 3"
	m := map[string]*LocalTotals{}
	err := s.db.query(ctx, q, args, func(scan func(...any) error) error {
		var d, disp, dmarc string
		var n int64
		if err := scan(&d, &disp, &dmarc, &n); err != nil {
			return err
		}
		t := m[d]
		if t == nil {
			t = &LocalTotals{HeaderFrom: d, Dispositions: map[string]int64{}, DMARC: map[string]int64{}}
			m[d] = t
		}
		t.Messages += n
		t.Dispositions[orNone(disp)] += n
		t.DMARC[orNone(dmarc)] += n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: local totals: %w", err)
	}
	out := make([]LocalTotals, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b LocalTotals) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.HeaderFrom, b.HeaderFrom))
	})
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
