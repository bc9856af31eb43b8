package policy

import (
	"net/netip"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

func TestDecide(t *testing.T) {
	fail := func(pub, applied dmarc.Policy) dmarc.Result {
		return dmarc.Result{Status: dmarc.StatusFail, AuthorDomain: "example.org", Published: pub, Applied: applied}
	}
	tests := []struct {
		name        string
		edit        func(*config.Config)
		r           engine.Result
		ip          string
		action      Action
		disposition string
		override    string
		reply       string
	}{
		{"pass", nil, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusPass, Published: dmarc.PolicyReject, Applied: dmarc.PolicyNone}},
			"192.0.2.1", Accept, "pass", "", ""},
		{"none", nil, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusNone}}, "192.0.2.1", Accept, "none", "", ""},
		{"not evaluated", nil, engine.Result{}, "192.0.2.1", Accept, "none", "", ""},
		{"permerror", nil, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusPermError}}, "192.0.2.1", Accept, "none", "", ""},
		{"reject", nil, engine.Result{DMARC: fail(dmarc.PolicyReject, dmarc.PolicyReject)}, "192.0.2.1", Reject, "reject", "",
			"550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"quarantine hold", nil, engine.Result{DMARC: fail(dmarc.PolicyQuarantine, dmarc.PolicyQuarantine)}, "192.0.2.1", Quarantine, "quarantine", "", ""},
		{"quarantine header", func(c *config.Config) { c.DMARC.Quarantine = "header" },
			engine.Result{DMARC: fail(dmarc.PolicyQuarantine, dmarc.PolicyQuarantine)}, "192.0.2.1", Accept, "quarantine", "", ""},
		{"p=none", nil, engine.Result{DMARC: fail(dmarc.PolicyNone, dmarc.PolicyNone)}, "192.0.2.1", Accept, "none", "", ""},
		{"t=y", nil, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusFail, AuthorDomain: "example.org", Published: dmarc.PolicyReject,
			Applied: dmarc.PolicyQuarantine, TestMode: true}}, "192.0.2.1", Quarantine, "quarantine", ReasonTestMode, ""},
		{"pct sampled out", nil, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusFail, AuthorDomain: "example.org", Published: dmarc.PolicyReject,
			Applied: dmarc.PolicyQuarantine, SampledOut: true}}, "192.0.2.1", Quarantine, "quarantine", ReasonSampledOut, ""},
		{"monitor", func(c *config.Config) { c.DMARC.Monitor = true }, engine.Result{DMARC: fail(dmarc.PolicyReject, dmarc.PolicyReject)},
			"192.0.2.1", Accept, "none", ReasonLocalPolicy, ""},
		{"ignored from", func(c *config.Config) { c.DMARC.IgnoreFromDomains = []string{"Example.ORG."} },
			engine.Result{DMARC: fail(dmarc.PolicyReject, dmarc.PolicyReject)}, "192.0.2.1", Accept, "none", ReasonLocalPolicy, ""},
		// issue 18: a U-label in the configuration matched no author
		// domain (always A-labels), and the mail was rejected.
		{"ignored from, U-label", func(c *config.Config) { c.DMARC.IgnoreFromDomains = []string{"Bücher.example"} },
			engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusFail, AuthorDomain: "xn--bcher-kva.example", Published: dmarc.PolicyReject, Applied: dmarc.PolicyReject}},
			"192.0.2.1", Accept, "none", ReasonLocalPolicy, ""},
		{"trusted forwarder", func(c *config.Config) { c.DMARC.TrustedForwarders = []string{"192.0.2.0/24"} },
			engine.Result{DMARC: fail(dmarc.PolicyReject, dmarc.PolicyReject)}, "192.0.2.1", Accept, "none", ReasonTrustedForwarder, ""},
		{"untrusted forwarder", func(c *config.Config) { c.DMARC.TrustedForwarders = []string{"192.0.2.0/24"} },
			engine.Result{DMARC: fail(dmarc.PolicyReject, dmarc.PolicyReject)}, "198.51.100.1", Reject, "reject", "",
			"550 5.7.1 Email rejected per DMARC policy for example.org"},
		{"temperror accept", func(c *config.Config) { c.DMARC.TempError = "accept" }, engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusTempError, AuthorDomain: "example.org"}},
			"192.0.2.1", Accept, "none", "", ""},
		{"temperror tempfail by default", nil,
			engine.Result{DMARC: dmarc.Result{Status: dmarc.StatusTempError, AuthorDomain: "example.org"}},
			"192.0.2.1", TempFail, "none", "", "451 4.7.5 Temporary DNS failure evaluating DMARC policy for example.org"},
		{"multi-from reject", func(c *config.Config) { c.DMARC.MultiFrom = "reject" },
			engine.Result{FromProblem: "several author domains", DMARC: dmarc.Result{Status: dmarc.StatusPermError}},
			"192.0.2.1", Reject, "reject", "", "550 5.7.1 Message rejected: several author domains"},
		{"spf fail reject", func(c *config.Config) { c.SPF.FailAction = "reject" },
			engine.Result{SPF: spfcheck.Result{Status: spfcheck.StatusFail, Domain: "example.org"}, DMARC: dmarc.Result{Status: dmarc.StatusNone}},
			"192.0.2.1", Reject, "none", "", "550 5.7.23 SPF validation failed for example.org"},
		{"spf permerror reject", func(c *config.Config) { c.SPF.PermerrorAction = "reject" },
			engine.Result{SPF: spfcheck.Result{Status: spfcheck.StatusPermError, Domain: "example.org"}},
			"192.0.2.1", Reject, "none", "", "550 5.7.24 SPF validation error for example.org"},
		{"spf fail reject spares forwarders", func(c *config.Config) {
			c.SPF.FailAction = "reject"
			c.DMARC.TrustedForwarders = []string{"192.0.2.1"}
		}, engine.Result{SPF: spfcheck.Result{Status: spfcheck.StatusFail, Domain: "example.org"}}, "192.0.2.1", Accept, "none", "", ""},
		{"spf fail only reported by default", nil,
			engine.Result{SPF: spfcheck.Result{Status: spfcheck.StatusFail, Domain: "example.org"}}, "192.0.2.1", Accept, "none", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.edit != nil {
				tt.edit(cfg)
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(&tt.r, netip.MustParseAddr(tt.ip), "")
			if d.Action != tt.action || d.Disposition != tt.disposition || d.Override != tt.override || d.Reply != tt.reply {
				t.Errorf("got %+v\nwant action=%v disposition=%s override=%s reply=%q", d, tt.action, tt.disposition, tt.override, tt.reply)
			}
		})
	}
}

func TestReply(t *testing.T) {
	if got := Reply(550, "5.7.1", "50% of\r\nlines\x00"); got != "550 5.7.1 50%% of  lines " {
		t.Errorf("%q", got)
	}
}

func TestSkip(t *testing.T) {
	cfg := config.Default()
	p, _ := New(cfg)
	for _, tt := range []struct {
		ip, host, auth string
		skip           bool
	}{
		{"127.0.0.1", "", "", true},
		{"::1", "", "", true},
		{"192.0.2.1", "", "", false},
		{"192.0.2.1", "", "alice", true},
	} {
		if got, _ := p.Skip(netip.MustParseAddr(tt.ip), tt.host, tt.auth); got != tt.skip {
			t.Errorf("Skip(%s, %q) = %v", tt.ip, tt.auth, got)
		}
	}
}

// TestSkipMailFrom: policy.ignore_mail_from, OpenDMARC's IgnoreMailFrom
// by envelope sender (issue 19).
func TestSkipMailFrom(t *testing.T) {
	cfg := config.Default()
	cfg.Policy.IgnoreMailFrom = []string{"Example.COM", ".lists.example.org"}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		from string
		skip bool
	}{
		{"alice@example.com", true},
		{"alice@EXAMPLE.com.", true},
		{"alice@sub.example.com", false}, // no leading dot: that domain only
		{"bob@lists.example.org", true},
		{"bob@a.lists.example.org", true},
		{"bob@xlists.example.org", false},
		{"", false}, // the null sender
		{"postmaster", false},
		{"carol@example.net", false},
	} {
		if got, _ := p.SkipMailFrom(tt.from); got != tt.skip {
			t.Errorf("SkipMailFrom(%q) = %v, want %v", tt.from, got, tt.skip)
		}
	}
	if got, _ := mustPolicy(t, config.Default()).SkipMailFrom("alice@example.com"); got {
		t.Error("empty ignore_mail_from skipped a sender")
	}
}

func mustPolicy(t *testing.T, cfg *config.Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
