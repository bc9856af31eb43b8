// Package dashboard is the web view of what the world's receivers report
// about the site's domains (the incoming aggregate reports) and of what
// this MX itself received (its records): server-rendered HTML with SVG
// charts, and a JSON API returning what each page shows. It reads the
// store and decides nothing about mail.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/identity"
	"github.com/authmilter/authmilter/pkg/report"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Source is what the dashboard reads (internal/store.Store).
type Source interface {
	IncomingTotals(ctx context.Context, f store.IncomingFilter, g store.IncomingGroup, limit int) ([]store.Totals, error)
	IncomingReports(ctx context.Context) (reports, rows int64, err error)
	IncomingPolicy(ctx context.Context, domain string, since, until time.Time) (report.PolicyPublished, bool, error)
	LocalTotalsBy(ctx context.Context, since, until time.Time) ([]store.LocalTotals, error)
}

// Auth is how requests authenticate: a bearer token, or HTTP basic
// authentication. With neither set every request is refused.
type Auth struct {
	Token          string
	User, Password string
}

// Options configure the dashboard.
type Options struct {
	Store Source
	Auth  Auth
	// Names returns the reverse DNS name of an address, "" when it has
	// none; nil shows none.
	Names func(ctx context.Context, ip string) string
	Log   *slog.Logger
	Now   func() time.Time // nil: time.Now
	// MaxSources is how many sources a page lists (default 100).
	MaxSources int
}

// Handler serves the dashboard:
//
//	/                  overview: every own domain over the period
//	/domain?d=D        one domain: messages, DMARC pass share, reporters, daily trend
//	/sources?d=D       its sending sources: address, name, volume, SPF/DKIM results and alignment
//	/policy?d=D        what p=quarantine / p=reject would act on, by source
//	/local             what this MX received, by author domain and disposition
//	/api/...           the same data as JSON (/api/overview, /api/domain?d=D, ...)
//
// Every page takes ?days=N (1-366, default 30).
func Handler(o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSources <= 0 {
		o.MaxSources = 100
	}
	d := &dash{o: o, tmpl: template.Must(template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html"))}
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	for _, p := range []struct {
		path string
		fn   func(*http.Request, period) (any, error)
	}{
		{"overview", d.overview}, {"domain", d.domain}, {"sources", d.sources}, {"policy", d.policy}, {"local", d.local},
	} {
		page := p
		html := "/" + page.path
		if page.path == "overview" {
			html = "/{$}"
		}
		mux.HandleFunc("GET "+html, func(w http.ResponseWriter, r *http.Request) { d.serve(w, r, page.path, page.fn, false) })
		mux.HandleFunc("GET /api/"+page.path, func(w http.ResponseWriter, r *http.Request) { d.serve(w, r, page.path, page.fn, true) })
	}
	return d.secure(mux)
}

type dash struct {
	o    Options
	tmpl *template.Template
}

// secure adds the security headers to every answer and refuses requests
// that do not authenticate.
func (d *dash) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything is our own: no scripts at all, styles and images from
		// this origin only (the SVG charts are inline markup with
		// presentation attributes, not style).
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !d.authorized(r) {
			if d.o.Auth.User != "" {
				h.Set("WWW-Authenticate", `Basic realm="authmilter dashboard", charset="UTF-8"`)
			} else {
				h.Set("WWW-Authenticate", `Bearer realm="authmilter dashboard"`)
			}
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *dash) authorized(r *http.Request) bool {
	a := d.o.Auth
	eq := func(x, y string) bool { return subtle.ConstantTimeCompare([]byte(x), []byte(y)) == 1 }
	if a.Token != "" {
		if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(strings.TrimSpace(t), a.Token) {
			return true
		}
	}
	if a.User != "" && a.Password != "" {
		if u, p, ok := r.BasicAuth(); ok && eq(u, a.User) && eq(p, a.Password) {
			return true
		}
	}
	return false
}

// period is the time window of a page: the last Days days up to now.
type period struct {
	Days         int
	Since, Until time.Time
}

func (d *dash) period(r *http.Request) (period, bool) {
	days := 30
	if s := r.URL.Query().Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 366 {
			return period{}, false
		}
		days = n
	}
	now := d.o.Now().UTC()
	until := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1)
	return period{Days: days, Since: until.AddDate(0, 0, -days), Until: until}, true
}

// errBadRequest is a page's answer to a query it cannot take.
type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

func (d *dash) serve(w http.ResponseWriter, r *http.Request, name string, fn func(*http.Request, period) (any, error), api bool) {
	p, ok := d.period(r)
	if !ok {
		http.Error(w, "days must be a number from 1 to 366", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	data, err := fn(r.WithContext(ctx), p)
	if err != nil {
		var bad errBadRequest
		if errors.As(err, &bad) {
			http.Error(w, string(bad), http.StatusBadRequest)
			return
		}
		d.o.Log.Error("dashboard", "page", name, "err", err)
		http.Error(w, "the store could not be read; see the log", http.StatusInternalServerError)
		return
	}
	if api {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(data) //nolint:errcheck // the client went away
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := d.tmpl.ExecuteTemplate(w, name+".html", data); err != nil {
		d.o.Log.Error("dashboard: template", "page", name, "err", err)
	}
}

// Page data: what each page shows, and what its API returns.

// Overview is the / page.
type Overview struct {
	Period  period
	Domains []store.Totals
	Reports int64 // stored in all, any period
	Rows    int64
}

func (d *dash) overview(r *http.Request, p period) (any, error) {
	ts, err := d.o.Store.IncomingTotals(r.Context(), store.IncomingFilter{Since: p.Since, Until: p.Until}, store.ByDomain, 0)
	if err != nil {
		return nil, err
	}
	n, rows, err := d.o.Store.IncomingReports(r.Context())
	if err != nil {
		return nil, err
	}
	return Overview{Period: p, Domains: ts, Reports: n, Rows: rows}, nil
}

// Domain is the /domain page.
type Domain struct {
	Period    period
	Domain    string
	Total     store.Totals
	Reporters []store.Totals
	Daily     []store.Totals // every day of the period, in order (days without reports count 0)
	// Policy is the DMARC policy the latest report of the period says the
	// receivers found (policy_published); nil when there is no report.
	Policy *report.PolicyPublished
	Chart  template.HTML `json:"-"`
}

func domainParam(r *http.Request) (string, error) {
	d, err := identity.ASCII(strings.TrimSpace(r.URL.Query().Get("d")))
	if err != nil {
		return "", errBadRequest("d must be a domain name")
	}
	return d, nil
}

func (d *dash) domain(r *http.Request, p period) (any, error) {
	dom, err := domainParam(r)
	if err != nil {
		return nil, err
	}
	f := store.IncomingFilter{Domain: dom, Since: p.Since, Until: p.Until}
	out := Domain{Period: p, Domain: dom}
	tot, err := d.o.Store.IncomingTotals(r.Context(), f, store.ByDomain, 0)
	if err != nil {
		return nil, err
	}
	if len(tot) > 0 {
		out.Total = tot[0]
	}
	out.Total.Key = dom
	if out.Reporters, err = d.o.Store.IncomingTotals(r.Context(), f, store.ByReporter, 0); err != nil {
		return nil, err
	}
	daily, err := d.o.Store.IncomingTotals(r.Context(), f, store.ByDay, 0)
	if err != nil {
		return nil, err
	}
	out.Daily = fillDays(daily, p)
	if pol, ok, err := d.o.Store.IncomingPolicy(r.Context(), dom, p.Since, p.Until); err != nil {
		return nil, err
	} else if ok {
		out.Policy = &pol
	}
	out.Chart = dailyChart(out.Daily)
	return out, nil
}

// fillDays gives every day of p its totals, zero where no report began.
func fillDays(ts []store.Totals, p period) []store.Totals {
	by := map[string]store.Totals{}
	for _, t := range ts {
		by[t.Key] = t
	}
	var out []store.Totals
	for day := p.Since; day.Before(p.Until); day = day.AddDate(0, 0, 1) {
		k := day.Format(time.DateOnly)
		t := by[k]
		t.Key = k
		out = append(out, t)
	}
	return out
}

// SourceRow is one sending address with its reverse name.
type SourceRow struct {
	store.Totals
	Name string // reverse DNS name, "" when none or not looked up
}

// Sources is the /sources and /policy pages.
type Sources struct {
	Period  period
	Domain  string
	Sources []SourceRow
	// Failing is the sum of the messages that failed DMARC: what
	// p=quarantine or p=reject would have acted on (policy page); of
	// Messages, every message reported about the domain. Sources lists
	// the largest MaxSources (by messages, or on the policy page by
	// failing messages).
	Failing, Messages int64
}

func (d *dash) sourceRows(r *http.Request, p period, failingOnly bool) (Sources, error) {
	dom, err := domainParam(r)
	if err != nil {
		return Sources{}, err
	}
	f := store.IncomingFilter{Domain: dom, Since: p.Since, Until: p.Until}
	out := Sources{Period: p, Domain: dom}
	tot, err := d.o.Store.IncomingTotals(r.Context(), f, store.ByDomain, 0)
	if err != nil {
		return Sources{}, err
	}
	if len(tot) > 0 {
		out.Messages, out.Failing = tot[0].Messages, tot[0].Failing()
	}
	g := store.BySource
	if failingOnly {
		g = store.BySourceFailing
	}
	ts, err := d.o.Store.IncomingTotals(r.Context(), f, g, d.o.MaxSources)
	if err != nil {
		return Sources{}, err
	}
	for _, t := range ts {
		out.Sources = append(out.Sources, SourceRow{Totals: t})
	}
	d.names(r.Context(), out.Sources)
	return out, nil
}

// names looks up the reverse names of the listed sources in parallel,
// each bounded, the whole bounded by 3 s.
func (d *dash) names(ctx context.Context, rows []SourceRow) {
	if d.o.Names == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range rows {
		if _, err := netip.ParseAddr(rows[i].Key); err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(row *SourceRow) {
			defer func() { <-sem; wg.Done() }()
			row.Name = d.o.Names(ctx, row.Key)
		}(&rows[i])
	}
	wg.Wait()
}

func (d *dash) sources(r *http.Request, p period) (any, error) { return d.sourceRows(r, p, false) }
func (d *dash) policy(r *http.Request, p period) (any, error)  { return d.sourceRows(r, p, true) }

// Local is the /local page.
type Local struct {
	Period  period
	Domains []store.LocalTotals
}

func (d *dash) local(r *http.Request, p period) (any, error) {
	ls, err := d.o.Store.LocalTotalsBy(r.Context(), p.Since, p.Until)
	if err != nil {
		return nil, err
	}
	if len(ls) > 500 {
		ls = ls[:500]
	}
	return Local{Period: p, Domains: ls}, nil
}

// AddrLookuper is what ReverseNames needs of the resolver
// (internal/resolver.Resolver).
type AddrLookuper interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// ReverseNames returns an Options.Names that asks res for the PTR name of
// an address (the first, without the root dot); "" when there is none or
// the lookup fails. The name is shown as the address's owner claims it:
// it is not confirmed forward.
func ReverseNames(res AddrLookuper) func(ctx context.Context, ip string) string {
	return func(ctx context.Context, ip string) string {
		names, err := res.LookupAddr(ctx, ip)
		if err != nil || len(names) == 0 {
			return ""
		}
		return strings.TrimSuffix(names[0], ".")
	}
}
