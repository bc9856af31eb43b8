// Package incoming takes in the DMARC aggregate reports other receivers
// send about the site's domains — report mails from the milter hook,
// files, Maildirs and mboxes from `authmilter reports import` — and keeps
// those about the site's own domains in the store, each report once.
package incoming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/report"
)

// Store is where reports go (internal/store.Store).
type Store interface {
	PutIncoming(ctx context.Context, r *report.Report, sender string, now time.Time, maxPerDay int) (bool, error)
}

// What happened to one report, or to one input that held none: the
// "result" label of authmilter_incoming_reports_total.
const (
	Stored    = "stored"    // kept
	Duplicate = "duplicate" // the same (org, report id) was kept before
	Foreign   = "foreign"   // about a domain that is not ours: dropped
	Capped    = "capped"    // its sender's reports per day are used up: dropped
	Invalid   = "invalid"   // a mail or file that could not be read: nothing kept
)

// Ingester reads reports and stores them.
type Ingester struct {
	Store Store
	// Domains are the site's own domains (lower case): a report whose
	// policy domain is one of them or below one is kept.
	Domains []string
	// MaxPerSenderPerDay caps a sender's reports per UTC day (0: none).
	MaxPerSenderPerDay int
	Limits             *report.Limits // nil: the reader's defaults
	Log                *slog.Logger   // nil: discard
	// Observe counts each outcome (metrics); nil counts nothing.
	Observe func(result string)
	Now     func() time.Time // nil: time.Now
}

// Result counts what one call did.
type Result struct {
	Stored, Duplicate, Foreign, Capped, Invalid int
	Rows, Messages                              int // of the reports stored
}

// Add adds o to r.
func (r *Result) Add(o Result) {
	r.Stored += o.Stored
	r.Duplicate += o.Duplicate
	r.Foreign += o.Foreign
	r.Capped += o.Capped
	r.Invalid += o.Invalid
	r.Rows += o.Rows
	r.Messages += o.Messages
}

// Done reports whether every report of the input is in the store (stored
// now or before): what the milter hook's discard setting needs.
func (r Result) Done() bool {
	return r.Stored+r.Duplicate > 0 && r.Foreign == 0 && r.Capped == 0 && r.Invalid == 0
}

func (in *Ingester) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

func (in *Ingester) observe(result string) {
	if in.Observe != nil {
		in.Observe(result)
	}
}

// Mail reads one report mail and stores its reports. A mail that cannot
// be read stores nothing and counts as Invalid; the error says why. An
// error from the store is returned as well (the mail should then be kept).
func (in *Ingester) Mail(ctx context.Context, r io.Reader, where string) (Result, error) {
	m, err := report.ReadMail(r, in.Limits)
	if err != nil {
		return in.invalid(where, err)
	}
	sender := domainOf(m.From)
	return in.put(ctx, m.Reports, sender, where)
}

// File reads one report file (XML, .xml.gz or .zip) and stores its
// reports; as Mail.
func (in *Ingester) File(ctx context.Context, data []byte, where string) (Result, error) {
	rs, err := report.ReadFile(data, in.Limits)
	if err != nil {
		return in.invalid(where, err)
	}
	return in.put(ctx, rs, "", where)
}

// Refused counts and logs an input refused before reading (e.g. the
// milter hook's mail over the size limit).
func (in *Ingester) Refused(where, why string) {
	in.invalid(where, errors.New(why)) //nolint:errcheck // counted and logged
}

func (in *Ingester) invalid(where string, err error) (Result, error) {
	in.observe(Invalid)
	in.log().Warn("incoming report refused: nothing stored", "from", where, "err", err)
	return Result{Invalid: 1}, err
}

// put stores the reports of one input. The reader gave all of them or
// none; each report is stored whole or not at all (one transaction).
func (in *Ingester) put(ctx context.Context, rs []*report.Report, sender, where string) (Result, error) {
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	var res Result
	for _, r := range rs {
		snd := sender
		if snd == "" {
			snd = domainOf(r.Email)
		}
		if snd == "" {
			snd = strings.ToLower(r.OrgName)
		}
		lg := in.log().With("from", where, "org", r.OrgName, "report_id", r.ID, "domain", r.Policy.Domain)
		if !in.own(r.Policy.Domain) {
			res.Foreign++
			in.observe(Foreign)
			lg.Info("incoming report about a domain that is not ours: dropped")
			continue
		}
		ok, err := in.Store.PutIncoming(ctx, r, snd, now(), in.MaxPerSenderPerDay)
		switch {
		case errors.Is(err, store.ErrSenderCap):
			res.Capped++
			in.observe(Capped)
			lg.Warn("incoming report dropped: sender over its daily cap", "sender", snd, "err", err)
		case err != nil:
			return res, fmt.Errorf("incoming: %w", err)
		case ok:
			res.Stored++
			res.Rows += len(r.Rows)
			res.Messages += r.Messages()
			in.observe(Stored)
			lg.Info("incoming report stored", "rows", len(r.Rows), "messages", r.Messages())
		default:
			res.Duplicate++
			in.observe(Duplicate)
			lg.Info("incoming report stored before: ignored")
		}
	}
	return res, nil
}

// own reports whether d is one of the site's domains or below one.
func (in *Ingester) own(d string) bool {
	for _, o := range in.Domains {
		if d == o || strings.HasSuffix(d, "."+o) {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	d, err := identity.ASCII(identity.DomainOf(addr))
	if err != nil {
		return ""
	}
	return d
}

// Input reads one input of unknown kind (a file's bytes, stdin): an mbox
// (it starts with "From "), a report file (gzip, zip or XML), or else a
// single mail.
func (in *Ingester) Input(ctx context.Context, data []byte, where string) (Result, error) {
	switch {
	case bytes.HasPrefix(data, []byte("From ")):
		return in.Mbox(ctx, bytes.NewReader(data), where)
	case isReportFile(data):
		return in.File(ctx, data, where)
	}
	return in.Mail(ctx, bytes.NewReader(data), where)
}

func isReportFile(b []byte) bool {
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || bytes.HasPrefix(b, []byte("PK\x03\x04")) {
		return true
	}
	b = bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	return bytes.HasPrefix(b, []byte("<"))
}
