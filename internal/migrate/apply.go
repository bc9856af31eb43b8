package migrate

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/authmilter/authmilter/pkg/dkimsign"
)

type keyDef struct {
	name, domain, selector, file string
	at                           source
}

type ruleDef struct {
	pattern string
	keys    []string
	at      source
}

type singleDomain struct {
	domains          []string
	selector, file   string
	subdomains       bool
	domainAt, fileAt source
}

// baseKey is the option whose directory relative paths are read from.
const baseKey = "BaseDirectory"

// apply reads one tool's file and applies every option in it, then the
// defaults of the options it does not set.
func (r *run) apply(t *Tool, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", t.File, err)
	}
	if r.tools == nil {
		r.tools = map[string]bool{}
	}
	r.tools[t.Name] = true
	file := filepath.Base(path)
	settings := parseConf(data, file, t.eq)
	base := ""
	seen := map[string]bool{}
	for _, s := range settings {
		if strings.EqualFold(s.name, baseKey) {
			base = s.value
		}
		if t == &OpenDKIM && strings.EqualFold(s.name, "Mode") {
			r.dkimMode = strings.ToLower(s.value)
		}
	}
	if t == &OpenDKIM && r.dkimMode == "" {
		r.dkimMode = "sv"
	}
	r.base = base
	for _, s := range settings {
		o := t.find(s.name)
		if o == nil {
			r.note(s.at, s.name, None, "not an option of %s (%s): misspelt, or from another version", t.Name, t.Manual)
			continue
		}
		s.name = o.Name
		seen[strings.ToLower(o.Name)] = true
		r.applyOne(o, s)
	}
	for i := range t.Options {
		o := &t.Options[i]
		if o.Absent == "" || seen[strings.ToLower(o.Name)] || o.apply == nil {
			continue
		}
		if t == &OpenDKIM && !strings.Contains(r.dkimMode, "s") && (o.Name == "InternalHosts" || o.Name == "Canonicalization") {
			continue // signing options of a verifier
		}
		r.applyOne(o, setting{name: o.Name, value: o.Absent, at: source{file: file, value: o.Absent}})
	}
	return nil
}

func (r *run) applyOne(o *Option, s setting) {
	if o.apply == nil {
		r.note(s.at, o.Name, o.Kind, "%s", o.Note)
		return
	}
	text := o.apply(r, s)
	if text == "" {
		return // apply noted it
	}
	if s.at.line == 0 {
		text = fmt.Sprintf("not set, the default %s → %s", s.value, text)
	}
	kind := o.Kind
	if kind == None {
		kind = Mapped
	}
	r.note(s.at, o.Name, kind, "%s", text)
}

// notTaken reports a value that could not be read; the option is left at
// authmilter's default.
func (r *run) notTaken(s setting, err error) string {
	r.note(s.at, s.name, None, "%v: not taken (authmilter's default stays)", err)
	return ""
}

func (r *run) intOption(s setting, key string) string {
	n, err := strconv.Atoi(strings.TrimSpace(s.value))
	if err != nil {
		return r.notTaken(s, fmt.Errorf("%q is not a number", s.value))
	}
	r.out.set(key, n, s.at, s.name)
	return fmt.Sprintf("%s = %d", key, n)
}

func (r *run) fieldList(s setting, key string) string {
	ds, err := r.readDataset(s.value, s.at, r.base)
	if err != nil {
		return r.notTaken(s, err)
	}
	l := []string{}
	for _, e := range ds.entries {
		l = append(l, e.key)
	}
	r.out.set(key, l, s.at, s.name)
	return key + " = [" + strings.Join(l, ", ") + "]"
}

func (r *run) hostDataset(s setting, what string) ([]string, bool) {
	ds, err := r.readDataset(s.value, s.at, r.base)
	if err != nil {
		r.note(s.at, s.name, None, "%v: nothing taken", err)
		return nil, false
	}
	if ds.unsupported() {
		r.note(s.at, s.name, None, "data sets of type %s: are not read; list the %s in the TOML", ds.kind, what)
		return nil, false
	}
	return r.hostList(ds, s.name, s.at), true
}

func (r *run) internalHosts(s setting) string {
	if !strings.Contains(r.dkimMode, "s") {
		return "OpenDKIM does not sign (Mode " + r.dkimMode + "): not used"
	}
	l, ok := r.hostDataset(s, "hosts")
	if !ok {
		return ""
	}
	r.out.set("signing.internal_hosts", l, s.at, s.name)
	return fmt.Sprintf("signing.internal_hosts: %d entries; their mail is signed", len(l))
}

func (r *run) externalIgnore(s setting) string {
	l, ok := r.hostDataset(s, "hosts")
	if !ok {
		return ""
	}
	r.out.set("signing.external_ignore", l, s.at, s.name)
	return fmt.Sprintf("signing.external_ignore: %d entries", len(l))
}

// hostCSV reads a comma-separated host list (policyd-spf's form).
func (r *run) hostCSV(s setting) []string {
	var l []string
	for _, e := range splitList(s.value) {
		h, _, err := hostEntry(e, false)
		if err != nil {
			r.note(s.at, s.name, None, "%v", err)
			continue
		}
		l = append(l, h)
	}
	return l
}

// peerList collects hosts that one tool did not check; finish decides.
func (r *run) peerList(s setting, what string) string {
	var l []string
	if what == "skip_addresses" {
		l = r.hostCSV(s)
	} else {
		var ok bool
		if l, ok = r.hostDataset(s, "hosts"); !ok {
			return ""
		}
	}
	for _, h := range l {
		r.peerHosts = append(r.peerHosts, h)
		r.peerFrom = append(r.peerFrom, s.at)
	}
	return fmt.Sprintf("%d entries for policy.ignore_hosts (decided below)", len(l))
}

func (r *run) ignoreHosts(s setting) string {
	var l []string
	if s.at.line == 0 { // OpenDMARC's default
		l = []string{s.value}
	} else {
		ds, err := r.readDataset(s.value, s.at, r.base)
		if err != nil {
			r.note(s.at, s.name, None, "%v: nothing taken", err)
			return ""
		}
		if ds.kind == "csl" { // OpenDMARC reads a file, always
			ds, err = r.readDataset("file:"+s.value, s.at, r.base)
			if err != nil {
				r.note(s.at, s.name, None, "%v: nothing taken", err)
				return ""
			}
		}
		l = r.hostList(ds, s.name, s.at)
	}
	r.out.set("policy.ignore_hosts", l, s.at, s.name)
	r.dmarcIgnored = true
	return fmt.Sprintf("policy.ignore_hosts = [%s]", strings.Join(l, ", "))
}

func (r *run) ignoreMailFrom(s setting) string {
	var l []string
	for _, d := range splitList(s.value) {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		l = append(l, d)
	}
	r.out.add("policy.ignore_mail_from", l, s.at, s.name)
	r.out.add("dmarc.ignore_from_domains", l, s.at, s.name)
	return fmt.Sprintf("policy.ignore_mail_from and dmarc.ignore_from_domains = [%s]: OpenDMARC 1.4 matches the From domain; "+
		"authmilter skips mail whose envelope sender is listed (no checks, no header) and never rejects or holds mail whose From domain is listed (checked and marked)",
		strings.Join(l, ", "))
}

// keyTable reads "name domain:selector:keyfile" lines.
func (r *run) keyTable(s setting) string {
	r.tableSeen = true
	ds, err := r.readDataset(s.value, s.at, r.base)
	if err != nil {
		r.note(s.at, s.name, None, "%v: no keys taken", err)
		return ""
	}
	if ds.unsupported() {
		r.note(s.at, s.name, None, "data sets of type %s: are not read; write [[signing.keys]] by hand", ds.kind)
		return ""
	}
	n := 0
	for _, e := range ds.entries {
		parts := strings.SplitN(e.value, ":", 3)
		if len(parts) != 3 {
			r.note(e.at, s.name, None, "%q: want NAME DOMAIN:SELECTOR:KEYFILE", e.key+" "+e.value)
			continue
		}
		file := parts[2]
		// opendkim.conf(5), KeyTable: "/", "./" or "../" starts a file
		// name; anything else is the key itself.
		if !strings.HasPrefix(file, "/") && !strings.HasPrefix(file, "./") && !strings.HasPrefix(file, "../") {
			r.note(e.at, s.name, None, "key %s: the key is written into the table itself; put it in a file (mode 0600) and name the file", e.key)
			continue
		}
		if !filepath.IsAbs(file) && r.base != "" {
			file = filepath.Join(r.base, file)
		}
		r.signingKeys = append(r.signingKeys, keyDef{name: e.key, domain: parts[0], selector: parts[1], file: file, at: e.at})
		n++
	}
	return fmt.Sprintf("%d key(s) → [[signing.keys]]", n)
}

// signingTable reads "pattern keyname" lines.
func (r *run) signingTable(s setting) string {
	r.tableSeen = true
	ds, err := r.readDataset(s.value, s.at, r.base)
	if err != nil {
		r.note(s.at, s.name, None, "%v: no rules taken", err)
		return ""
	}
	if ds.unsupported() {
		r.note(s.at, s.name, None, "data sets of type %s: are not read; write [[signing.rules]] by hand", ds.kind)
		return ""
	}
	n := 0
	for _, e := range ds.entries {
		if e.value == "" {
			r.note(e.at, s.name, None, "%q names no key", e.key)
			continue
		}
		p, err := signingPattern(e.key, ds.kind == "refile")
		if err != nil {
			r.note(e.at, s.name, None, "%v", err)
			continue
		}
		r.signingRules = append(r.signingRules, ruleDef{pattern: p, keys: []string{e.value}, at: e.at})
		n++
	}
	return fmt.Sprintf("%d rule(s) → [[signing.rules]]", n)
}

// signingPattern turns a SigningTable key into a rule pattern (by From
// domain). regex: the table is a refile (wildcards on the whole address).
func signingPattern(k string, regex bool) (string, error) {
	local, domain, ok := strings.Cut(k, "@")
	if !ok {
		if regex && k != "*" {
			return "", fmt.Errorf("%q: a refile pattern is matched against the whole address; want *@DOMAIN", k)
		}
		return k, nil // "example.com", ".example.com", "*"
	}
	if local != "*" && !(local == "" && !regex) {
		return "", fmt.Errorf("%q: per-sender entries are not migrated: authmilter chooses keys by From domain", k)
	}
	if domain == "" || domain == "*" {
		return "*", nil
	}
	return strings.ToLower(domain), nil
}

func (r *run) single(s setting) string {
	if r.singleDomain == nil {
		r.singleDomain = &singleDomain{}
	}
	sd := r.singleDomain
	switch s.name {
	case "Domain":
		ds, err := r.readDataset(s.value, s.at, r.base)
		if err != nil {
			r.note(s.at, s.name, None, "%v", err)
			return ""
		}
		for _, e := range ds.entries {
			sd.domains = append(sd.domains, strings.ToLower(e.key))
		}
		if sd.domainAt.line == 0 || sd.domainAt.line > s.at.line {
			sd.domainAt = s.at
		}
		return "signing.keys/rules for " + strings.Join(sd.domains, ", ") + " (with Selector and KeyFile)"
	case "Selector":
		sd.selector = s.value
		if sd.domainAt.file == "" {
			sd.domainAt = s.at
		}
		return "selector of the key"
	case "KeyFile":
		f := s.value
		if !filepath.IsAbs(f) && r.base != "" {
			f = filepath.Join(r.base, f)
		}
		sd.file, sd.fileAt = f, s.at
		if sd.domainAt.file == "" {
			sd.domainAt = s.at
		}
		return "the key file (checked below)"
	case "SubDomains":
		sd.subdomains = boolValue(s.value)
		return "rules also match subdomains"
	}
	return ""
}

// applyPerl applies postfix-policyd-spf-perl's fixed behaviour: it rejects
// spf=fail, defers temperror, and prepends Received-SPF otherwise.
func (r *run) applyPerl() {
	if r.tools == nil {
		r.tools = map[string]bool{}
	}
	r.tools["policyd-spf"] = true
	at := source{file: "postfix-policyd-spf-perl"}
	if r.perlService != "" {
		at = source{file: "master.cf", line: r.policyLines[0]}
	}
	r.out.set("spf.fail_action", "reject", at, "postfix-policyd-spf-perl rejects spf=fail")
	r.out.set("spf.received_spf_header", true, at, "postfix-policyd-spf-perl prepends Received-SPF")
	r.note(at, "reject on fail", Mapped, "spf.fail_action = \"reject\" (550 5.7.23 SPF validation failed)")
	r.note(at, "PREPEND Received-SPF", Mapped, "spf.received_spf_header = true (RFC 7208 §9.1; Authentication-Results is added too)")
	r.note(at, "temperror: DEFER_IF_PERMIT", Changed, "SPF temperror alone is accepted; dmarc.temperror = \"tempfail\" defers DMARC's DNS failures")
	r.note(at, "HELO fail: 550", Changed, "a failing HELO alone no longer rejects; it is reported as smtp.helo (the null sender is checked by HELO and follows spf.fail_action)")
	r.note(at, "permerror: PREPEND", Mapped, "spf.permerror_action stays \"none\": reported, not rejected")
	for _, h := range []string{"127.0.0.0/8", "::ffff:127.0.0.0/104", "::1"} { // its localhost exemption
		r.peerHosts = append(r.peerHosts, h)
		r.peerFrom = append(r.peerFrom, at)
	}
	r.note(at, "localhost not checked", Mapped, "127.0.0.0/8, ::ffff:127.0.0.0/104 and ::1 for policy.ignore_hosts (decided below)")
	// Debian's package (2.011) also reads two exemption files.
	const addrs, doms = "/etc/postfix/exempt_spf_addresses", "/etc/postfix/exempt_spf_domains"
	if data, err := r.readFile(addrs, ""); err == nil {
		s := setting{name: "exempt_spf_addresses", value: addrs, at: source{file: "exempt_spf_addresses"}}
		var l []string
		for _, e := range readLines(data, "exempt_spf_addresses") {
			h, _, err := hostEntry(e.key, false)
			if err != nil {
				r.note(e.at, s.name, None, "%v", err)
				continue
			}
			l = append(l, h)
			r.peerHosts = append(r.peerHosts, h)
			r.peerFrom = append(r.peerFrom, e.at)
		}
		r.note(s.at, s.name, Changed, "%d entries for policy.ignore_hosts (decided below): SPF was not checked for them; in authmilter that skips DKIM and DMARC too", len(l))
	}
	if data, err := r.readFile(doms, ""); err == nil {
		n := len(readLines(data, "exempt_spf_domains"))
		r.note(source{file: "exempt_spf_domains"}, "exempt_spf_domains", None,
			"%d envelope-sender domains exempt from SPF: no SPF-only exemption; policy.ignore_mail_from skips every check, dmarc.ignore_from_domains never rejects: choose and list them by hand", n)
	}
}

// finish decides what depends on several tools and checks the key files.
func (r *run) finish() {
	dkim, dmarc, spf := r.tools["OpenDKIM"], r.tools["OpenDMARC"], r.tools["policyd-spf"]
	at := source{file: "(all inputs)"}
	sign := dkim && strings.Contains(r.dkimMode, "s")
	verify := dkim && strings.Contains(r.dkimMode, "v")
	if sign {
		r.out.set("signing.enabled", true, at, "OpenDKIM Mode "+r.dkimMode)
		r.signingTables()
	}
	switch {
	case dmarc && !verify:
		r.note(at, "DKIM verification", Changed, "dkim.enabled stays true: authmilter's DMARC needs its own DKIM results (OpenDMARC read OpenDKIM's)")
	case !verify:
		r.out.set("dkim.enabled", false, at, "no DKIM verification before (OpenDKIM not verifying, no OpenDMARC)")
		r.note(at, "DKIM verification", Mapped, "dkim.enabled = false: nothing verified DKIM before")
	}
	if !dmarc {
		r.out.set("dmarc.enabled", false, at, "no OpenDMARC configuration was given")
		r.note(at, "DMARC", Mapped, "dmarc.enabled = false: no OpenDMARC configuration was given (true enforces the domain owners' policies)")
	}
	if !spf && !dmarc {
		r.out.set("spf.enabled", false, at, "no policyd-spf or OpenDMARC configuration was given")
		r.note(at, "SPF", Mapped, "spf.enabled = false: nothing checked SPF before")
	}
	if !spf && dmarc {
		r.note(at, "SPF", Mapped, "spf.enabled stays true: DMARC needs SPF (OpenDMARC read policyd-spf's header or checked itself)")
	}
	if !r.dmarcIgnored && len(r.peerHosts) > 0 {
		r.out.add("policy.ignore_hosts", r.peerHosts, at, "hosts the old tools did not check (PeerList, skip_addresses, policyd-spf-perl exemptions)")
		r.note(at, "policy.ignore_hosts", Mapped, "policy.ignore_hosts = [%s] (hosts the old tools did not check)", strings.Join(r.peerHosts, ", "))
	}
	if r.dmarcIgnored {
		ignored := map[string]bool{}
		for _, h := range r.out.strings("policy.ignore_hosts") {
			ignored[h] = true
		}
		for i, h := range r.peerHosts {
			if !ignored[h] {
				r.note(r.peerFrom[i], "policy.ignore_hosts", Changed, "%s was not checked by one tool but checked by OpenDMARC: authmilter checks it (add it to policy.ignore_hosts to skip every check)", h)
			}
		}
	}
	r.chooseSocket()
}

// signingTables writes the key and signing tables, from KeyTable and
// SigningTable or from the single-domain form.
func (r *run) signingTables() {
	at := source{file: "opendkim.conf"}
	if sd := r.singleDomain; sd != nil && r.tableSeen {
		r.note(sd.domainAt, "Domain/Selector/KeyFile", None, "not used: KeyTable and SigningTable decide")
	} else if sd != nil {
		if sd.selector == "" || sd.file == "" || len(sd.domains) == 0 {
			r.note(at, "Domain/Selector/KeyFile", None, "need all three to sign: nothing taken")
		}
		for _, d := range sd.domains {
			if sd.selector == "" || sd.file == "" {
				break
			}
			r.signingKeys = append(r.signingKeys, keyDef{name: d, domain: d, selector: sd.selector, file: sd.file, at: sd.fileAt})
			p := d
			if sd.subdomains {
				p = "." + d
			}
			r.signingRules = append(r.signingRules, ruleDef{pattern: p, keys: []string{d}, at: sd.domainAt})
		}
	}
	names := map[string]bool{}
	for _, k := range r.signingKeys {
		names[k.name] = true
	}
	var rules []ruleDef
	for _, rl := range r.signingRules {
		if !names[rl.keys[0]] {
			r.note(rl.at, "SigningTable", None, "%s names key %q, which KeyTable does not have: rule dropped", rl.pattern, rl.keys[0])
			continue
		}
		merged := false
		for i := range rules {
			if rules[i].pattern == rl.pattern {
				if r.multipleSigs {
					rules[i].keys = append(rules[i].keys, rl.keys...)
				} else {
					r.note(rl.at, "SigningTable", Mapped, "%s is listed again: only the first line applies (as without MultipleSignatures)", rl.pattern)
				}
				merged = true
			}
		}
		if !merged {
			rules = append(rules, rl)
		}
	}
	if len(r.signingKeys) == 0 || len(rules) == 0 {
		r.note(at, "signing", None, "no key or no rule could be taken: signing.enabled = true will be refused until [[signing.keys]] and [[signing.rules]] are written")
	}
	r.out.keys, r.out.rules = r.signingKeys, rules
	for _, k := range r.signingKeys {
		r.keyFiles = append(r.keyFiles, k.file)
	}
}

// chooseSocket: one socket serves everything. OpenDMARC's (the inbound
// filter) wins over OpenDKIM's; a unix socket moves to authmilter's
// directory and gets the postfix group.
func (r *run) chooseSocket() {
	if len(r.sockets) == 0 {
		return
	}
	chosen := r.sockets[len(r.sockets)-1] // OpenDMARC is read after OpenDKIM
	sock, err := socketFor(chosen.value)
	if err != nil {
		r.note(chosen, "Socket", None, "%v: milter.listen keeps its default", err)
		return
	}
	for _, s := range r.sockets[:len(r.sockets)-1] {
		r.note(s, "Socket", Changed, "%s is replaced by %s: one authmilter socket does the work of both filters", s.value, chosen.value)
	}
	why := "Socket " + chosen.value
	if sock.Network == "unix" {
		old := sock.Address
		switch {
		case strings.HasPrefix(old, postfixChroot+"/"):
			sock.Address = postfixChroot + "/authmilter/authmilter.sock"
		case strings.HasPrefix(old, "/var/run/"): // FreeBSD's rc.d rundir; /run on Linux
			sock.Address = "/var/run/authmilter/authmilter.sock"
		default:
			sock.Address = "/run/authmilter/authmilter.sock"
		}
		r.out.set("milter.socket_group", "postfix", chosen, "Postfix's smtpd (group postfix) must be able to connect")
		r.out.set("milter.socket_mode", "0660", chosen, "")
		where := "a directory of authmilter's: the systemd unit's RuntimeDirectory /run/authmilter, the same as /var/run/authmilter, and the rc.d script's authmilter_rundir"
		if strings.HasPrefix(sock.Address, postfixChroot+"/") {
			where = "a directory of authmilter's inside Postfix's chroot; create it owned by authmilter"
		}
		r.note(chosen, "Socket", Changed, "the unix socket moves from %s to %s (%s) with socket_group = \"postfix\", mode 0660", old, sock.Address, where)
	} else if h, _, _ := strings.Cut(sock.Address, ":"); h == "" || h == "[]" {
		r.note(chosen, "Socket", Mapped, "%s listens on every interface: the milter would answer anyone who reaches the port; prefer inet:PORT@127.0.0.1", chosen.value)
	}
	r.listen = sock
	r.out.set("milter.listen", []string{sock.String()}, chosen, why)
}

const postfixChroot = "/var/spool/postfix"

// keyCheck checks one key file against the user authmilter runs as.
func (r *run) keyCheck(file string) []string {
	var problems []string
	p := r.path(file, "")
	st, err := os.Stat(p)
	if err != nil {
		return []string{fmt.Sprintf("cannot be read: %v", unwrapPath(err))}
	}
	if data, err := os.ReadFile(p); err != nil {
		problems = append(problems, fmt.Sprintf("cannot be read: %v", unwrapPath(err)))
	} else if _, err := dkimsign.ParsePrivateKey(data); err != nil {
		problems = append(problems, err.Error())
	}
	if st.Mode().Perm()&0o077 != 0 {
		problems = append(problems, fmt.Sprintf("mode %04o is readable by group or others: authmilter refuses it (chmod 600 %s)", st.Mode().Perm(), file))
	}
	u, err := user.Lookup(r.in.User)
	if err != nil {
		problems = append(problems, fmt.Sprintf("user %q does not exist on this machine: owner not checked (create it, then chown %s %s)", r.in.User, r.in.User, file))
		return problems
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && u.Uid != "0" && strconv.FormatUint(uint64(sys.Uid), 10) != u.Uid {
		owner := strconv.FormatUint(uint64(sys.Uid), 10)
		if o, err := user.LookupId(owner); err == nil {
			owner = o.Username
		}
		problems = append(problems, fmt.Sprintf("owned by %s: authmilter runs as %s and cannot read it (chown %s %s)", owner, r.in.User, r.in.User, file))
	}
	return problems
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
