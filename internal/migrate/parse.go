package migrate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/authmilter/authmilter/internal/config"
)

// setting is one "Name value" line of an input file.
type setting struct {
	name  string
	value string
	at    source
}

// parseConf reads the format of opendkim.conf(5) and opendmarc.conf(5):
// one "Name value" per line, "#" starts a comment, names are not case
// sensitive. policyd-spf.conf uses "Name = value"; eq accepts that.
func parseConf(data []byte, file string, eq bool) []setting {
	var out []setting
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var name, value string
		if eq {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				name = line
			}
			name, value = strings.TrimSpace(k), strings.TrimSpace(v)
		} else {
			i := strings.IndexAny(line, " \t")
			if i < 0 {
				name = line
			} else {
				name, value = line[:i], strings.TrimSpace(line[i+1:])
			}
		}
		out = append(out, setting{name: name, value: value, at: source{file: file, line: n, value: value}})
	}
	return out
}

// boolValue reads an OpenDKIM/OpenDMARC Boolean: only the first byte
// counts (t, y, 1 are true), as both tools read it; policyd-spf also
// writes "True"/"False".
func boolValue(v string) bool {
	return v != "" && strings.ContainsRune("tTyY1", rune(v[0]))
}

// dataset is an OpenDKIM data set (opendkim.conf(5) "DATA SETS"): a
// comma-separated list, a file, or a regular-expression file.
type dataset struct {
	kind    string // "csl", "file", "refile", or the unsupported type ("db", "ldap"…)
	path    string
	entries []entry
}

// unsupported reports a data set of a type migrate does not read (db:,
// ldap:, lua:…).
func (ds dataset) unsupported() bool {
	return ds.kind != "csl" && ds.kind != "file" && ds.kind != "refile"
}

// entry is one line of a data set: its key, the rest of the line, and
// where it is.
type entry struct {
	key, value string
	at         source
}

// readDataset reads v the way OpenDKIM does: "refile:", "file:", "csl:",
// a path (a leading "/" or "."), or else a comma-separated list. Other
// types (db:, dsn:, ldap:, lua:, memcache:, redis:…) are returned with
// no entries and reported by the caller.
func (r *run) readDataset(v string, at source, base string) (dataset, error) {
	kind, rest, ok := strings.Cut(v, ":")
	if !ok || strings.ContainsAny(kind, "/.") {
		kind, rest = "", v
	}
	switch kind {
	case "":
		if strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, ".") {
			kind = "file"
		} else {
			kind = "csl"
		}
	case "refile", "file", "csl":
	default:
		return dataset{kind: kind, path: rest}, nil
	}
	ds := dataset{kind: kind}
	if kind == "csl" {
		for _, e := range strings.Split(rest, ",") {
			if e = strings.TrimSpace(e); e != "" {
				ds.entries = append(ds.entries, entry{key: e, at: at})
			}
		}
		return ds, nil
	}
	ds.path = rest
	data, err := r.readFile(rest, base)
	if err != nil {
		return ds, fmt.Errorf("%s: %w", at, err)
	}
	ds.entries = readLines(data, filepath.Base(rest))
	return ds, nil
}

// readLines reads a table file: "key [value]" per line, "#" comments.
func readLines(data []byte, file string) []entry {
	var out []entry
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		e := entry{key: f[0], at: source{file: file, line: n + 1}}
		if len(f) > 1 {
			e.value = strings.Join(f[1:], " ")
		}
		out = append(out, e)
	}
	return out
}

// hostEntry turns one OpenDKIM/OpenDMARC host-list entry into the form of
// our host lists (config.ParseHostMatcher), or says why it cannot.
// changed is set when the meaning differs a little.
func hostEntry(e string, regex bool) (out, changed string, err error) {
	e = strings.TrimSpace(e)
	if strings.HasPrefix(e, "!") {
		return "", "", fmt.Errorf("%q: exclusions (\"!\") are not supported: list the hosts to include instead", e)
	}
	if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		e = e[1 : len(e)-1]
	}
	if strings.Contains(e, "*") {
		rest, ok := strings.CutPrefix(e, "*.")
		if !ok || !regex || strings.Contains(rest, "*") {
			return "", "", fmt.Errorf("%q: only \"*.domain\" wildcards can be migrated", e)
		}
		e = "." + rest
		changed = fmt.Sprintf("%q became %q, which also matches %s itself", "*."+rest, e, rest)
	}
	if _, perr := config.ParseHostMatcher(e); perr != nil {
		return "", "", perr
	}
	return e, changed, nil
}

// hostList reads a host-list data set into our entries, noting what
// could not be taken.
func (r *run) hostList(ds dataset, name string, at source) []string {
	var out []string
	for _, e := range ds.entries {
		h, changed, err := hostEntry(e.key, ds.kind == "refile")
		if err != nil {
			r.note(e.at, name, None, "%v", err)
			continue
		}
		if changed != "" {
			r.note(e.at, name, Changed, "%s", changed)
		}
		out = append(out, h)
	}
	return out
}

// mainCF is a parsed Postfix main.cf: parameters with their line.
type mainCF struct {
	file   string
	params map[string]entry
	order  []string
}

func (r *run) readMainCF(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("main.cf: %w", err)
	}
	m := &mainCF{file: filepath.Base(path), params: map[string]entry{}}
	var cur string
	for n, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && cur != "" { // continuation
			e := m.params[cur]
			e.value += " " + strings.TrimSpace(line)
			m.params[cur] = e
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		cur = strings.TrimSpace(k)
		if _, seen := m.params[cur]; !seen {
			m.order = append(m.order, cur)
		}
		m.params[cur] = entry{key: cur, value: strings.TrimSpace(v), at: source{file: m.file, line: n + 1}}
	}
	r.mainCF = m
	return nil
}

// readMasterCF finds the policy services that run policyd-spf and the
// chroot column of smtpd.
func (r *run) readMasterCF(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("master.cf: %w", err)
	}
	r.masterChroots = map[string]string{}
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" || line[0] == '#' || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		start := i
		text := line
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			text += " " + strings.TrimSpace(lines[i])
		}
		f := strings.Fields(text)
		if len(f) < 8 {
			continue
		}
		name, chroot, command := f[0], f[4], f[7]
		if command == "smtpd" {
			r.masterChroots[name] = chroot
		}
		switch {
		case strings.Contains(text, "policyd-spf-perl"):
			r.perlService = name
			r.in.PolicydSPFPerl = true
		case strings.Contains(text, "policyd-spf"):
			r.pySPFService = name
		default:
			continue
		}
		for l := start; l <= i; l++ {
			r.policyLines = append(r.policyLines, l+1)
		}
	}
	return nil
}

// socketFor turns an OpenDKIM/OpenDMARC Socket value into ours: the
// spellings are the same (config.ParseSocket reads both).
func socketFor(v string) (config.Socket, error) {
	return config.ParseSocket(strings.TrimSpace(v))
}
