package config

import (
	"errors"
	"strings"
	"testing"
)

func TestStoreOptions(t *testing.T) {
	tests := []struct {
		name, toml string
		key        string // "" when valid
		msg        string
	}{
		{"postgres", "[store]\nbackend = \"postgres\"\npostgres_dsn = \"postgres://am@db/am\"\n", "", ""},
		{"off", "[store]\nbackend = \"off\"\n", "", ""},
		{"async", "[store]\ncommit = \"async\"\ndir = \"/srv/am\"\nretention_days = 0\n", "", ""},
		{"exclusions", "[store]\nexclude_recipients = [\"rua@example.net\", \"@reports.example.net\"]\n", "", ""},
		{"unknown backend", "[store]\nbackend = \"mysql\"\n", "store.backend", "not one of"},
		{"postgres without dsn", "[store]\nbackend = \"postgres\"\n", "store.postgres_dsn", "required"},
		{"relative dir", "[store]\ndir = \"state\"\n", "store.dir", "absolute"},
		{"bad commit", "[store]\ncommit = \"later\"\n", "store.commit", "not one of"},
		{"zero timeout", "[store]\nwrite_timeout = \"0s\"\n", "store.write_timeout", "between"},
		{"negative retention", "[store]\nretention_days = -1\n", "store.retention_days", "negative"},
		{"exclusion without @", "[store]\nexclude_recipients = [\"postmaster\"]\n", "store.exclude_recipients", "neither"},
		{"exclusion ends in @", "[store]\nexclude_recipients = [\"rua@\"]\n", "store.exclude_recipients", "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml))
			if tt.key == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want Errors, got %v", err)
			}
			inFile := strings.Contains(tt.toml, strings.TrimPrefix(tt.key, "store.")+" =")
			if es[0].Key != tt.key || !strings.Contains(es[0].Msg, tt.msg) || (es[0].Line == 0) == inFile {
				t.Errorf("got %v, want key %s msg ~%q with a line", es[0], tt.key, tt.msg)
			}
		})
	}
}
