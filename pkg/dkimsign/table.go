package dkimsign

import (
	"crypto"
	"errors"
	"fmt"
	"strings"

	"github.com/authmilter/authmilter/pkg/identity"
)

// ErrTable is wrapped by the errors of NewTable that are about the tables
// themselves (key file errors wrap the Err… of LoadKeyFile instead).
var ErrTable = errors.New("dkimsign: bad signing configuration")

// FromDomain, used as Key.Domain, signs with d= set to the message's From
// domain (OpenDKIM's "%" in a KeyTable).
const FromDomain = "%"

// Key is one key table entry (OpenDKIM's KeyTable line
// "name domain:selector:file").
type Key struct {
	Name     string // how signing rules refer to the key
	Domain   string // the signing domain d=, or FromDomain
	Selector string // s=
	File     string // private key file, see LoadKeyFile
}

// SigningRule is one signing table entry (OpenDKIM's SigningTable with
// refile patterns, matched on the From domain only): a message whose From
// domain matches Pattern is signed with every key in Keys, in that order.
// Two keys, one RSA and one Ed25519, give the dual signature RFC 8463
// suggests while verifiers without Ed25519 remain.
//
// Pattern, case-insensitive, one of:
//
//	example.com     that domain only
//	.example.com    example.com and every domain below it
//	*.example.com   every domain below example.com, not example.com itself
//	*               every domain
//
// and more generally "*" matches any run of characters, dots included.
// Rules are tried in order; the first that matches wins.
type SigningRule struct {
	Pattern string
	Keys    []string
}

// LoadedKey is a key table entry with its private key read.
type LoadedKey struct {
	Key
	Algorithm string // AlgRSA or AlgEd25519
	Bits      int    // RSA modulus size; 256 for Ed25519
	Signer    crypto.Signer
}

// Table is a loaded key table and signing table. It is immutable and safe
// for concurrent use; a reload (key rotation) builds a new one.
type Table struct {
	keys  []*LoadedKey
	rules []rule
}

type rule struct {
	pattern string // normalized
	keys    []*LoadedKey
}

// NewTable checks both tables and reads every key file. All problems are
// reported together (errors.Join), each naming its key or file.
func NewTable(keys []Key, rules []SigningRule) (*Table, error) {
	t := &Table{}
	byName := map[string]*LoadedKey{}
	var errs []error
	for i, k := range keys {
		lk, err := loadKey(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %d (%q): %w", i+1, k.Name, err))
			continue
		}
		if _, dup := byName[k.Name]; dup {
			errs = append(errs, fmt.Errorf("%w: key name %q used twice", ErrTable, k.Name))
			continue
		}
		byName[k.Name] = lk
		t.keys = append(t.keys, lk)
	}
	for i, sr := range rules {
		pat, err := normalizePattern(sr.Pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("signing rule %d: %w", i+1, err))
			continue
		}
		if len(sr.Keys) == 0 {
			errs = append(errs, fmt.Errorf("%w: signing rule %d (%q) names no key", ErrTable, i+1, sr.Pattern))
			continue
		}
		r := rule{pattern: pat}
		for _, name := range sr.Keys {
			lk, ok := byName[name]
			if !ok {
				if !keyNamed(keys, name) { // a bad key is already reported
					errs = append(errs, fmt.Errorf("%w: signing rule %d (%q): no key named %q", ErrTable, i+1, sr.Pattern, name))
				}
				continue
			}
			r.keys = append(r.keys, lk)
		}
		t.rules = append(t.rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func keyNamed(keys []Key, name string) bool {
	for _, k := range keys {
		if k.Name == name {
			return true
		}
	}
	return false
}

func loadKey(k Key) (*LoadedKey, error) {
	if k.Name == "" {
		return nil, fmt.Errorf("%w: key without a name", ErrTable)
	}
	if k.Domain != FromDomain {
		d, err := identity.ASCII(k.Domain)
		if err != nil {
			return nil, fmt.Errorf("%w: domain: %v", ErrTable, err)
		}
		k.Domain = d
	}
	if err := CheckSelector(k.Selector); err != nil {
		return nil, err
	}
	if k.File == "" {
		return nil, fmt.Errorf("%w: no key file", ErrTable)
	}
	s, err := LoadKeyFile(k.File)
	if err != nil {
		return nil, err
	}
	alg, bits, err := KeyInfo(s.Public())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.File, err)
	}
	return &LoadedKey{Key: k, Algorithm: alg, Bits: bits, Signer: s}, nil
}

// CheckSelector applies RFC 6376 §3.1: selector = sub-domain *("."
// sub-domain), letters, digits and "-" (we allow "_" as DNS does).
func CheckSelector(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty selector", ErrTable)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%w: selector %q: bad label", ErrTable, s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%w: selector %q: bad character %q", ErrTable, s, c)
			}
		}
	}
	return nil
}

// normalizePattern lowercases a pattern and turns U-labels into A-labels,
// label by label, leaving labels with "*" as they are.
func normalizePattern(p string) (string, error) {
	p = strings.TrimSuffix(strings.TrimSpace(p), ".")
	if p == "" {
		return "", fmt.Errorf("%w: empty pattern", ErrTable)
	}
	if p == "*" {
		return p, nil
	}
	lead := strings.HasPrefix(p, ".")
	labels := strings.Split(strings.TrimPrefix(p, "."), ".")
	for i, l := range labels {
		if strings.Contains(l, "*") {
			labels[i] = strings.ToLower(l)
			continue
		}
		d, err := identity.ASCII(l)
		if err != nil {
			return "", fmt.Errorf("%w: pattern %q: %v", ErrTable, p, err)
		}
		labels[i] = d
	}
	out := strings.Join(labels, ".")
	if lead {
		out = "." + out
	}
	return out, nil
}

// Select returns the keys to sign a message whose From domain is
// fromDomain with: those of the first matching rule, nil if none matches.
// Keys with Domain FromDomain come back as copies with Domain set.
func (t *Table) Select(fromDomain string) []*LoadedKey {
	if t == nil {
		return nil
	}
	d, err := identity.ASCII(fromDomain)
	if err != nil {
		return nil
	}
	for _, r := range t.rules {
		if !matchPattern(r.pattern, d) {
			continue
		}
		out := make([]*LoadedKey, 0, len(r.keys))
		for _, k := range r.keys {
			if k.Domain == FromDomain {
				c := *k
				c.Domain = d
				k = &c
			}
			out = append(out, k)
		}
		return out
	}
	return nil
}

// Keys returns every loaded key, in key table order.
func (t *Table) Keys() []*LoadedKey {
	if t == nil {
		return nil
	}
	return append([]*LoadedKey(nil), t.keys...)
}

// matchPattern matches a normalized pattern against a normalized domain.
func matchPattern(p, d string) bool {
	if rest, ok := strings.CutPrefix(p, "."); ok {
		return d == rest || strings.HasSuffix(d, p)
	}
	return glob(p, d)
}

// glob matches s against p where "*" stands for any run of bytes. Patterns
// come from the configuration and domains are at most 253 bytes, so the
// backtracking stays small.
func glob(p, s string) bool {
	before, after, found := strings.Cut(p, "*")
	if !found {
		return p == s
	}
	if !strings.HasPrefix(s, before) {
		return false
	}
	s = s[len(before):]
	after = strings.TrimLeft(after, "*")
	for i := 0; i <= len(s); i++ {
		if glob(after, s[i:]) {
			return true
		}
	}
	return false
}
