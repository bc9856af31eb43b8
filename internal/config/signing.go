package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Signing configures DKIM signing of outbound mail (issue 11;
// pkg/dkimsign, internal/service/sign.go): the direction of each message,
// the key table and the signing table.
//
// Direction, as OpenDKIM's Mode sv with InternalHosts: when Enabled, a
// message is signed (and not verified, never judged by DMARC) when it
// arrives on one of the Listen sockets, or its client matches
// InternalHosts, or the client authenticated (SMTP AUTH, the
// {auth_authen} macro) and SignAuthenticated is set. Every other message
// is verified as before.
type Signing struct {
	Enabled bool `toml:"enabled"`
	// Listen are extra milter sockets whose every message is signed, for
	// an MTA service that only takes outbound mail (a Postfix submission
	// port with its own smtpd_milters). Same forms as milter.listen; a
	// socket must not be in both lists.
	Listen []string `toml:"listen"`
	// InternalHosts are clients whose mail is signed: addresses, CIDR
	// prefixes, host names, ".example.org" for a domain and its hosts.
	InternalHosts []string `toml:"internal_hosts"`
	// ExternalIgnore are clients that are not internal but may send mail
	// as one of the signing domains (a partner's relay, a mailing list
	// host): their mail is verified as usual, without the log line
	// "external host sent mail as a signing domain" (OpenDKIM's
	// ExternalIgnoreList). Same forms as InternalHosts.
	ExternalIgnore []string `toml:"external_ignore"`
	// SignAuthenticated signs mail from authenticated clients.
	SignAuthenticated bool `toml:"sign_authenticated"`
	// Canonicalization is "header/body" with each relaxed or simple
	// (RFC 6376 §3.4); one word means that for the header and simple for
	// the body, as the c= tag reads (RFC 6376 §3.5).
	Canonicalization string `toml:"canonicalization"`
	// Headers are the fields signed when present; empty means
	// dkimsign.DefaultHeaders (RFC 6376 §5.4.1's set plus MIME fields).
	Headers []string `toml:"headers"`
	// Oversign are fields signed once more than they occur, so that an
	// added instance breaks the signature (RFC 6376 §8.15).
	Oversign []string `toml:"oversign"`
	// Expire, when not zero, adds x= that long after the signing time
	// (RFC 6376 §3.5).
	Expire Duration `toml:"expire"`
	// Keys is the key table, Rules the signing table; see SigningKey and
	// SigningRule.
	Keys  []SigningKey  `toml:"keys"`
	Rules []SigningRule `toml:"rules"`
}

// SigningKey is one key table entry ([[signing.keys]]).
type SigningKey struct {
	Name string `toml:"name"` // what rules call it
	// Domain is d=; "%" means the domain of the message's From.
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	// File is the private key (PEM PKCS #1 or #8, or an Ed25519 base64
	// seed); it must not be readable by group or others.
	File string `toml:"file"`
}

// SigningRule is one signing table entry ([[signing.rules]]): mail whose
// From domain matches Pattern is signed with every key in Keys (an RSA and
// an Ed25519 key give the dual signature of RFC 8463). Patterns:
// "example.com" (that domain), ".example.com" (it and its subdomains),
// "*.example.com" (subdomains only), "*" (any). The first match wins.
type SigningRule struct {
	Pattern string   `toml:"pattern"`
	Keys    []string `toml:"keys"`
}

func defaultSigning() Signing {
	return Signing{
		Listen:            []string{},
		InternalHosts:     []string{"127.0.0.0/8", "::1"},
		ExternalIgnore:    []string{},
		SignAuthenticated: true,
		Canonicalization:  "relaxed/relaxed",
		Headers:           []string{},
		Oversign:          []string{"From"},
		Keys:              []SigningKey{},
		Rules:             []SigningRule{},
	}
}

// ParseCanonicalization splits a canonicalization setting into its header
// and body algorithms.
func ParseCanonicalization(s string) (header, body string, err error) {
	h, b, two := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "/")
	if !two {
		b = dkimsign.Simple // RFC 6376 §3.5, c=: "relaxed" alone is relaxed/simple
	}
	for _, v := range []string{h, b} {
		if v != dkimsign.Relaxed && v != dkimsign.Simple {
			return "", "", fmt.Errorf("%q is not relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple", s)
		}
	}
	return h, b, nil
}

// SignOptions returns the signer options the section describes. The
// section must have been validated.
func (s Signing) SignOptions() *dkimsign.Options {
	h, b, _ := ParseCanonicalization(s.Canonicalization)
	o := &dkimsign.Options{HeaderCanonicalization: h, BodyCanonicalization: b, Expire: s.Expire.Duration}
	if len(s.Headers) > 0 {
		o.Headers = s.Headers
	}
	o.Oversign = s.Oversign
	if len(s.Oversign) == 0 {
		o.Oversign = []string{""} // dkimsign: none
	}
	return o
}

// Table reads the key files and builds the key and signing tables. Serve
// calls it at start and on every reload, so a rotated key file is read
// again.
func (s Signing) Table() (*dkimsign.Table, error) {
	keys := make([]dkimsign.Key, len(s.Keys))
	for i, k := range s.Keys {
		keys[i] = dkimsign.Key{Name: k.Name, Domain: k.Domain, Selector: k.Selector, File: k.File}
	}
	rules := make([]dkimsign.SigningRule, len(s.Rules))
	for i, r := range s.Rules {
		rules[i] = dkimsign.SigningRule{Pattern: r.Pattern, Keys: r.Keys}
	}
	return dkimsign.NewTable(keys, rules)
}

// validateSigning checks the section; milterListen are the verifying
// sockets. The key files are read only when signing is enabled: then a
// missing, unreadable or group/world-readable file refuses the
// configuration, naming the file, as OpenDKIM's RequireSafeKeys does.
func validateSigning(s Signing, milterListen []string) Errors {
	var es Errors
	bad := func(key, format string, args ...any) {
		es = append(es, Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(s.Listen) > 0 && !s.Enabled {
		bad("signing.listen", "sockets that sign need enabled = true")
	}
	seen := map[Socket]bool{}
	for _, l := range milterListen {
		if sock, err := ParseSocket(l); err == nil {
			seen[sock] = true
		}
	}
	for _, l := range s.Listen {
		sock, err := ParseSocket(l)
		if err != nil {
			bad("signing.listen", "%v", err)
			continue
		}
		if seen[sock] {
			bad("signing.listen", "%s is listed twice (or also in milter.listen): a socket either signs or verifies", sock)
		}
		seen[sock] = true
	}
	for _, h := range s.InternalHosts {
		if _, err := ParseHostMatcher(h); err != nil {
			bad("signing.internal_hosts", "%v", err)
		}
	}
	for _, h := range s.ExternalIgnore {
		if _, err := ParseHostMatcher(h); err != nil {
			bad("signing.external_ignore", "%v", err)
		}
	}
	if _, _, err := ParseCanonicalization(s.Canonicalization); err != nil {
		bad("signing.canonicalization", "%v", err)
	}
	if s.Expire.Duration < 0 {
		bad("signing.expire", "must not be negative (0: no x= tag)")
	} else if s.Expire.Duration > 0 && s.Expire.Duration < time.Hour {
		// Mail can sit in queues for days; an x= this short expires the
		// signatures of mail that is merely delayed.
		bad("signing.expire", "must be 0 or at least 1h")
	}
	if err := s.SignOptions().Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("signing.headers", "%s", strings.TrimPrefix(e.Error(), dkimsign.ErrOptions.Error()+": "))
		}
	}

	names := map[string]bool{}
	keysOK := true
	for i, k := range s.Keys {
		key := fmt.Sprintf("signing.keys[%d]", i+1)
		bk := func(field, format string, args ...any) {
			bad(key+"."+field, format, args...)
			keysOK = false
		}
		switch {
		case k.Name == "":
			bk("name", "is required")
		case names[k.Name]:
			bk("name", "%q is used twice", k.Name)
		}
		names[k.Name] = true
		if k.Domain != dkimsign.FromDomain {
			if _, err := identity.ASCII(k.Domain); err != nil || k.Domain == "" {
				bk("domain", "%q is not a domain name (or \"%%\" for the From domain)", k.Domain)
			}
		}
		if err := dkimsign.CheckSelector(k.Selector); err != nil {
			bk("selector", "%q is not a valid selector (RFC 6376 §3.1)", k.Selector)
		}
		switch {
		case k.File == "":
			bk("file", "is required")
		case !strings.HasPrefix(k.File, "/"):
			bk("file", "%q must be an absolute path", k.File)
		case s.Enabled:
			if _, err := dkimsign.LoadKeyFile(k.File); err != nil {
				bk("file", "%v", err)
			}
		}
	}
	for i, r := range s.Rules {
		key := fmt.Sprintf("signing.rules[%d]", i+1)
		if strings.TrimSpace(r.Pattern) == "" {
			bad(key+".pattern", "is required")
		}
		if len(r.Keys) == 0 {
			bad(key+".keys", "names no key")
		}
		for _, n := range r.Keys {
			if !names[n] {
				bad(key+".keys", "no key named %q in signing.keys", n)
			}
		}
	}
	if s.Enabled && len(s.Rules) == 0 {
		bad("signing.rules", "signing is enabled but no rule says which From domains to sign")
	}
	// What is left to check (the rule patterns) NewTable checks; with
	// keys that loaded it reports nothing else.
	if s.Enabled && keysOK && len(es) == 0 {
		if _, err := s.Table(); err != nil {
			for _, e := range unjoin(err) {
				bad("signing.rules", "%s", strings.TrimPrefix(e.Error(), dkimsign.ErrTable.Error()+": "))
			}
		}
	}
	return es
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
