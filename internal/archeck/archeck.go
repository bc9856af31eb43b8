// Package archeck is test support with one job: check that an
// Authentication-Results value we wrote reads the same in go-msgauth's
// authres.Parse (an independent reader, and one of the strictest about
// what it does not know: no comments, no quoting) as in our own
// authres.Parse — same authserv-id, same results in order, same method,
// result and property values, and no property one reader sees and the
// other does not (issue #15 item 8).
package archeck

import (
	"fmt"
	"strings"
	"unicode"

	gomsgauth "github.com/emersion/go-msgauth/authres"

	"github.com/authmilter/authmilter/pkg/authres"
)

// Check returns an error describing the first difference between the two
// readings of value (the field value after the colon).
func Check(value string) error {
	// Readers get the unfolded value (RFC 5322 §2.2.3).
	v := strings.NewReplacer("\r\n", "", "\n", "").Replace(value)
	ourID, ours := authres.Parse(v)
	theirID, typed, err := gomsgauth.Parse(v)
	if err != nil {
		return fmt.Errorf("go-msgauth cannot read %q: %w", v, err)
	}
	if !strings.EqualFold(theirID, ourID) {
		return fmt.Errorf("authserv-id: go-msgauth %q, ours %q in %q", theirID, ourID, v)
	}
	// go-msgauth keeps only some parameters of the methods it knows; the
	// same value with every method renamed reads as GenericResults with
	// all of them (the split does not depend on the method name).
	_, theirs, err := gomsgauth.Parse(renameMethods(v))
	if err != nil {
		return fmt.Errorf("go-msgauth cannot read %q: %w", v, err)
	}
	if len(theirs) != len(ours) || len(typed) != len(ours) {
		return fmt.Errorf("go-msgauth reads %d results, we wrote %d: %q", len(theirs), len(ours), v)
	}
	for i, r := range ours {
		g, ok := theirs[i].(*gomsgauth.GenericResult)
		if !ok {
			return fmt.Errorf("result %d: %T", i, theirs[i])
		}
		method, value := strings.TrimPrefix(g.Method, renamed), string(g.Value)
		if method != r.Method || value != r.Value {
			return fmt.Errorf("result %d: go-msgauth %s=%s, ours %s=%s in %q", i, method, value, r.Method, r.Value, v)
		}
		seen := map[string]bool{}
		for _, p := range r.Props {
			seen[p.Key] = true
			if got, ok := g.Params[p.Key]; !ok || got != p.Value {
				return fmt.Errorf("result %d: %s: go-msgauth %q, ours %q in %q", i, p.Key, got, p.Value, v)
			}
		}
		for k := range g.Params {
			if authres.IsProperty(k) && !seen[k] {
				return fmt.Errorf("result %d: go-msgauth reads a property %s=%q we did not write, in %q", i, k, g.Params[k], v)
			}
		}
	}
	return nil
}

const renamed = "x-archeck-"

// renameMethods prefixes the method of each result, found as go-msgauth
// finds it: the first white-space separated word of each ';'-separated
// part after the first.
func renameMethods(v string) string {
	parts := strings.Split(v, ";")
	for i := 1; i < len(parts); i++ {
		p := parts[i]
		j := strings.IndexFunc(p, func(r rune) bool { return !unicode.IsSpace(r) })
		if f := strings.Fields(p); len(f) == 0 || f[0] == "none" {
			continue
		}
		parts[i] = p[:j] + renamed + p[j:]
	}
	return strings.Join(parts, ";")
}
