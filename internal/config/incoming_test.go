package config

import (
	"reflect"
	"testing"
)

func TestOwnDomains(t *testing.T) {
	for _, c := range []struct {
		toml string
		want []string
	}{
		{"", nil},
		{`[incoming_reports]
domains = ["Example.ORG.", "example.net"]
[signing]
keys = [{ name = "k", domain = "ignored.example", selector = "s", file = "/k" }]`, []string{"example.org", "example.net"}},
		{`[signing]
keys = [{ name = "k", domain = "example.com", selector = "s", file = "/k" }, { name = "f", domain = "%", selector = "s", file = "/k" }]
rules = [{ pattern = ".Example.com", keys = ["k"] }, { pattern = "*.sub.example", keys = ["k"] }, { pattern = "*", keys = ["f"] }]`,
			[]string{"example.com", "sub.example"}},
	} {
		cfg := Default()
		if c.toml != "" {
			var err error
			if cfg, err = Parse([]byte(c.toml)); err != nil {
				t.Fatalf("%s: %v", c.toml, err)
			}
		}
		if got := cfg.OwnDomains(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.toml, got, c.want)
		}
	}
}

func TestIncomingAndDashboardValidation(t *testing.T) {
	for _, c := range []struct{ toml, key string }{
		{"[incoming_reports]\nrecipients = [\"not-an-address\"]", "incoming_reports.recipients"},
		{"[incoming_reports]\nmax_rows = 0", "incoming_reports.max_rows"},
		{"[dashboard]\nlisten = \"127.0.0.1:9894\"", "dashboard.token"},
		{"[dashboard]\nlisten = \"127.0.0.1:9894\"\ntoken = \"short\"", "dashboard.token"},
		{"[dashboard]\nlisten = \"nowhere\"\ntoken = \"0123456789abcdef\"", "dashboard.listen"},
	} {
		_, err := Parse([]byte(c.toml))
		es, ok := err.(Errors)
		if !ok || len(es) == 0 || es[0].Key != c.key {
			t.Errorf("%q: got %v, want an error on %s", c.toml, err, c.key)
		}
	}
	if _, err := Parse([]byte("[dashboard]\nlisten = \"127.0.0.1:9894\"\nuser = \"u\"\npassword = \"p\"")); err != nil {
		t.Errorf("basic auth: %v", err)
	}
}
