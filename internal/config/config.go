// Package config turns the TOML configuration file into typed, validated
// settings with defaults, and reports every problem with the key (and line)
// it belongs to.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Config is the whole configuration. The zero value is not useful: start from
// Default() or Load.
type Config struct {
	// AuthservID names this host in Authentication-Results (RFC 8601 §2.2).
	// Empty means the host name.
	AuthservID string `toml:"authserv_id"`

	Milter  Milter  `toml:"milter"`
	DNS     DNS     `toml:"dns"`
	Log     Log     `toml:"log"`
	Policy  Policy  `toml:"policy"`
	SPF     SPF     `toml:"spf"`
	DKIM    DKIM    `toml:"dkim"`
	DMARC   DMARC   `toml:"dmarc"`
	ARC     ARC     `toml:"arc"`     // internal/config/arc.go
	Store   Store   `toml:"store"`   // internal/config/store.go
	Report  Report  `toml:"report"`  // internal/config/report.go
	Metrics Metrics `toml:"metrics"` // internal/config/metrics.go
	Signing Signing `toml:"signing"` // internal/config/signing.go

	FailureReports  FailureReports  `toml:"failure_reports"`  // internal/config/failure.go
	IncomingReports IncomingReports `toml:"incoming_reports"` // internal/config/incoming.go
	Dashboard       Dashboard       `toml:"dashboard"`        // internal/config/incoming.go
}

// Milter holds the sockets and session limits of the milter server.
type Milter struct {
	Listen          []string `toml:"listen"`
	SocketMode      string   `toml:"socket_mode"`
	SocketGroup     string   `toml:"socket_group"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	MaxHeaderBytes  int      `toml:"max_header_bytes"`
	MaxHeaders      int      `toml:"max_headers"`
	MaxSessions     int      `toml:"max_sessions"`
}

// DNS configures the one resolver all checks share.
type DNS struct {
	Servers   []string `toml:"servers"`
	Timeout   Duration `toml:"timeout"`
	Attempts  int      `toml:"attempts"`
	CacheSize int      `toml:"cache_size"`
	// CacheBytes bounds the cache's memory (issue 16: hostile zones answer
	// with thousands of records and a day's TTL).
	CacheBytes int64 `toml:"cache_bytes"`
	// MessageBudget bounds all DNS work of one message.
	MessageBudget Duration `toml:"message_budget"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Policy holds the local decisions that are not about one protocol.
type Policy struct {
	IgnoreHosts       []string `toml:"ignore_hosts"`
	SkipAuthenticated bool     `toml:"skip_authenticated"`
	// IgnoreMailFrom are envelope-sender domains whose mail gets no checks
	// and no header change (OpenDMARC's IgnoreMailFrom): "example.com" for
	// that domain, ".example.com" for it and every domain below it.
	IgnoreMailFrom []string `toml:"ignore_mail_from"`
}

// SPF configures the RFC 7208 checks.
type SPF struct {
	Enabled           bool     `toml:"enabled"`
	CheckHELO         bool     `toml:"check_helo"`
	Timeout           Duration `toml:"timeout"`
	ReceivedSPFHeader bool     `toml:"received_spf_header"`
	FailAction        string   `toml:"fail_action"`
	PermerrorAction   string   `toml:"permerror_action"`
}

// DKIM configures verification (RFC 6376, RFC 8301, RFC 8463).
type DKIM struct {
	Enabled       bool     `toml:"enabled"`
	MinRSABits    int      `toml:"min_rsa_bits"`
	MaxSignatures int      `toml:"max_signatures"`
	ClockDrift    Duration `toml:"clock_drift"`
	BodyLength    string   `toml:"body_length"` // l=: whole-body, refuse or accept
}

// DMARC configures evaluation (RFC 9989) and the disposition.
type DMARC struct {
	Enabled           bool             `toml:"enabled"`
	Mode              string           `toml:"mode"`
	MultiFrom         engine.MultiFrom `toml:"multi_from"`
	MaxAuthorDomains  int              `toml:"max_author_domains"`
	UnusableFrom      string           `toml:"unusable_from"`
	RejectText        string           `toml:"reject_text"`
	Quarantine        string           `toml:"quarantine"`
	Monitor           bool             `toml:"monitor"`
	TempError         string           `toml:"temperror"`
	IgnoreFromDomains []string         `toml:"ignore_from_domains"`
	TrustedForwarders []string         `toml:"trusted_forwarders"`
}

// Duration is a time.Duration written as a Go duration string ("2s", "5m").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"2s\" or \"5m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the embedded defaults: what `authmilter serve` runs on
// without -config. config.example.toml documents the same values.
func Default() *Config {
	return &Config{
		Milter: Milter{
			Listen:          []string{"inet:127.0.0.1:8893"},
			SocketMode:      "0660",
			IdleTimeout:     Duration{10 * time.Minute},
			ShutdownTimeout: Duration{30 * time.Second},
			MaxHeaderBytes:  1 << 20,
			MaxHeaders:      1000,
			MaxSessions:     500,
		},
		DNS: DNS{Servers: []string{}, Timeout: Duration{2 * time.Second}, Attempts: 2, CacheSize: 10000, CacheBytes: 64 << 20,
			MessageBudget: Duration{30 * time.Second}},
		Log:    Log{Level: "info", Format: "text"},
		Policy: Policy{IgnoreHosts: []string{"127.0.0.0/8", "::1"}, SkipAuthenticated: true, IgnoreMailFrom: []string{}},
		SPF: SPF{Enabled: true, CheckHELO: true, Timeout: Duration{20 * time.Second},
			FailAction: "none", PermerrorAction: "none"},
		DKIM: DKIM{Enabled: true, MinRSABits: 1024, MaxSignatures: 5, ClockDrift: Duration{300 * time.Second}, BodyLength: "whole-body"},
		DMARC: DMARC{
			Enabled:           true,
			Mode:              "rfc9989",
			MultiFrom:         engine.EvaluateEach,
			MaxAuthorDomains:  5,
			UnusableFrom:      "reject",
			RejectText:        "Email rejected per DMARC policy for {domain}",
			Quarantine:        "hold",
			TempError:         "tempfail",
			IgnoreFromDomains: []string{},
			TrustedForwarders: []string{},
		},
		Store:   defaultStore(),
		Report:  defaultReport(),
		Metrics: defaultMetrics(),
		ARC:     defaultARC(),
		Signing: defaultSigning(),

		FailureReports:  defaultFailureReports(),
		IncomingReports: defaultIncomingReports(),
		Dashboard:       defaultDashboard(),
	}
}

// Error is one problem in a configuration file.
type Error struct {
	Key  string // dotted key, e.g. "dns.timeout"; empty for syntax errors
	Line int    // 1-based line in the file, 0 when unknown
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file. Load returns it so that a
// postmaster fixes them all in one pass.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the file at path on top of the defaults.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return c, nil
}

// Parse decodes TOML text on top of the defaults and validates the result.
// The error, if any, is of type Errors and lists every problem found:
// syntax, unknown options, wrong types, then impossible values.
func Parse(data []byte) (*Config, error) {
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, decodeErrors(err) // syntax: nothing more can be read
	}
	lines := keyLines(data)
	es := unknownKeys(raw, "", knownKeys(), lines)
	c, typeErrs, complete := decodeAll(data, raw, lines)
	es = append(es, typeErrs...)
	// The values that did decode are checked too: every problem of the
	// file is reported in one pass (issue 19). Not when decoding stopped
	// inside a list of tables: its half-read entries would only add noise.
	if complete {
		for _, e := range c.Validate() {
			e.Line = lines[e.Key]
			es = append(es, e)
		}
	}
	if len(es) > 0 {
		slices.SortStableFunc(es, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
		return nil, es
	}
	c.normalize()
	return c, nil
}

// decodeAll decodes the file into the defaults. The decoder stops at the
// first value of the wrong type, so each such option is reported and left
// out, and the rest decoded again, until everything that can be read is.
func decodeAll(data []byte, raw map[string]any, lines map[string]int) (c *Config, es Errors, complete bool) {
	c = Default()
	err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err == nil {
		return c, nil, true
	}
	for range 200 { // at most one round per option
		var de *toml.DecodeError
		if !errors.As(err, &de) || len(de.Key()) == 0 || !deleteKey(raw, de.Key()) {
			return c, append(es, decodeErrors(err)...), false
		}
		key := strings.Join(de.Key(), ".")
		es = append(es, Error{Key: key, Line: lines[key], Msg: typeMessage(de.Error())})
		doc, merr := toml.Marshal(raw)
		if merr != nil {
			break
		}
		c = Default()
		if err = toml.NewDecoder(bytes.NewReader(doc)).Decode(c); err == nil {
			return c, es, true
		}
	}
	return c, es, false
}

// deleteKey removes a dotted key from a decoded document.
func deleteKey(m map[string]any, key []string) bool {
	for i, k := range key {
		if i == len(key)-1 {
			_, ok := m[k]
			delete(m, k)
			return ok
		}
		sub, ok := m[k].(map[string]any)
		if !ok {
			return false
		}
		m = sub
	}
	return false
}

var typeError = regexp.MustCompile(`cannot decode TOML (\w+) into (?:struct field \S+ of type|a Go value of type) (\S+)`)

// typeMessage says in a postmaster's words what a value of the wrong type
// should have been, without the decoder's Go type names ("cannot decode
// TOML string into struct field config.Milter.Listen of type []string").
func typeMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "toml: ")
	want := map[string]string{
		"string": "text in quotes", "[]string": `a list in brackets, e.g. ["a", "b"]`, "int": "a whole number without quotes",
		"bool": "true or false, without quotes", "config.Duration": `a duration in quotes, e.g. "2s" or "5m"`,
		"uint": "a whole number without quotes", "int64": "a whole number without quotes",
	}
	found := map[string]string{"string": "text", "integer": "a number", "boolean": "true/false", "array": "a list",
		"table": "a table", "float": "a number with a fraction", "datetime": "a date", "inline": "a table"}
	if m := typeError.FindStringSubmatch(msg); m != nil {
		w, ok := want[m[2]]
		if !ok {
			if strings.HasPrefix(m[2], "[]") {
				w = "a list"
			} else {
				w = "another kind of value"
			}
		}
		f, ok := found[m[1]]
		if !ok {
			f = m[1]
		}
		return fmt.Sprintf("want %s, found %s", w, f)
	}
	// Anything else: keep the words, drop Go's names for our types.
	return regexp.MustCompile(`\bconfig\.[A-Za-z.]+`).ReplaceAllString(msg, "option")
}

// normalize turns the domains of a validated configuration into the ASCII
// form (identity.ASCII: lowercase, A-labels, no trailing dot) in which
// they are compared, so that no user of the configuration has to.
func (c *Config) normalize() {
	for i, d := range c.DMARC.IgnoreFromDomains {
		c.DMARC.IgnoreFromDomains[i], _ = identity.ASCII(d)
	}
	if a, err := identity.ASCII(c.Report.Receiver); err == nil {
		c.Report.Receiver = a
	}
	c.normalizeARC()
	c.normalizeFailureReports()
}

// knownKeys lists every dotted option name, from the struct tags.
func knownKeys() map[string]bool {
	m := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := f.Tag.Get("toml")
			if prefix != "" {
				name = prefix + "." + name
			}
			m[name] = true
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				walk(f.Type, name)
			}
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct { // [[arrays.of.tables]]
				walk(f.Type.Elem(), name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return m
}

func unknownKeys(raw map[string]any, prefix string, known map[string]bool, lines map[string]int) Errors {
	var es Errors
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return lines[prefix+keys[i]] < lines[prefix+keys[j]] })
	for _, k := range keys {
		name := prefix + k
		if !known[name] {
			line := lines[name]
			if line == 0 {
				line = lines["["+name+"]"]
			}
			key := name
			if k == "" || strings.ContainsAny(k, ". \t\"") {
				key = prefix + strconv.Quote(k) // TOML's quoted-key form
			}
			es = append(es, Error{Key: key, Line: line, Msg: "unknown option"})
			continue
		}
		if sub, ok := raw[k].(map[string]any); ok {
			es = append(es, unknownKeys(sub, name+".", known, lines)...)
		}
		if arr, ok := raw[k].([]any); ok { // [[arrays.of.tables]]
			for _, e := range arr {
				if sub, ok := e.(map[string]any); ok {
					es = append(es, unknownKeys(sub, name+".", known, lines)...)
				}
			}
		}
	}
	return es
}

func decodeErrors(err error) Errors {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var es Errors
		for i := range strict.Errors {
			de := &strict.Errors[i]
			line, _ := de.Position()
			es = append(es, Error{Key: strings.Join(de.Key(), "."), Line: line, Msg: "unknown option"})
		}
		return es
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return Errors{{Key: strings.Join(de.Key(), "."), Line: line, Msg: typeMessage(de.Error())}}
	}
	return Errors{{Msg: err.Error()}}
}

// keyLines maps each dotted key to the line it is set on, so that
// validation errors can point into the file. It reads only the simple
// "[table]" and "key =" forms our config uses.
func keyLines(data []byte) map[string]int {
	m := map[string]int{}
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
			table = strings.Trim(s, "[] ")
			if _, ok := m["["+table+"]"]; !ok {
				m["["+table+"]"] = i + 1
			}
		case strings.Contains(s, "=") && !strings.HasPrefix(s, "#"):
			k := strings.TrimSpace(s[:strings.Index(s, "=")])
			if table != "" {
				k = table + "." + k
			}
			if _, ok := m[k]; !ok {
				m[k] = i + 1
			}
		}
	}
	return m
}

// Validate checks values that TOML types cannot: ranges, enumerations,
// addresses. It returns every problem found.
func (c *Config) Validate() Errors {
	var es Errors
	bad := func(key, format string, args ...any) {
		es = append(es, Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}

	for _, r := range c.AuthservID { // written into every header we add
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`;()"\,<>[]:=@/?`, r) {
			bad("authserv_id", "%q must be a plain host name (printable ASCII, no spaces or specials)", c.AuthservID)
			break
		}
	}
	if g := c.Milter.SocketGroup; g != "" && lookupGroup(g) != nil {
		// The daemon would fail at start (chgrp), after check-config said ok.
		bad("milter.socket_group", "there is no group %q on this machine", g)
	}
	if len(c.Milter.Listen) == 0 {
		bad("milter.listen", "at least one socket is needed")
	}
	for _, l := range c.Milter.Listen {
		if _, err := ParseSocket(l); err != nil {
			bad("milter.listen", "%v", err)
		}
	}
	if m, err := strconv.ParseUint(c.Milter.SocketMode, 8, 32); err != nil || m > 0o777 {
		bad("milter.socket_mode", "%q is not an octal file mode like \"0660\"", c.Milter.SocketMode)
	}
	if c.Milter.IdleTimeout.Duration < time.Second {
		bad("milter.idle_timeout", "must be at least 1s")
	}
	if c.Milter.ShutdownTimeout.Duration < 0 {
		bad("milter.shutdown_timeout", "must not be negative")
	}
	if c.Milter.MaxHeaderBytes < 1024 {
		bad("milter.max_header_bytes", "must be at least 1024")
	}
	if c.Milter.MaxSessions < 1 {
		bad("milter.max_sessions", "must be at least 1")
	}
	if c.Milter.MaxHeaders < 10 {
		bad("milter.max_headers", "must be at least 10")
	}
	for _, s := range c.DNS.Servers {
		if err := checkServer(s); err != nil {
			bad("dns.servers", "%q %v", s, err)
		}
	}
	// A timeout no answer can meet turns every lookup into a temperror,
	// and then all mail is accepted unchecked (or deferred): refused here,
	// not found at run time (issue 19).
	if c.DNS.Timeout.Duration < 10*time.Millisecond || c.DNS.Timeout.Duration > time.Minute {
		bad("dns.timeout", "must be between 10ms and 1m (one query attempt)")
	}
	if c.DNS.MessageBudget.Duration < time.Second {
		bad("dns.message_budget", "must be at least 1s")
	}
	if c.DNS.CacheBytes < 1<<20 {
		bad("dns.cache_bytes", "must be at least 1048576 (1 MiB)")
	}
	if c.DNS.Attempts < 1 || c.DNS.Attempts > 10 {
		bad("dns.attempts", "must be between 1 and 10")
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	for _, h := range c.Policy.IgnoreHosts {
		if _, err := ParseHostMatcher(h); err != nil {
			bad("policy.ignore_hosts", "%v", err)
		}
	}
	for _, d := range c.Policy.IgnoreMailFrom {
		if _, err := identity.ASCII(strings.TrimPrefix(d, ".")); err != nil {
			bad("policy.ignore_mail_from", "%q is not a domain name (or .domain for it and its subdomains)", d)
		}
	}
	if c.SPF.Timeout.Duration < 10*time.Millisecond {
		bad("spf.timeout", "must be at least 10ms (an SPF check needs DNS answers)")
	}
	oneOf("spf.fail_action", c.SPF.FailAction, "none", "reject")
	oneOf("spf.permerror_action", c.SPF.PermerrorAction, "none", "reject")
	if c.DKIM.MinRSABits < 512 || c.DKIM.MinRSABits > 8192 {
		bad("dkim.min_rsa_bits", "must be between 512 and 8192")
	}
	if c.DKIM.MaxSignatures < 1 || c.DKIM.MaxSignatures > 100 {
		bad("dkim.max_signatures", "must be between 1 and 100")
	}
	if c.DKIM.ClockDrift.Duration < 0 {
		bad("dkim.clock_drift", "must not be negative")
	}
	oneOf("dkim.body_length", c.DKIM.BodyLength, "whole-body", "refuse", "accept")
	oneOf("dmarc.mode", c.DMARC.Mode, "rfc9989", "rfc7489")
	oneOf("dmarc.multi_from", string(c.DMARC.MultiFrom), string(engine.EvaluateEach), string(engine.RejectMulti), string(engine.SkipMulti))
	if c.DMARC.MaxAuthorDomains < 1 || c.DMARC.MaxAuthorDomains > 50 {
		bad("dmarc.max_author_domains", "must be between 1 and 50")
	}
	oneOf("dmarc.unusable_from", c.DMARC.UnusableFrom, "reject", "accept")
	if strings.TrimSpace(c.DMARC.RejectText) == "" || strings.ContainsAny(c.DMARC.RejectText, "\r\n") {
		bad("dmarc.reject_text", "must be one non-empty line")
	}
	oneOf("dmarc.quarantine", c.DMARC.Quarantine, "hold", "header")
	oneOf("dmarc.temperror", c.DMARC.TempError, "accept", "tempfail")
	for _, d := range c.DMARC.IgnoreFromDomains {
		if _, err := identity.ASCII(d); err != nil {
			bad("dmarc.ignore_from_domains", "%q is not a domain name", d)
		}
	}
	for _, h := range c.DMARC.TrustedForwarders {
		if _, err := ParseHostMatcher(h); err != nil {
			bad("dmarc.trusted_forwarders", "%v", err)
		}
	}
	es = append(es, c.validateStore()...)
	es = append(es, c.validateReport()...)
	es = append(es, c.validateFailureReports()...)
	es = append(es, c.validateMetrics()...)
	es = append(es, c.validateARC()...)
	es = append(es, validateSigning(c.Signing, c.Milter.Listen)...)
	es = append(es, c.validateIncomingReports()...)
	es = append(es, c.validateDashboard()...)
	return es
}

// lookupGroup reports whether a group exists; a variable for tests.
var lookupGroup = func(name string) error {
	_, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			_, err = user.LookupGroupId(name)
		}
	}
	return err
}

// checkServer checks a DNS server as the resolver dials it: an IP address,
// or ADDRESS:PORT with a port of 1-65535 ("[v6]:PORT" for IPv6). A server
// that cannot be dialled would turn every lookup into a temperror, and all
// mail would be accepted unchecked, so it is refused here (issue 19).
func checkServer(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("is not an IP address or ADDRESS:PORT")
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("names %q, which is not an IP address (the resolver cannot look up its own servers)", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("has port %q: a port is a number from 1 to 65535", port)
	}
	return nil
}
