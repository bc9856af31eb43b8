package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The example file documents every option with its default: parsing it must
// give exactly Default(), and every option of the struct must appear in it.
func TestExampleFileIsDefaults(t *testing.T) {
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("config.example.toml differs from Default():\n got %+v\nwant %+v", c, Default())
	}
	lines := keyLines(data)
	for _, k := range allKeys(reflect.TypeOf(Config{}), "") {
		if _, ok := lines[k]; !ok {
			t.Errorf("option %s is not in config.example.toml", k)
		}
	}
}

func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if prefix != "" {
			name = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
			keys = append(keys, allKeys(f.Type, name)...)
			continue
		}
		keys = append(keys, name)
	}
	return keys
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, toml string
		key        string
		line       int
		msg        string
	}{
		{"unknown key", "[dns]\ntimeout = \"1s\"\nfoo = 1\n", "dns.foo", 3, "unknown option"},
		{"unknown table", "[nope]\nx = 1\n", "nope", 1, "unknown option"},
		{"wrong type", "[dns]\nattempts = \"two\"\n", "dns.attempts", 2, ""},
		{"bad duration", "[dns]\ntimeout = \"soon\"\n", "dns.timeout", 2, "not a duration"},
		{"zero attempts", "[dns]\n\nattempts = 0\n", "dns.attempts", 3, "between 1 and 10"},
		{"bad enum", "[dmarc]\nmode = \"rfc7490\"\n", "dmarc.mode", 2, "not one of"},
		{"bad socket", "[milter]\nlisten = [\"tcp6:foo\"]\n", "milter.listen", 2, "unknown socket type"},
		{"bad ignore", "[policy]\nignore_hosts = [\"10.0.0.0/33\"]\n", "policy.ignore_hosts", 2, "not an IP"},
		{"bad mode", "[milter]\nsocket_mode = \"rw\"\n", "milter.socket_mode", 2, "octal"},
		{"syntax", "[dns\n", "", 1, ""},
		// issue 19: each of these passed and turned every lookup into a temperror.
		{"dns port too large", "[dns]\nservers = [\"127.0.0.1:99999\"]\n", "dns.servers", 2, "a port is a number from 1 to 65535"},
		{"dns port zero", "[dns]\nservers = [\"127.0.0.1:0\"]\n", "dns.servers", 2, "from 1 to 65535"},
		{"dns port name", "[dns]\nservers = [\"127.0.0.1:dns\"]\n", "dns.servers", 2, "from 1 to 65535"},
		{"dns host name", "[dns]\nservers = [\"resolver.example:53\"]\n", "dns.servers", 2, "not an IP address"},
		{"dns timeout no answer can meet", "[dns]\ntimeout = \"1ms\"\n", "dns.timeout", 2, "between 10ms and 1m"},
		{"dns timeout of an hour", "[dns]\ntimeout = \"1h\"\n", "dns.timeout", 2, "between 10ms and 1m"},
		{"spf timeout no answer can meet", "[spf]\ntimeout = \"1us\"\n", "spf.timeout", 2, "at least 10ms"},
		{"socket group missing", "[milter]\nsocket_group = \"no-such-group-19\"\n", "milter.socket_group", 2, "no group"},
		{"postgres dsn unreadable", "[store]\nbackend = \"postgres\"\npostgres_dsn = \"postgres://u:secret@[::1\"\n", "store.postgres_dsn", 3, "not shown"},
		{"type in a list of tables", "[[signing.keys]]\nname = 1\n", "signing.keys.name", 2, "want text in quotes, found a number"},
		{"smtp host with port", "[report.smtp]\nhost = \"127.0.0.1:25\"\n", "report.smtp.host", 2, "the port goes in report.smtp.port"},
		{"bad ignore_mail_from", "[policy]\nignore_mail_from = [\"a@b.example\"]\n", "policy.ignore_mail_from", 2, "not a domain"},
		{"bad external_ignore", "[signing]\n\nexternal_ignore = [\"10.0.0.0/33\"]\n", "signing.external_ignore", 3, "not an IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml))
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want Errors, got %v", err)
			}
			e := es[0]
			if e.Key != tt.key || e.Line != tt.line || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %+v (%q), want key %q line %d msg ~%q", e, e.Error(), tt.key, tt.line, tt.msg)
			}
		})
	}
}

func TestParseSocket(t *testing.T) {
	tests := []struct {
		in, network, addr string
		ok                bool
	}{
		{"inet:127.0.0.1:8893", "tcp", "127.0.0.1:8893", true},
		{"inet:8893@127.0.0.1", "tcp", "127.0.0.1:8893", true},
		{"inet:8893@localhost", "tcp", "localhost:8893", true},
		{"inet6:[::1]:8893", "tcp", "[::1]:8893", true},
		{"inet6:8893@[::1]", "tcp", "[::1]:8893", true},
		{"inet:8893", "tcp", ":8893", true},
		{"unix:/run/am.sock", "unix", "/run/am.sock", true},
		{"local:/run/am.sock", "unix", "/run/am.sock", true},
		{"/run/am.sock", "unix", "/run/am.sock", true},
		{"unix:relative.sock", "", "", false},
		{"inet:127.0.0.1:0", "", "", false},
		{"inet:127.0.0.1:70000", "", "", false},
		{"inet6:[127.0.0.1]:25", "", "", false},
		{"tcp6:x", "", "", false},
		{"nonsense", "", "", false},
	}
	for _, tt := range tests {
		s, err := ParseSocket(tt.in)
		if (err == nil) != tt.ok || s.Network != tt.network || s.Address != tt.addr {
			t.Errorf("ParseSocket(%q) = %+v, %v", tt.in, s, err)
		}
	}
}

func TestHostList(t *testing.T) {
	l, err := ParseHostList([]string{"127.0.0.0/8", "::1", "192.0.2.7", "relay.example.org", ".fwd.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, host string
		want     bool
	}{
		{"127.0.0.5", "", true},
		{"::ffff:127.0.0.1", "", true},
		{"::1", "", true},
		{"192.0.2.7", "", true},
		{"192.0.2.8", "", false},
		{"198.51.100.1", "RELAY.example.org.", true},
		{"198.51.100.1", "x.relay.example.org", false},
		{"198.51.100.1", "a.b.fwd.example", true},
		{"198.51.100.1", "fwd.example", true},
		{"198.51.100.1", "notfwd.example", false},
		{"198.51.100.1", "[198.51.100.1]", false},
	}
	for _, tt := range tests {
		if got := l.Match(netip.MustParseAddr(tt.ip), tt.host); got != tt.want {
			t.Errorf("Match(%s, %q) = %v", tt.ip, tt.host, got)
		}
	}
}

// Domains are normalised when the configuration is loaded (issue 18:
// "bücher.example" passed validation but never matched the A-label author
// domain).
func TestParseNormalizesDomains(t *testing.T) {
	c, err := Parse([]byte("[dmarc]\nignore_from_domains = [\"Bücher.Example.\", \"EXAMPLE.org\"]\n[report]\nreceiver = \"Mail.Example.NET.\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.DMARC.IgnoreFromDomains, " "); got != "xn--bcher-kva.example example.org" {
		t.Errorf("ignore_from_domains = %s", got)
	}
	if c.Report.Receiver != "mail.example.net" {
		t.Errorf("report.receiver = %s", c.Report.Receiver)
	}
	for _, bad := range []string{"a..example", "192.0.2.1", "a@example.org", ""} {
		if _, err := Parse([]byte("[dmarc]\nignore_from_domains = [\"" + bad + "\"]\n")); err == nil {
			t.Errorf("ignore_from_domains = [%q] accepted", bad)
		}
		if _, err := Parse([]byte("[failure_reports]\npolicy_domains = [\"" + bad + "\"]\n")); err == nil {
			t.Errorf("failure_reports.policy_domains = [%q] accepted", bad)
		}
	}
	// failure_reports.policy_domains likewise ("*" stays): the reporter
	// compares them with the A-label policy domain as they are.
	c, err = Parse([]byte("[failure_reports]\npolicy_domains = [\"Bücher.Example.\", \"*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.FailureReports.PolicyDomains, " "); got != "xn--bcher-kva.example *" {
		t.Errorf("failure_reports.policy_domains = %s", got)
	}
}

// TestDNSServersAccepted: the forms the resolver dials are accepted.
func TestDNSServersAccepted(t *testing.T) {
	for _, s := range []string{"9.9.9.9", "::1", "127.0.0.1:53", "[::1]:5353", "127.0.0.1:65535"} {
		if err := checkServer(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// TestParseReportsEverything (issue 19): every problem of a file comes at
// once, wrong types included, in a postmaster's words (no Go type names).
func TestParseReportsEverything(t *testing.T) {
	data := "[milter]\nlisten = \"inet:127.0.0.1:8893\"\nmax_sessions = \"many\"\n[dns]\ntimeout = \"soon\"\nattempts = 0\n" +
		"servers = [\"127.0.0.1:99999\"]\n[signing]\nenabled = \"yes\"\n"
	_, err := Parse([]byte(data))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := []struct {
		key  string
		line int
		msg  string
	}{
		{"milter.listen", 2, `want a list in brackets`},
		{"milter.max_sessions", 3, "want a whole number"},
		{"dns.timeout", 5, "not a duration"},
		{"dns.attempts", 6, "between 1 and 10"},
		{"dns.servers", 7, "from 1 to 65535"},
		{"signing.enabled", 9, "want true or false"},
	}
	if len(es) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(es), len(want), es)
	}
	for i, w := range want {
		if es[i].Key != w.key || es[i].Line != w.line || !strings.Contains(es[i].Msg, w.msg) {
			t.Errorf("error %d: %q, want %s line %d ~%q", i, es[i].Error(), w.key, w.line, w.msg)
		}
	}
	for _, bad := range []string{"config.", "[]string", "struct field", "Go value"} {
		if strings.Contains(es.Error(), bad) {
			t.Errorf("message shows %q:\n%s", bad, es.Error())
		}
	}
}

// TestDSNErrorHidesSecret: an unreadable postgres_dsn is refused without
// showing it (it may hold a password).
func TestDSNErrorHidesSecret(t *testing.T) {
	_, err := Parse([]byte("[store]\nbackend = \"postgres\"\npostgres_dsn = \"postgres://u:hunter2@[::1\"\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}
