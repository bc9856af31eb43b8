package config

import (
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Store configures the per-message records (issue 6; internal/store).
type Store struct {
	// Backend is "sqlite" (one MX), "postgres" (several MX hosts share one
	// database) or "off" (no records, no aggregate reports).
	Backend string `toml:"backend"`
	// Dir holds the SQLite database (records.db) and the spool files.
	// Empty: $STATE_DIRECTORY (systemd's StateDirectory=), else
	// /var/lib/authmilter for root, else $XDG_STATE_HOME/authmilter or
	// ~/.local/state/authmilter.
	Dir         string `toml:"dir"`
	PostgresDSN string `toml:"postgres_dsn"`
	// Commit is "sync" (the end-of-message reply waits for the commit) or
	// "async".
	Commit            string   `toml:"commit"`
	WriteTimeout      Duration `toml:"write_timeout"`
	RetentionDays     int      `toml:"retention_days"`
	ExcludeRecipients []string `toml:"exclude_recipients"`
}

func defaultStore() Store {
	return Store{
		Backend:           "sqlite",
		Commit:            "sync",
		WriteTimeout:      Duration{2 * time.Second},
		RetentionDays:     30,
		ExcludeRecipients: []string{},
	}
}

func (c *Config) validateStore() Errors {
	var es Errors
	bad := func(key, msg string) { es = append(es, Error{Key: key, Msg: msg}) }
	s := c.Store
	switch s.Backend {
	case "sqlite", "off":
	case "postgres":
		if strings.TrimSpace(s.PostgresDSN) == "" {
			bad("store.postgres_dsn", `is required with backend = "postgres"`)
		} else if _, err := pgconn.ParseConfig(s.PostgresDSN); err != nil {
			// Not the value, nor the parser's text (which quotes it): it
			// may hold a password.
			bad("store.postgres_dsn", `cannot be read as a PostgreSQL URL ("postgres://user:password@host:5432/db") or key=value string; the value is not shown, it may hold a password`)
		}
	default:
		bad("store.backend", `"`+s.Backend+`" is not one of sqlite, postgres, off`)
	}
	if s.Dir != "" && !strings.HasPrefix(s.Dir, "/") {
		bad("store.dir", "must be an absolute path (or empty for the default)")
	}
	if s.Commit != "sync" && s.Commit != "async" {
		bad("store.commit", `"`+s.Commit+`" is not one of sync, async`)
	}
	if s.WriteTimeout.Duration < 10*time.Millisecond || s.WriteTimeout.Duration > time.Minute {
		bad("store.write_timeout", "must be between 10ms and 1m")
	}
	if s.RetentionDays < 0 {
		bad("store.retention_days", "must not be negative (0 keeps records forever)")
	}
	for _, r := range s.ExcludeRecipients {
		at := strings.LastIndexByte(r, '@')
		if at < 0 || at == len(r)-1 || strings.ContainsAny(r, " \t<>") {
			bad("store.exclude_recipients", `"`+r+`" is neither an address nor "@domain"`)
		}
	}
	return es
}
