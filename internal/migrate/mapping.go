package migrate

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind says how an option maps.
type Kind string

// The kinds, as the report groups them.
const (
	Mapped  Kind = "mapped"  // same meaning
	Changed Kind = "changed" // mapped, but it behaves differently
	None    Kind = "none"    // no equivalent; Note says why
)

// Option is one option of a tool and what it becomes.
type Option struct {
	Name string
	// Target names our option(s), for the docs; empty when there is none.
	Target string
	Kind   Kind
	// Note says how it maps, or why there is no equivalent.
	Note string
	// Absent, when not empty, is applied as the value when a file does not
	// set the option: the tool's default differs from ours.
	Absent string
	// apply sets our options from the value and returns what it did, for
	// the report; nil: the option has no effect (Note says why).
	apply func(r *run, s setting) string
}

// Tool is one program being replaced and every option of its
// configuration file.
type Tool struct {
	Name    string // "OpenDKIM"
	File    string // "opendkim.conf"
	Manual  string // where the list of options comes from
	Options []Option
	eq      bool // "Name = value" lines
}

func (t *Tool) find(name string) *Option {
	for i := range t.Options {
		if strings.EqualFold(t.Options[i].Name, name) {
			return &t.Options[i]
		}
	}
	return nil
}

// none lists options without equivalent that share a reason.
func none(why string, names ...string) []Option {
	out := make([]Option, len(names))
	for i, n := range names {
		out[i] = Option{Name: n, Kind: None, Note: why}
	}
	return out
}

func cat(groups ...[]Option) []Option {
	var out []Option
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

const (
	whyService = "the service manager does this: systemd (`User=`, `Restart=`, `RuntimeDirectory=`), rc.d (`authmilter_user`), Docker (`USER`); authmilter does not daemonize"
	whyLog     = "authmilter logs to stderr (journald, syslog through daemon(8), `docker logs`): `log.level`, `log.format`; one line per message at info"
	whySign    = "not needed for signing as authmilter does it: the signing table chooses keys by From domain"
	whyVerify  = "a DKIM result alone never rejects or holds mail in authmilter: DMARC decides (`dmarc.*`)"
	whyLua     = "no scripting: local policy is `[policy]`, `[dmarc]` and `[signing]`"
	whyTest    = "testing and debugging aids of OpenDKIM; `authmilter verify` explains one message"
	whyLDAP    = "data sets come from files only (KeyTable, SigningTable and host lists are written into the TOML)"
)

// seconds turns a count of seconds into a duration string.
func seconds(v string) (string, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return "", fmt.Errorf("%q is not a number of seconds", v)
	}
	return strconv.Itoa(n) + "s", nil
}

// authservID maps the "HOSTNAME" convention of OpenDKIM, OpenDMARC and
// policyd-spf to ours (empty: the host name).
func authservID(r *run, s setting) string {
	v := s.value
	if strings.EqualFold(v, "HOSTNAME") {
		v = ""
	}
	r.out.set("authserv_id", v, s.at, s.name)
	if v == "" {
		return "authserv_id = \"\" (the host name)"
	}
	return fmt.Sprintf("authserv_id = %q", v)
}

func socket(r *run, s setting) string {
	r.sockets = append(r.sockets, s.at)
	return "milter.listen (one socket for all of authmilter; see Postfix below)"
}

func dnsTimeout(r *run, s setting) string {
	d, err := seconds(s.value)
	if err != nil {
		return r.notTaken(s, err)
	}
	if d == "0s" {
		return "0 (wait forever) has no equivalent: dns.timeout keeps its default"
	}
	r.out.set("dns.timeout", d, s.at, s.name)
	return "dns.timeout = " + strconv.Quote(d) + " (per query attempt; dns.attempts tries again)"
}

// OpenDKIM is every option of opendkim.conf(5) (OpenDKIM 2.11).
var OpenDKIM = Tool{Name: "OpenDKIM", File: "opendkim.conf", Manual: "opendkim.conf(5), OpenDKIM 2.11.0", Options: cat(
	[]Option{
		{Name: "Mode", Target: "signing.enabled, dkim.enabled", Kind: Mapped, Absent: "sv",
			Note: "`s` signs outbound mail (`signing.enabled = true`), `v` verifies inbound mail (`dkim.enabled`); `sv` both, in one daemon",
			apply: func(r *run, s setting) string {
				var does []string
				if strings.Contains(r.dkimMode, "s") {
					does = append(does, "signing.enabled = true (mail from InternalHosts and authenticated clients is signed)")
				}
				if strings.Contains(r.dkimMode, "v") {
					does = append(does, "dkim.enabled = true (other mail is verified)")
				} else {
					does = append(does, "no DKIM verification by OpenDKIM")
				}
				return strings.Join(does, "; ")
			}},
		{Name: "KeyTable", Target: "signing.keys", Kind: Mapped,
			Note:  "each line `name domain:selector:keyfile` becomes one `[[signing.keys]]` (plain file or `refile:`); `%` as domain stays the From domain",
			apply: (*run).keyTable},
		{Name: "SigningTable", Target: "signing.rules", Kind: Mapped,
			Note:  "each line becomes one `[[signing.rules]]`: `*@example.com` → `example.com`, `*@*.example.com` → `*.example.com`, `*` → `*` (refile:), `.example.com` (plain file); per-user entries are not migrated (authmilter chooses keys by From domain)",
			apply: (*run).signingTable},
		{Name: "Domain", Target: "signing.keys, signing.rules", Kind: Mapped,
			Note:  "with `Selector` and `KeyFile` (no KeyTable): one key per domain and a rule for each",
			apply: (*run).single},
		{Name: "Selector", Target: "signing.keys", Kind: Mapped, Note: "see Domain", apply: (*run).single},
		{Name: "KeyFile", Target: "signing.keys", Kind: Mapped, Note: "see Domain; the file is checked against the user authmilter runs as", apply: (*run).single},
		{Name: "SubDomains", Target: "signing.rules", Kind: Mapped, Note: "`.example.com` rules (the domain and every subdomain)", apply: (*run).single},
		{Name: "MultipleSignatures", Target: "signing.rules", Kind: Mapped,
			Note: "signing-table lines with the same pattern become one rule with all their keys (an RSA and an Ed25519 key give two signatures)",
			apply: func(r *run, s setting) string {
				r.multipleSigs = boolValue(s.value)
				return "lines with the same pattern are merged into one rule with several keys"
			}},
		{Name: "InternalHosts", Target: "signing.internal_hosts", Kind: Mapped, Absent: "127.0.0.1",
			Note:  "hosts whose mail is **signed** (not `policy.ignore_hosts`: outbound mail must be signed); `*.example.com` (refile) becomes `.example.com`",
			apply: (*run).internalHosts},
		{Name: "ExternalIgnoreList", Target: "signing.external_ignore", Kind: Mapped,
			Note:  "outside hosts that may send as a signing domain without the log line about it; their mail is verified",
			apply: (*run).externalIgnore},
		{Name: "PeerList", Target: "policy.ignore_hosts", Kind: Changed,
			Note:  "clients that get no checks at all; in authmilter this also skips SPF and DMARC, so with OpenDMARC its IgnoreHosts decides and PeerList entries beyond it are reported",
			apply: func(r *run, s setting) string { return r.peerList(s, "PeerList") }},
		{Name: "Socket", Target: "milter.listen", Kind: Mapped, Note: "same spellings (`inet:8891@localhost`, `local:/path`)", apply: socket},
		{Name: "Canonicalization", Target: "signing.canonicalization", Kind: Mapped, Absent: "simple/simple",
			Note: "same values; OpenDKIM's default is simple/simple, authmilter's relaxed/relaxed",
			apply: func(r *run, s setting) string {
				r.out.set("signing.canonicalization", strings.ToLower(s.value), s.at, s.name)
				return "signing.canonicalization = " + strconv.Quote(strings.ToLower(s.value))
			}},
		{Name: "OversignHeaders", Target: "signing.oversign", Kind: Mapped, Note: "same list",
			apply: func(r *run, s setting) string { return r.fieldList(s, "signing.oversign") }},
		{Name: "SignHeaders", Target: "signing.headers", Kind: Mapped, Note: "same list (must include From)",
			apply: func(r *run, s setting) string { return r.fieldList(s, "signing.headers") }},
		{Name: "OmitHeaders", Kind: None, Note: "list the fields to sign in `signing.headers` instead"},
		{Name: "SignatureTTL", Target: "signing.expire", Kind: Mapped, Note: "seconds → duration (at least 1h, 0 for none)",
			apply: func(r *run, s setting) string {
				d, err := seconds(s.value)
				if err != nil {
					return r.notTaken(s, err)
				}
				r.out.set("signing.expire", d, s.at, s.name)
				return "signing.expire = " + strconv.Quote(d)
			}},
		{Name: "SignatureAlgorithm", Target: "signing.keys", Kind: Mapped,
			Note: "the key decides: RSA keys sign rsa-sha256, Ed25519 keys ed25519-sha256 (RFC 8463); rsa-sha1 is never used (RFC 8301)",
			apply: func(r *run, s setting) string {
				if strings.EqualFold(s.value, "rsa-sha1") {
					r.note(s.at, s.name, Changed, "rsa-sha1 is never used (RFC 8301): authmilter signs rsa-sha256 with the same key")
				}
				return "the key decides the algorithm"
			}},
		{Name: "RequireSafeKeys", Kind: Mapped, Note: "always: a key file readable by group or others is refused (the daemon names the file)",
			apply: func(r *run, s setting) string {
				if !boolValue(s.value) {
					r.note(s.at, s.name, Changed, "false is not possible: authmilter refuses key files readable by group or others (see Key files)")
				}
				return "always on"
			}},
		{Name: "MinimumKeyBits", Target: "dkim.min_rsa_bits", Kind: Mapped, Note: "same meaning (RFC 8301: at least 1024)",
			apply: func(r *run, s setting) string { return r.intOption(s, "dkim.min_rsa_bits") }},
		{Name: "MaximumSignaturesToVerify", Target: "dkim.max_signatures", Kind: Mapped, Note: "same meaning",
			apply: func(r *run, s setting) string { return r.intOption(s, "dkim.max_signatures") }},
		{Name: "ClockDrift", Target: "dkim.clock_drift", Kind: Mapped, Note: "seconds → duration",
			apply: func(r *run, s setting) string {
				d, err := seconds(s.value)
				if err != nil {
					return r.notTaken(s, err)
				}
				r.out.set("dkim.clock_drift", d, s.at, s.name)
				return "dkim.clock_drift = " + strconv.Quote(d)
			}},
		{Name: "AuthservID", Target: "authserv_id", Kind: Mapped, Note: "`HOSTNAME` → empty (the host name)", apply: authservID},
		{Name: "Nameservers", Target: "dns.servers", Kind: Mapped, Note: "the same addresses",
			apply: func(r *run, s setting) string {
				var l []string
				for _, a := range strings.Split(s.value, ",") {
					if a = strings.TrimSpace(a); a != "" {
						l = append(l, a)
					}
				}
				r.out.add("dns.servers", l, s.at, s.name)
				return "dns.servers"
			}},
		{Name: "DNSTimeout", Target: "dns.timeout", Kind: Changed, Note: "seconds → duration; ours bounds one query attempt (`dns.attempts` of them), OpenDKIM's the whole lookup", apply: dnsTimeout},
		{Name: "AlwaysAddARHeader", Kind: Mapped, Note: "always: every checked message gets one Authentication-Results field",
			apply: func(r *run, s setting) string { return "always" }},
		{Name: "RemoveARAll", Kind: Changed, Note: "fields carrying our `authserv_id` are always removed (RFC 8601 §5); other hosts' fields are kept"},
		{Name: "RemoveARFrom", Kind: Changed, Note: "fields carrying our `authserv_id` are always removed (RFC 8601 §5); other hosts' fields are kept"},
		{Name: "KeepAuthResults", Kind: None, Note: "fields carrying our `authserv_id` are forged and always removed (RFC 8601 §5)"},
		{Name: "UserID", Kind: None, Note: whyService + "; the key files are checked against the user given to `migrate -user`"},
		{Name: "BaseDirectory", Kind: None, Note: "relative paths of the file are read from it; authmilter's paths are absolute",
			apply: func(r *run, s setting) string { return "relative paths in the file were read from " + s.value }},
		{Name: "AllowSHA1Only", Kind: None, Note: "rsa-sha1 never passes (RFC 8301)"},
		{Name: "LogWhy", Kind: None, Note: "`log.level = \"debug\"`; `authmilter verify` explains one message"},
		{Name: "WeakSyntaxChecks", Kind: None, Note: "signatures are parsed strictly (RFC 6376); a malformed one is reported as such"},
		{Name: "DomainKeysCompat", Kind: None, Note: "DomainKeys (RFC 4870) is historic"},
		{Name: "Include", Kind: None, Note: "the TOML is one file; migrate the included file too and merge"},
	},
	none(whyService, "AutoRestart", "AutoRestartCount", "AutoRestartRate", "Background", "ChangeRootDirectory",
		"EnableCoredumps", "PidFile", "UMask", "MilterDebug", "SoftStart", "TemporaryDirectory", "KeepTemporaryFiles"),
	none(whyLog, "Syslog", "SyslogFacility", "SyslogName", "SyslogSuccess", "LogResults"),
	none(whyVerify, "On-BadSignature", "On-Default", "On-DNSError", "On-InternalError", "On-KeyNotFound",
		"On-NoSignature", "On-Security", "On-SignatureError", "Quarantine", "MustBeSigned", "Minimum", "BodyLengthDB"),
	none(whySign, "DontSignMailTo", "ExemptDomains", "MacroList", "MTA", "SenderHeaders", "SenderMacro",
		"ResignAll", "ResignMailTo", "IdentityHeader", "IdentityHeaderRemove", "SelectCanonicalizationHeader",
		"NoHeaderB", "AuthservIDWithJobID", "RemoveOldSignatures", "ReplaceHeaders", "ReplaceRules",
		"MaximumSignedBytes", "UnprotectedKey", "BogusKey", "FixCRLF", "StrictHeaders", "RequiredHeaders",
		"MaximumHeaders", "IgnoreMalformedMail", "SoftwareHeader"),
	none(whyLua, "FinalPolicyScript", "ScreenPolicyScript", "SetupPolicyScript", "StatisticsPolicyScript", "MTACommand"),
	none(whyLDAP, "LDAPAuthMechanism", "LDAPAuthName", "LDAPAuthRealm", "LDAPAuthUser", "LDAPBindPassword",
		"LDAPBindUser", "LDAPDisableCache", "LDAPKeepaliveIdle", "LDAPKeepaliveInterval", "LDAPKeepaliveProbes",
		"LDAPTimeout", "LDAPUseTLS", "POPDBFile", "QueryCache"),
	none("reports of failed signatures (RFC 6651) are not sent", "ReportAddress", "ReportBccAddress", "RequestReports",
		"SendReports", "SMTPURI", "RedirectFailuresTo"),
	none("statistics collection was removed from OpenDKIM itself; authmilter has Prometheus metrics (`[metrics]`)",
		"Statistics", "StatisticsName", "StatisticsPrefix"),
	none("VBR (RFC 5518) is not implemented", "VBR-Certifiers", "VBR-PurgeFields", "VBR-TrustedCertifiers",
		"VBR-TrustedCertifiersOnly", "VBR-Type"),
	none("the resolver is authmilter's own (`[dns]`: servers, timeout, attempts, cache); no DNSSEC trust anchor", "DNSConnect",
		"ResolverConfiguration", "ResolverTracing", "TrustAnchorFile"),
	none(whyTest, "Diagnostics", "DiagnosticDirectory", "CaptureUnknownErrors", "StrictTestMode", "TestDNSData",
		"TestPublicKeys", "DisableCryptoInit"),
	none("every signature is verified and reported; none is trusted more than another", "TrustSignaturesFrom"),
)}

// OpenDMARC is every option of opendmarc.conf(5) (OpenDMARC 1.4).
var OpenDMARC = Tool{Name: "OpenDMARC", File: "opendmarc.conf", Manual: "opendmarc.conf(5), OpenDMARC 1.4.2", Options: cat(
	[]Option{
		{Name: "Socket", Target: "milter.listen", Kind: Mapped, Note: "same spellings; a `local:` socket also gets `milter.socket_group = \"postfix\"`", apply: socket},
		{Name: "AuthservID", Target: "authserv_id", Kind: Mapped, Note: "`HOSTNAME` → empty (the host name)", apply: authservID},
		{Name: "IgnoreHosts", Target: "policy.ignore_hosts", Kind: Mapped, Absent: "127.0.0.1",
			Note:  "the file's addresses, CIDR prefixes and names; OpenDMARC's default is 127.0.0.1 only",
			apply: (*run).ignoreHosts},
		{Name: "IgnoreAuthenticatedClients", Target: "policy.skip_authenticated", Kind: Mapped, Absent: "false",
			Note: "same meaning; OpenDMARC's default is false",
			apply: func(r *run, s setting) string {
				r.out.set("policy.skip_authenticated", boolValue(s.value), s.at, s.name)
				return fmt.Sprintf("policy.skip_authenticated = %v", boolValue(s.value))
			}},
		{Name: "IgnoreMailFrom", Target: "policy.ignore_mail_from, dmarc.ignore_from_domains", Kind: Changed,
			Note:  "the domains' mail is not checked when they are the envelope sender (`policy.ignore_mail_from`, known at MAIL FROM), and never rejected or held when they are the From domain (`dmarc.ignore_from_domains`); OpenDMARC 1.4 compares the From domain",
			apply: (*run).ignoreMailFrom},
		{Name: "IgnoreMailTo", Target: "store.exclude_recipients", Kind: Mapped, Note: "mail to these addresses leaves no record for aggregate reports",
			apply: func(r *run, s setting) string {
				r.out.add("store.exclude_recipients", splitList(s.value), s.at, s.name)
				return "store.exclude_recipients"
			}},
		{Name: "RejectFailures", Target: "dmarc.monitor, dmarc.temperror", Kind: Mapped, Absent: "false",
			Note: "false (OpenDMARC's default) → `dmarc.monitor = true`, `dmarc.temperror = \"accept\"`; true → enforce p=reject/quarantine and `dmarc.temperror = \"tempfail\"`",
			apply: func(r *run, s setting) string {
				on := boolValue(s.value)
				r.out.set("dmarc.monitor", !on, s.at, s.name)
				tf := map[bool]string{true: "tempfail", false: "accept"}[on]
				r.out.set("dmarc.temperror", tf, s.at, s.name)
				return fmt.Sprintf("dmarc.monitor = %v, dmarc.temperror = %q", !on, tf)
			}},
		{Name: "HoldQuarantinedMessages", Target: "dmarc.quarantine", Kind: Mapped, Absent: "false",
			Note: "true → `\"hold\"` (Postfix's hold queue), false (OpenDMARC's default) → `\"header\"`",
			apply: func(r *run, s setting) string {
				v := map[bool]string{true: "hold", false: "header"}[boolValue(s.value)]
				r.out.set("dmarc.quarantine", v, s.at, s.name)
				return "dmarc.quarantine = " + strconv.Quote(v)
			}},
		{Name: "RejectMultiValueFrom", Target: "dmarc.multi_from", Kind: Changed, Absent: "false",
			Note: "true → `\"reject\"`; false (OpenDMARC's default: such mail is not evaluated) → authmilter evaluates every author domain (`\"evaluate-each\"`; `\"skip\"` is OpenDMARC's behaviour)",
			apply: func(r *run, s setting) string {
				if boolValue(s.value) {
					r.out.set("dmarc.multi_from", "reject", s.at, s.name)
					return "dmarc.multi_from = \"reject\""
				}
				r.note(s.at, s.name, Changed, "false: OpenDMARC did not evaluate mail with several From domains; authmilter evaluates each (dmarc.multi_from = \"evaluate-each\", the safer default; \"skip\" is the old behaviour)")
				return ""
			}},
		{Name: "RejectString", Target: "dmarc.reject_text", Kind: Mapped, Note: "`%s` → `{domain}`",
			apply: func(r *run, s setting) string {
				v := strings.Replace(s.value, "%s", "{domain}", 1)
				r.out.set("dmarc.reject_text", v, s.at, s.name)
				return "dmarc.reject_text = " + strconv.Quote(v)
			}},
		{Name: "SPFSelfValidate", Target: "spf.enabled", Kind: Mapped, Note: "always: authmilter checks SPF itself (`spf.enabled`)",
			apply: func(r *run, s setting) string { return "spf.enabled = true (authmilter's own SPF check)" }},
		{Name: "SPFIgnoreResults", Kind: Mapped, Note: "always: SPF results in arriving headers are never read",
			apply: func(r *run, s setting) string { return "always" }},
		{Name: "TrustedAuthservIDs", Kind: None, Note: "not needed: authmilter computes SPF and DKIM itself and never trusts arriving Authentication-Results"},
		{Name: "PublicSuffixList", Target: "dmarc.mode", Kind: Changed, Note: "not needed: RFC 9989's DNS tree walk finds the organizational domain (`dmarc.mode = \"rfc7489\"` uses the built-in list)",
			apply: func(r *run, s setting) string {
				r.note(s.at, s.name, Changed, "the file is not read: DMARC uses RFC 9989's DNS tree walk (dmarc.mode = \"rfc7489\" uses the built-in Public Suffix List)")
				return ""
			}},
		{Name: "HistoryFile", Target: "[store]", Kind: Mapped, Note: "records are written by the milter into `[store]` (SQLite, or PostgreSQL for several MX hosts); no import step",
			apply: func(r *run, s setting) string {
				return "[store] keeps the records (store.dir, default /var/lib/authmilter); `[report]` replaces opendmarc-import and opendmarc-reports"
			}},
		{Name: "RecordAllMessages", Kind: None, Note: "only mail whose DMARC record has a rua is recorded: nobody else can receive a report"},
		{Name: "DNSTimeout", Target: "dns.timeout", Kind: Changed, Note: "seconds → duration; ours bounds one query attempt", apply: dnsTimeout},
		{Name: "RequiredHeaders", Kind: None, Note: "no RFC 5322 header-count check; a message without a usable From gets dmarc=permerror (`dmarc.multi_from` for several)"},
		{Name: "SoftwareHeader", Kind: None, Note: "no DMARC-Filter field; the Authentication-Results field names `authserv_id`"},
		{Name: "AuthservIDWithJobID", Kind: None, Note: "the queue id is in the log line of each message"},
		{Name: "CopyFailuresTo", Kind: None, Note: "not supported; failing mail is rejected, held or marked per `[dmarc]`"},
		{Name: "BaseDirectory", Kind: None, Note: "relative paths of the file are read from it; authmilter's paths are absolute",
			apply: func(r *run, s setting) string { return "relative paths in the file were read from " + s.value }},
		{Name: "UserID", Kind: None, Note: whyService},
	},
	none(whyService, "AutoRestart", "AutoRestartCount", "AutoRestartRate", "Background", "ChangeRootDirectory",
		"EnableCoredumps", "MilterDebug", "PidFile", "UMask"),
	none("ARC is not evaluated, so there is no list of trusted sealers", "DomainWhitelist", "DomainWhitelistFile", "DomainWhitelistSize"),
	[]Option{
		{Name: "FailureReports", Target: "failure_reports.enabled", Kind: Changed,
			Note: "true → `failure_reports.enabled = true`; authmilter also needs `failure_reports.policy_domains` (which domains may get them) and rate-limits them",
			apply: func(r *run, s setting) string {
				if !boolValue(s.value) {
					return "failure_reports stays off"
				}
				r.out.set("failure_reports.enabled", true, s.at, s.name)
				r.out.set("failure_reports.policy_domains", []string{"*"}, s.at, s.name+" (OpenDMARC sent to every domain that asked; narrow this)")
				r.note(s.at, s.name, Changed, "failure_reports.policy_domains = [\"*\"] as OpenDMARC did; authmilter redacts local parts and rate-limits (see [failure_reports])")
				return "failure_reports.enabled = true"
			}},
		{Name: "FailureReportsSentBy", Target: "report.from", Kind: Mapped, Note: "failure reports come from the aggregate reports' `report.from`",
			apply: func(r *run, s setting) string {
				r.out.set("report.from", s.value, s.at, s.name)
				return "report.from = " + strconv.Quote(s.value) + " (also the From of aggregate reports)"
			}},
	},
	none("not supported: failure reports go to the domain owner's ruf only, through `[report.smtp]`", "FailureReportsBcc", "ReportCommand"),
	none("reports only for failing messages as RFC 9991 asks (`fo=`); never for p=none by local choice", "FailureReportsOnNone"),
	none(whyLog, "Syslog", "SyslogFacility"),
)}

// PolicydSPF is every key of policyd-spf.conf(5) (spf-engine 3.0.4, the
// Python policyd-spf and its milter form pyspf-milter).
var PolicydSPF = Tool{Name: "policyd-spf", File: "policyd-spf.conf", Manual: "policyd-spf.conf(5), spf-engine 3.0.4", eq: true, Options: cat(
	[]Option{
		{Name: "Mail_From_reject", Target: "spf.fail_action", Kind: Mapped, Absent: "Fail",
			Note: "`Fail` (policyd-spf's default) → `\"reject\"` (550 5.7.23); `False`/`No_Check` → `\"none\"`; `Softfail` rejects fail only",
			apply: func(r *run, s setting) string {
				switch strings.ToLower(s.value) {
				case "false", "no_check":
					r.out.set("spf.fail_action", "none", s.at, s.name)
					return "spf.fail_action = \"none\""
				case "softfail":
					r.note(s.at, s.name, Changed, "Softfail: authmilter rejects spf=fail only; softfail is reported, DMARC decides")
				}
				r.out.set("spf.fail_action", "reject", s.at, s.name)
				return "spf.fail_action = \"reject\""
			}},
		{Name: "PermError_reject", Target: "spf.permerror_action", Kind: Mapped, Note: "True → `\"reject\"` (550 5.7.24)",
			apply: func(r *run, s setting) string {
				v := map[bool]string{true: "reject", false: "none"}[boolValue(s.value)]
				r.out.set("spf.permerror_action", v, s.at, s.name)
				return "spf.permerror_action = " + strconv.Quote(v)
			}},
		{Name: "HELO_reject", Target: "spf.check_helo", Kind: Changed, Absent: "Fail",
			Note: "the HELO result is reported (`spf.check_helo`), never acted on alone; the null sender's SPF check uses the HELO name and follows `spf.fail_action`",
			apply: func(r *run, s setting) string {
				if v := strings.ToLower(s.value); v != "false" && v != "no_check" {
					r.note(s.at, s.name, Changed, "%s: a failing HELO alone no longer rejects; it is reported as smtp.helo (the null sender is checked by HELO and follows spf.fail_action)", s.value)
				}
				return ""
			}},
		{Name: "TempError_Defer", Kind: Changed, Note: "SPF temperror alone never defers; DMARC temperror does with `dmarc.temperror = \"tempfail\"`",
			apply: func(r *run, s setting) string {
				if boolValue(s.value) {
					r.note(s.at, s.name, Changed, "SPF temperror alone is accepted; set dmarc.temperror = \"tempfail\" to defer DMARC's DNS failures")
				}
				return ""
			}},
		{Name: "skip_addresses", Target: "policy.ignore_hosts", Kind: Changed,
			Note:  "clients not checked; in authmilter that skips DKIM and DMARC too, so with OpenDMARC its IgnoreHosts decides",
			apply: func(r *run, s setting) string { return r.peerList(s, "skip_addresses") }},
		{Name: "Whitelist", Target: "dmarc.trusted_forwarders", Kind: Changed,
			Note: "these clients are still checked but their failing mail is never rejected or held",
			apply: func(r *run, s setting) string {
				r.out.add("dmarc.trusted_forwarders", r.hostCSV(s), s.at, s.name)
				return "dmarc.trusted_forwarders (checked, never rejected)"
			}},
		{Name: "Domain_Whitelist", Kind: None, Note: "trusting every address a domain's SPF record authorises has no equivalent; list forwarders in `dmarc.trusted_forwarders`"},
		{Name: "Domain_Whitelist_PTR", Kind: None, Note: "no PTR-based trust; list forwarders in `dmarc.trusted_forwarders` (host names work)"},
		{Name: "HELO_Whitelist", Kind: None, Note: "no HELO-based trust (a client chooses its HELO)"},
		{Name: "Header_Type", Target: "spf.received_spf_header", Kind: Mapped, Absent: "SPF",
			Note: "`SPF` (the default) → `spf.received_spf_header = true`; `AR` → Authentication-Results only (always added)",
			apply: func(r *run, s setting) string {
				v := strings.EqualFold(s.value, "SPF")
				r.out.set("spf.received_spf_header", v, s.at, s.name)
				return fmt.Sprintf("spf.received_spf_header = %v", v)
			}},
		{Name: "Authserv_Id", Target: "authserv_id", Kind: Mapped, Note: "`HOSTNAME` → empty (the host name)", apply: authservID},
		{Name: "Lookup_Time", Target: "spf.timeout", Kind: Mapped, Note: "seconds → duration",
			apply: func(r *run, s setting) string {
				d, err := seconds(s.value)
				if err != nil {
					return r.notTaken(s, err)
				}
				r.out.set("spf.timeout", d, s.at, s.name)
				return "spf.timeout = " + strconv.Quote(d)
			}},
		{Name: "Void_Limit", Kind: Changed, Note: "fixed at 2 (RFC 7208 §4.6.4)"},
		{Name: "SPF_Enhanced_Status_Codes", Kind: Mapped, Note: "always: 5.7.23 and 5.7.24 (RFC 7372)",
			apply: func(r *run, s setting) string { return "always" }},
		{Name: "Hide_Receiver", Kind: None, Note: "Received-SPF names `authserv_id` as receiver"},
		{Name: "Reason_Message", Kind: None, Note: "the reject text is fixed (`SPF validation failed for DOMAIN`)"},
		{Name: "debugLevel", Target: "log.level", Kind: Mapped, Note: "2 and more → `\"debug\"`",
			apply: func(r *run, s setting) string {
				if n, err := strconv.Atoi(s.value); err == nil && n >= 2 {
					r.out.set("log.level", "debug", s.at, s.name)
					return "log.level = \"debug\""
				}
				return "log.level stays \"info\""
			}},
		{Name: "TestOnly", Kind: None, Note: "a switch of policyd-spf's own test mode"},
		{Name: "Whitelist_Lookup_Time", Kind: None, Note: "no whitelist lookups in DNS; `spf.timeout` bounds the whole check"},
		{Name: "QueueID", Kind: Mapped, Note: "always: every message's log line carries `queue_id`",
			apply: func(r *run, s setting) string { return "always" }},
		{Name: "Socket", Target: "milter.listen", Kind: Mapped, Note: "the milter form (pyspf-milter): same spellings", apply: socket},
		{Name: "InternalHosts", Target: "policy.ignore_hosts", Kind: Changed,
			Note:  "the milter form's hosts that are not SPF-checked; in authmilter that skips DKIM and DMARC too, so with OpenDMARC its IgnoreHosts decides",
			apply: func(r *run, s setting) string { return r.peerList(s, "InternalHosts") }},
		{Name: "MacroList", Kind: None, Note: "authenticated senders are recognised by the `{auth_authen}` macro (`policy.skip_authenticated`)"},
	},
	none(whyService, "PidFile", "UserID", "UMask"),
	none("no reject or defer by other results than these (DMARC decides)", "Mail_From_pass_restriction", "HELO_pass_restriction",
		"No_Mail", "Reject_Not_Pass_Domains"),
	none("no prospective or mock evaluation; `authmilter verify` evaluates a message offline", "Prospective", "Mock"),
)}

// Tools lists the tools in the order migrate reads them.
var Tools = []*Tool{&OpenDKIM, &OpenDMARC, &PolicydSPF}

// splitList splits a comma- or space-separated list.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
