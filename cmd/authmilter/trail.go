package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/authmilter/authmilter/pkg/engine"
)

// trailEntry is one DNS question a check asked, with a summary of the
// answer, for `authmilter verify`.
type trailEntry struct {
	Check   string   `json:"check"` // spf, dkim or dmarc: who asked (see checkOf)
	Type    string   `json:"type"`  // TXT, MX, A/AAAA, PTR, or "A (exists?)" for DomainExists
	Name    string   `json:"name"`  // lowercase, without the trailing dot
	Outcome string   `json:"outcome"`
	Answer  []string `json:"answer,omitempty"` // TXT strings, MX "pref host", addresses, PTR names
	Error   string   `json:"error,omitempty"`
	Asked   int      `json:"asked"` // how often the checks asked it (repeats come from the cache)
}

// Outcomes of a trail entry.
const (
	trailOK        = "ok"
	trailNXDomain  = "nxdomain"
	trailNoData    = "nodata"
	trailTemporary = "temperror"
	trailTimeout   = "timeout"
	trailError     = "error"
)

// trailResolver records every question the checks ask through it and passes
// it on unchanged: answers and errors (bare *net.DNSError, which the check
// libraries type-assert) go back exactly as the resolver returned them.
type trailResolver struct {
	r engine.Resolver

	mu      sync.Mutex
	entries []trailEntry
}

var _ engine.Resolver = (*trailResolver)(nil)

func newTrail(r engine.Resolver) *trailResolver { return &trailResolver{r: r} }

func (t *trailResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := t.r.LookupTXT(ctx, name)
	ans := slices.Clone(txts)
	slices.Sort(ans)
	t.add("TXT", name, ans, err)
	return txts, err
}

func (t *trailResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := t.r.LookupMX(ctx, name)
	ans := make([]string, len(mxs))
	for i, mx := range mxs {
		ans[i] = fmt.Sprintf("%d %s", mx.Pref, strings.TrimSuffix(mx.Host, "."))
	}
	t.add("MX", name, ans, err)
	return mxs, err
}

func (t *trailResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := t.r.LookupIPAddr(ctx, host)
	ans := make([]string, len(addrs))
	for i, a := range addrs {
		ans[i] = a.String()
	}
	slices.Sort(ans)
	t.add("A/AAAA", host, ans, err)
	return addrs, err
}

func (t *trailResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	names, err := t.r.LookupAddr(ctx, addr)
	ans := make([]string, len(names))
	for i, n := range names {
		ans[i] = strings.TrimSuffix(n, ".")
	}
	slices.Sort(ans)
	t.add("PTR", addr, ans, err)
	return names, err
}

func (t *trailResolver) DomainExists(ctx context.Context, name string) (bool, error) {
	ok, err := t.r.DomainExists(ctx, name)
	var ans []string
	switch {
	case err != nil:
	case ok:
		ans = []string{"exists"}
	default:
		ans = []string{"does not exist"}
	}
	t.add("A (exists?)", name, ans, err)
	return ok, err
}

func (t *trailResolver) add(qtype, name string, answer []string, err error) {
	e := trailEntry{Type: qtype, Name: strings.ToLower(strings.TrimSuffix(name, ".")), Outcome: trailOK, Answer: answer, Asked: 1}
	e.Check = checkOf(e.Name)
	if err != nil {
		e.Outcome, e.Answer, e.Error = outcomeOf(err), nil, errText(err)
	} else if len(answer) == 0 {
		e.Outcome = trailNoData
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.entries {
		if o := &t.entries[i]; o.Type == e.Type && o.Name == e.Name && o.Outcome == e.Outcome && o.Error == e.Error && slices.Equal(o.Answer, e.Answer) {
			o.Asked++
			return
		}
	}
	t.entries = append(t.entries, e)
}

// Entries returns the questions sorted by check, name and type. The checks
// run concurrently, so the order they asked in is not repeatable; within
// one check the names still tell the story (include chain, tree walk).
func (t *trailResolver) Entries() []trailEntry {
	t.mu.Lock()
	out := slices.Clone(t.entries)
	t.mu.Unlock()
	rank := map[string]int{"spf": 0, "dkim": 1, "dmarc": 2}
	slices.SortStableFunc(out, func(a, b trailEntry) int {
		return cmp.Or(cmp.Compare(rank[a.Check], rank[b.Check]), cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Type, b.Type), cmp.Compare(a.Outcome, b.Outcome))
	})
	return out
}

// Names returns the distinct names one check asked for, sorted.
func (t *trailResolver) Names(check string) []string {
	var out []string
	for _, e := range t.Entries() {
		if e.Check == check && !slices.Contains(out, e.Name) {
			out = append(out, e.Name)
		}
	}
	return out
}

// checkOf tells which check asked for a name. DKIM keys live under
// _domainkey (RFC 6376 §3.6.2.1), DMARC records under _dmarc (RFC 9989
// §4.10, also for the Organizational Domains of relaxed alignment);
// everything else is SPF's: its records, includes, a/mx/ptr/exists terms.
func checkOf(name string) string {
	switch {
	case strings.Contains(name, "._domainkey."):
		return "dkim"
	case strings.HasPrefix(name, "_dmarc."):
		return "dmarc"
	}
	return "spf"
}

func outcomeOf(err error) string {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return trailError
	}
	switch {
	case de.IsNotFound && de.Err == "no such host":
		return trailNXDomain
	case de.IsNotFound:
		return trailNoData
	case de.IsTimeout:
		return trailTimeout
	case de.IsTemporary:
		return trailTemporary
	}
	return trailError
}

// errText is the error without the name (the entry has it) and without the
// server address (a random port in tests, noise in real life).
func errText(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Err
	}
	return err.Error()
}
