package config

import (
	"time"

	"github.com/authmilter/authmilter/pkg/identity"
)

// FailureReports configures DMARC failure reports (RFC 9991, format RFC
// 6591; internal/failrep, internal/reportmail). Off by default: failure
// reports carry header fields of real messages to a third party.
type FailureReports struct {
	Enabled bool `toml:"enabled"`
	// PolicyDomains lists the policy domains (and their subdomains) that may
	// get failure reports at all; "*" allows every domain. Required when
	// enabled: most sites allow only their own domains and partners'.
	PolicyDomains []string `toml:"policy_domains"`
	// Redact: "local-part" (default) replaces the local part of every
	// address in the reported header fields and in Original-Mail-From by
	// "redacted" (RFC 6590 style), "none" keeps them.
	Redact string `toml:"redact"`
	// Interval: at most one report per (policy domain, source IP, failure
	// kind) in this interval.
	Interval Duration `toml:"interval"`
	// MaxPerHour caps the reports queued per hour, over every domain (and,
	// on one PostgreSQL store, over every MX host).
	MaxPerHour int `toml:"max_per_hour"`
	// MaxPerDestinationPerDay caps the reports sent to one ruf address per day.
	MaxPerDestinationPerDay int `toml:"max_per_destination_per_day"`
	// SendInterval: how often the sender looks for queued reports.
	SendInterval Duration `toml:"send_interval"`
	// GiveUpAfter: a report not accepted by the relay this long after it was
	// queued is dropped (a failure report is only useful while it is fresh).
	GiveUpAfter Duration `toml:"give_up_after"`
}

func defaultFailureReports() FailureReports {
	return FailureReports{
		PolicyDomains:           []string{},
		Redact:                  "local-part",
		Interval:                Duration{time.Hour},
		MaxPerHour:              100,
		MaxPerDestinationPerDay: 50,
		SendInterval:            Duration{time.Minute},
		GiveUpAfter:             Duration{24 * time.Hour},
	}
}

func (c *Config) validateFailureReports() Errors {
	var es Errors
	bad := func(key, msg string) { es = append(es, Error{Key: key, Msg: msg}) }
	f := c.FailureReports
	if f.Redact != "local-part" && f.Redact != "none" {
		bad("failure_reports.redact", `"`+f.Redact+`" is not one of local-part, none`)
	}
	if f.Interval.Duration < time.Minute {
		bad("failure_reports.interval", "must be at least 1m")
	}
	if f.MaxPerHour < 1 {
		bad("failure_reports.max_per_hour", "must be at least 1")
	}
	if f.MaxPerDestinationPerDay < 1 {
		bad("failure_reports.max_per_destination_per_day", "must be at least 1")
	}
	if f.SendInterval.Duration < time.Second {
		bad("failure_reports.send_interval", "must be at least 1s")
	}
	if f.GiveUpAfter.Duration < time.Minute {
		bad("failure_reports.give_up_after", "must be at least 1m")
	}
	for _, d := range f.PolicyDomains {
		if _, err := identity.ASCII(d); d != "*" && err != nil {
			bad("failure_reports.policy_domains", `"`+d+`" is not a domain name (or "*" for every domain)`)
		}
	}
	if !f.Enabled {
		return es
	}
	if len(f.PolicyDomains) == 0 {
		bad("failure_reports.policy_domains", `is empty: list the policy domains failure reports may go to, or "*" for every domain`)
	}
	if c.Report.From == "" {
		bad("failure_reports.enabled", "needs report.from, the reporter address (failure reports use report.from and report.smtp)")
	}
	if c.Store.Backend == "off" {
		bad("failure_reports.enabled", `needs the store (store.backend is "off"): the queue and the rate limits live there`)
	}
	return es
}

// normalizeFailureReports puts the policy domains in the form they are
// compared in (identity.ASCII); "*" stays.
func (c *Config) normalizeFailureReports() {
	for i, d := range c.FailureReports.PolicyDomains {
		if a, err := identity.ASCII(d); err == nil {
			c.FailureReports.PolicyDomains[i] = a
		}
	}
}
