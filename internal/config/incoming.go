package config

import (
	"net"
	"strconv"
	"strings"

	"github.com/authmilter/authmilter/pkg/identity"
)

// IncomingReports configures the reading of the aggregate reports other
// receivers send about our domains (issue 22; internal/incoming), by the
// milter hook and by `authmilter reports import`.
type IncomingReports struct {
	// Recipients are the site's rua mailboxes ("dmarc@example.org"): mail
	// to one of them is read as a report mail at end of message. Empty:
	// no milter hook (import still works).
	Recipients []string `toml:"recipients"`
	// Discard: a report mail whose reports were all stored (or were
	// duplicates) is discarded instead of delivered.
	Discard bool `toml:"discard"`
	// Domains are the site's own domains: only reports whose policy domain
	// is one of them or under one are kept. Empty: the domains the site
	// signs for (signing.keys domains and signing.rules patterns).
	Domains []string `toml:"domains"`
	// MaxPerSenderPerDay caps the reports stored from one sender in one
	// UTC day (0: no cap).
	MaxPerSenderPerDay int `toml:"max_per_sender_per_day"`
	// MaxMailBytes caps a report mail or file before decompression,
	// MaxXMLBytes what it decompresses to, MaxRows the records of one
	// report.
	MaxMailBytes int64 `toml:"max_mail_bytes"`
	MaxXMLBytes  int64 `toml:"max_xml_bytes"`
	MaxRows      int   `toml:"max_rows"`
}

func defaultIncomingReports() IncomingReports {
	return IncomingReports{Recipients: []string{}, Domains: []string{}, MaxPerSenderPerDay: 200,
		MaxMailBytes: 20 << 20, MaxXMLBytes: 64 << 20, MaxRows: 100_000}
}

// OwnDomains returns incoming_reports.domains, or when it is empty the
// domains the site signs for, lower case.
func (c *Config) OwnDomains() []string {
	var out []string
	add := func(d string) {
		d = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(d), "*."), ".")
		d, err := identity.ASCII(d)
		if err != nil { // "%", "*", "": not a domain of ours
			return
		}
		for _, x := range out {
			if x == d {
				return
			}
		}
		out = append(out, d)
	}
	if len(c.IncomingReports.Domains) > 0 {
		for _, d := range c.IncomingReports.Domains {
			add(d)
		}
		return out
	}
	for _, k := range c.Signing.Keys {
		add(k.Domain)
	}
	for _, r := range c.Signing.Rules {
		add(r.Pattern)
	}
	return out
}

func (c *Config) validateIncomingReports() Errors {
	var es Errors
	bad := func(key, msg string) { es = append(es, Error{Key: key, Msg: msg}) }
	ir := c.IncomingReports
	for _, r := range ir.Recipients {
		if at := strings.LastIndexByte(r, '@'); at <= 0 || at == len(r)-1 || strings.ContainsAny(r, " <>") {
			bad("incoming_reports.recipients", strconv.Quote(r)+" is not a mailbox like dmarc@example.org")
		}
	}
	if ir.MaxPerSenderPerDay < 0 {
		bad("incoming_reports.max_per_sender_per_day", "must not be negative (0: no cap)")
	}
	if ir.MaxMailBytes < 1024 || ir.MaxXMLBytes < 1024 {
		bad("incoming_reports.max_mail_bytes", "max_mail_bytes and max_xml_bytes must be at least 1024")
	}
	if ir.MaxRows < 1 {
		bad("incoming_reports.max_rows", "must be at least 1")
	}
	if len(ir.Recipients) > 0 && c.Store.Backend == "off" {
		bad("incoming_reports.recipients", `reports need a store: store.backend is "off"`)
	}
	return es
}

// Dashboard configures the web view of the incoming reports and of this
// MX's records (issue 22; internal/dashboard).
type Dashboard struct {
	// Listen is "HOST:PORT"; empty (the default) disables the dashboard.
	// A missing host means loopback (":9894" is 127.0.0.1:9894); every
	// address only when said ("0.0.0.0:9894").
	Listen string `toml:"listen"`
	// Token: requests must carry "Authorization: Bearer TOKEN". Or User
	// and Password: HTTP basic authentication. One of the two is required.
	Token    string `toml:"token"`
	User     string `toml:"user"`
	Password string `toml:"password"`
	// ResolveNames shows the reverse DNS name of each source address.
	ResolveNames bool `toml:"resolve_names"`
}

// DefaultDashboardListen is the address suggested in the example file.
const DefaultDashboardListen = "127.0.0.1:9894"

func defaultDashboard() Dashboard { return Dashboard{ResolveNames: true} }

func (c *Config) validateDashboard() Errors {
	d := c.Dashboard
	if d.Listen == "" {
		return nil
	}
	var es Errors
	host, port, err := net.SplitHostPort(d.Listen)
	if err != nil {
		return Errors{{Key: "dashboard.listen", Msg: strconv.Quote(d.Listen) + ` is not HOST:PORT (e.g. "127.0.0.1:9894"; "" disables)`}}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		es = append(es, Error{Key: "dashboard.listen", Msg: strconv.Quote(port) + " is not a port number (1-65535)"})
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		es = append(es, Error{Key: "dashboard.listen", Msg: strconv.Quote(host) + " is not an IP address"})
	}
	if d.Token == "" && (d.User == "" || d.Password == "") {
		es = append(es, Error{Key: "dashboard.token", Msg: "the dashboard needs a token, or user and password"})
	}
	if d.Token != "" && len(d.Token) < 16 {
		es = append(es, Error{Key: "dashboard.token", Msg: "must be at least 16 characters"})
	}
	if c.Store.Backend == "off" {
		es = append(es, Error{Key: "dashboard.listen", Msg: `the dashboard reads the store: store.backend is "off"`})
	}
	return es
}
