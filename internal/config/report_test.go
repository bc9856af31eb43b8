package config

import (
	"errors"
	"strings"
	"testing"
)

func TestReportSection(t *testing.T) {
	tests := []struct {
		name, toml string
		key        string // "" when the file is valid
		msg        string
	}{
		{"valid", "[report]\nenabled = true\nfrom = \"dmarc@receiver.example\"\nperiod = \"6h\"\n[report.smtp]\nport = 587\nstarttls = \"required\"\nusername = \"u\"\npassword = \"p\"\n", "", ""},
		{"period not dividing a day", "[report]\nperiod = \"5h\"\n", "report.period", "divide 24h"},
		{"period too short", "[report]\nperiod = \"30m\"\n", "report.period", "between 1h and 24h"},
		{"format", "[report]\nformat = \"xml\"\n", "report.format", "not one of"},
		{"enabled without from", "[report]\nenabled = true\n", "report.enabled", "needs report.from"},
		{"from with a name", "[report]\nfrom = \"DMARC <dmarc@receiver.example>\"\n", "report.from", "plain mail address"},
		{"enabled without store", "[store]\nbackend = \"off\"\n[report]\nenabled = true\nfrom = \"d@r.example\"\n", "report.enabled", "needs the store"},
		{"suppress", "[report]\nsuppress = [\"a b\"]\n", "report.suppress", "neither"},
		{"starttls", "[report.smtp]\nstarttls = \"yes\"\n", "report.smtp.starttls", "not one of"},
		{"port", "[report.smtp]\nport = 0\n", "report.smtp.port", "between 1 and 65535"},
		{"password alone", "[report.smtp]\npassword = \"p\"\n", "report.smtp.password", "without"},
		{"ca file missing", "[report.smtp]\nca_file = \"/nonexistent/ca.pem\"\n", "report.smtp.ca_file", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml))
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c.Report.Period.Hours() != 6 || c.Report.SMTP.Port != 587 || c.Report.SMTP.Host != "127.0.0.1" {
					t.Errorf("report = %+v", c.Report)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want Errors, got %v", err)
			}
			if es[0].Key != tt.key || !strings.Contains(es[0].Msg, tt.msg) || es[0].Line == 0 {
				t.Errorf("got %+v, want key %q msg ~%q with a line", es[0], tt.key, tt.msg)
			}
		})
	}
}
