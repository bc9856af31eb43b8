package config

import (
	"net"
	"net/mail"
	"os"
	"strings"
	"time"
)

// Report configures aggregate report building and delivery (issue 7;
// pkg/report, internal/reportmail).
type Report struct {
	// Enabled runs the report scheduler inside serve. `authmilter report`
	// works either way.
	Enabled bool `toml:"enabled"`
	// Format is "rfc9990" (default) or "rfc7489".
	Format string `toml:"format"`
	// Period is the reporting period, 1h to 24h, dividing a UTC day.
	Period Duration `toml:"period"`
	// Delay is how long after a period's end its reports wait, so that
	// messages in flight (and the spool) reach the store first.
	Delay Duration `toml:"delay"`
	// RetryInterval: how often the scheduler tries again while reports are
	// postponed (DNS temperror, relay unavailable).
	RetryInterval Duration `toml:"retry_interval"`
	// GiveUpAfter: a report still postponed this long after its period
	// ended goes to the destinations that could be verified, or is dropped.
	GiveUpAfter Duration `toml:"give_up_after"`

	// Receiver is our reporting domain: Submitter in the Subject and the
	// first part of the attachment name. Empty: the domain of From.
	Receiver string `toml:"receiver"`
	// OrgName is report_metadata/org_name. Empty: Receiver.
	OrgName string `toml:"org_name"`
	// From is the reporter address: header From, envelope sender and
	// report_metadata/email. Required when reports are sent.
	From             string `toml:"from"`
	ExtraContactInfo string `toml:"extra_contact_info"`
	// EnvelopeTo adds identifiers/envelope_to (messages with one recipient
	// domain only).
	EnvelopeTo bool `toml:"envelope_to"`
	// Suppress lists policy domains ("example.com" also covers its
	// subdomains) and rua addresses that never get reports.
	Suppress []string `toml:"suppress"`

	SMTP ReportSMTP `toml:"smtp"`
}

// ReportSMTP is the relay reports are handed to.
type ReportSMTP struct {
	Host string `toml:"host"`
	Port int    `toml:"port"`
	// StartTLS: "none", "opportunistic" (when offered, certificate not
	// checked, as MTAs do) or "required" (certificate verified).
	StartTLS string `toml:"starttls"`
	// CAFile: PEM roots for "required"; empty: the system roots.
	CAFile   string `toml:"ca_file"`
	Username string `toml:"username"` // AUTH PLAIN when set (after STARTTLS, or on loopback)
	Password string `toml:"password"`
	// HELO name; empty: the host name.
	HELO    string   `toml:"helo"`
	Timeout Duration `toml:"timeout"`
}

func defaultReport() Report {
	return Report{
		Format:        "rfc9990",
		Period:        Duration{24 * time.Hour},
		Delay:         Duration{15 * time.Minute},
		RetryInterval: Duration{30 * time.Minute},
		GiveUpAfter:   Duration{72 * time.Hour},
		Suppress:      []string{},
		SMTP: ReportSMTP{
			Host:     "127.0.0.1",
			Port:     25,
			StartTLS: "opportunistic",
			Timeout:  Duration{2 * time.Minute},
		},
	}
}

func (c *Config) validateReport() Errors {
	var es Errors
	bad := func(key, msg string) { es = append(es, Error{Key: key, Msg: msg}) }
	r := c.Report
	if r.Format != "rfc9990" && r.Format != "rfc7489" {
		bad("report.format", `"`+r.Format+`" is not one of rfc9990, rfc7489`)
	}
	if p := r.Period.Duration; p < time.Hour || p > 24*time.Hour || (24*time.Hour)%p != 0 {
		bad("report.period", "must be between 1h and 24h and divide 24h (1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h)")
	}
	if r.Delay.Duration < 0 || r.Delay.Duration > 24*time.Hour {
		bad("report.delay", "must be between 0 and 24h")
	}
	if r.RetryInterval.Duration < time.Minute {
		bad("report.retry_interval", "must be at least 1m")
	}
	if r.GiveUpAfter.Duration < time.Hour {
		bad("report.give_up_after", "must be at least 1h")
	}
	if r.From != "" {
		if a, err := mail.ParseAddress(r.From); err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
			bad("report.from", `"`+r.From+`" is not a plain mail address`)
		}
	} else if r.Enabled {
		bad("report.enabled", "needs report.from, the reporter address")
	}
	if strings.ContainsAny(r.Receiver, " \t@;!") {
		bad("report.receiver", `"`+r.Receiver+`" is not a domain name`)
	}
	if r.Enabled && c.Store.Backend == "off" {
		bad("report.enabled", `needs the store (store.backend is "off")`)
	}
	for _, s := range r.Suppress {
		if s == "" || strings.ContainsAny(s, " \t<>") || strings.HasSuffix(s, "@") {
			bad("report.suppress", `"`+s+`" is neither a domain nor an address`)
		}
	}
	m := r.SMTP
	if m.Host == "" {
		bad("report.smtp.host", "must not be empty")
	} else if strings.ContainsAny(m.Host, " \t/@") || (strings.Contains(m.Host, ":") && net.ParseIP(m.Host) == nil) {
		bad("report.smtp.host", `"`+m.Host+`" is not a host name or IP address (the port goes in report.smtp.port)`)
	}
	if m.Port < 1 || m.Port > 65535 {
		bad("report.smtp.port", "must be between 1 and 65535")
	}
	switch m.StartTLS {
	case "none", "opportunistic", "required":
	default:
		bad("report.smtp.starttls", `"`+m.StartTLS+`" is not one of none, opportunistic, required`)
	}
	if m.CAFile != "" {
		if _, err := os.Stat(m.CAFile); err != nil {
			bad("report.smtp.ca_file", err.Error())
		}
	}
	if m.Password != "" && m.Username == "" {
		bad("report.smtp.password", "is set without report.smtp.username")
	}
	if m.Timeout.Duration < time.Second {
		bad("report.smtp.timeout", "must be at least 1s")
	}
	return es
}
