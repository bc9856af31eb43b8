package config

import (
	"strings"
	"testing"
)

func TestMetricsListen(t *testing.T) {
	tests := []struct {
		toml string
		want string // "" for valid, else a part of the error
	}{
		{``, ""},
		{"[metrics]\nlisten = \"\"", ""},
		{"[metrics]\nlisten = \"127.0.0.1:9893\"", ""},
		{"[metrics]\nlisten = \"[::1]:9893\"", ""},
		{"[metrics]\nlisten = \":9893\"", ""},
		{"[metrics]\nlisten = \"localhost:9893\"", ""},
		{"[metrics]\nlisten = \"127.0.0.1\"", "line 2: metrics.listen: \"127.0.0.1\" is not HOST:PORT"},
		{"[metrics]\nlisten = \"127.0.0.1:http\"", "not a port number"},
		{"[metrics]\nlisten = \"127.0.0.1:0\"", "not a port number"},
		{"[metrics]\nlisten = \"127.0.0.1:70000\"", "not a port number"},
		{"[metrics]\nlisten = \"metrics.example:9893\"", "is not an IP address"},
		{"[metrics]\nport = 9893", "metrics.port: unknown option"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.toml))
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.toml, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.toml, err, tt.want)
		}
	}
	if got := Default().Metrics.Listen; got != "127.0.0.1:9893" {
		t.Errorf("default metrics.listen %q", got)
	}
}
