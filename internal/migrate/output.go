package migrate

import (
	"bytes"
	"fmt"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"

	"github.com/authmilter/authmilter/internal/config"
)

// output is the authmilter configuration being written: the options set,
// each with where it came from.
type output struct {
	vals  map[string]*val
	order []string
	keys  []keyDef
	rules []ruleDef
}

type val struct {
	v   any // string, bool, int or []string
	why []string
}

func newOutput() *output { return &output{vals: map[string]*val{}} }

func (o *output) get(key string) *val {
	v, ok := o.vals[key]
	if !ok {
		v = &val{}
		o.vals[key] = v
		o.order = append(o.order, key)
	}
	return v
}

func why(at source, what string) string {
	if at.line == 0 && at.value != "" && what != "" { // a default of the old tool
		return fmt.Sprintf("%s: %s not set (its default: %s)", at.file, what, at.value)
	}
	if at.line == 0 {
		if what == "" {
			return at.file
		}
		return fmt.Sprintf("%s: %s", at.file, what)
	}
	if what == "" {
		return at.String()
	}
	return fmt.Sprintf("%s %s", at, what)
}

// set sets key to v (the last setting wins, as in the tools' files).
func (o *output) set(key string, v any, at source, what string) {
	x := o.get(key)
	x.v = v
	if w := why(at, what); w != "" {
		x.why = append(x.why, w)
	}
}

// add appends entries to a list option, without duplicates.
func (o *output) add(key string, vs []string, at source, what string) {
	x := o.get(key)
	l, _ := x.v.([]string)
	have := map[string]bool{}
	for _, s := range l {
		have[s] = true
	}
	for _, s := range vs {
		if !have[s] {
			l = append(l, s)
			have[s] = true
		}
	}
	if l == nil {
		l = []string{}
	}
	x.v = l
	x.why = append(x.why, why(at, what))
}

func (o *output) strings(key string) []string {
	if x, ok := o.vals[key]; ok {
		l, _ := x.v.([]string)
		return l
	}
	return nil
}

// sections in the order of config.example.toml.
var sections = []string{"", "milter", "dns", "log", "policy", "spf", "dkim", "dmarc", "store", "report", "signing", "failure_reports"}

func (o *output) toml(header string) string {
	var b strings.Builder
	b.WriteString(header)
	for _, sec := range sections {
		var keys []string
		for _, k := range o.order {
			s, _, ok := strings.Cut(k, ".")
			if (sec == "" && !ok) || (ok && s == sec) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 && !(sec == "signing" && len(o.keys) > 0) {
			continue
		}
		if sec != "" {
			fmt.Fprintf(&b, "\n[%s]\n", sec)
		} else {
			b.WriteString("\n")
		}
		for _, k := range keys {
			x := o.vals[k]
			for _, w := range x.why {
				fmt.Fprintf(&b, "# from %s\n", commentText(w))
			}
			fmt.Fprintf(&b, "%s = %s\n", strings.TrimPrefix(k, sec+"."), tomlValue(x.v))
		}
	}
	for _, k := range o.keys {
		fmt.Fprintf(&b, "\n# from %s\n[[signing.keys]]\nname = %s\ndomain = %s\nselector = %s\nfile = %s\n",
			commentText(k.at.String()), tomlValue(k.name), tomlValue(k.domain), tomlValue(k.selector), tomlValue(k.file))
	}
	for _, rl := range o.rules {
		fmt.Fprintf(&b, "\n# from %s\n[[signing.rules]]\npattern = %s\nkeys = %s\n", commentText(rl.at.String()), tomlValue(rl.pattern), tomlValue(rl.keys))
	}
	return b.String()
}

// tomlValue writes a string, bool, int or string list in TOML.
func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		var b strings.Builder
		b.WriteByte('"')
		for _, c := range x {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteRune(c)
			case c < 0x20 || c == 0x7f:
				fmt.Fprintf(&b, "\\u%04X", c)
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case []string:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = tomlValue(e)
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	panic(fmt.Sprintf("migrate: no TOML form for %T", v))
}

// check decodes the written TOML as the daemon does and validates it,
// leaving out the key files (they are checked, with the run user, in the
// report). It returns the problems, one per line.
func check(text string) []string {
	c := config.Default()
	d := toml.NewDecoder(bytes.NewReader([]byte(text)))
	d.DisallowUnknownFields()
	if err := d.Decode(c); err != nil {
		return []string{err.Error()}
	}
	c.Signing.Enabled = false // the key files are checked in the report
	group := c.Milter.SocketGroup
	c.Milter.SocketGroup = "" // checked below, with groupExists
	var out []string
	for _, e := range c.Validate() {
		out = append(out, e.Error())
	}
	if group != "" && !groupExists(group) {
		out = append(out, fmt.Sprintf("milter.socket_group: there is no group %q on this machine (run migrate on the mail server; Postfix creates the group postfix)", group))
	}
	return out
}

// groupExists reports whether a group exists here; tests replace it so
// that the golden files do not depend on the machine.
var groupExists = func(name string) bool {
	_, err := user.LookupGroup(name)
	return err == nil
}

// report writes what happened to every option, the key file checks and
// the Postfix changes.
func (r *run) report() string {
	var b strings.Builder
	b.WriteString("authmilter migrate report\n\nRead:")
	for _, f := range []string{r.in.OpenDKIM, r.in.OpenDMARC, r.in.PolicydSPF, r.in.MainCF, r.in.MasterCF} {
		if f != "" {
			b.WriteString(" " + f)
		}
	}
	if r.in.PolicydSPFPerl {
		b.WriteString(" (postfix-policyd-spf-perl)")
	}
	b.WriteString("\n")
	for _, k := range []struct {
		kind  Kind
		title string
	}{{Mapped, "Mapped"}, {Changed, "Changed in meaning"}, {None, "No equivalent (not migrated)"}} {
		var lines []string
		for _, h := range r.hits {
			if h.kind == k.kind {
				lines = append(lines, fmt.Sprintf("  %-22s %s: %s", h.at.String(), h.name, h.text))
			}
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n%s\n", k.title, strings.Join(lines, "\n"))
	}
	if len(r.keyFiles) > 0 {
		fmt.Fprintf(&b, "\nKey files (authmilter will run as user %q):\n", r.in.User)
		files := append([]string(nil), r.keyFiles...)
		sort.Strings(files)
		for i, f := range files {
			if i > 0 && files[i-1] == f {
				continue
			}
			p := r.keyCheck(f)
			if len(p) == 0 {
				fmt.Fprintf(&b, "  %s: ok\n", f)
				continue
			}
			for _, s := range p {
				fmt.Fprintf(&b, "  %s: %s\n", f, s)
			}
		}
	}
	b.WriteString(r.postfix())
	if problems := check(r.out.toml("")); len(problems) > 0 {
		b.WriteString("\nThe written configuration has problems (fix them before starting):\n")
		for _, p := range problems {
			b.WriteString("  " + p + "\n")
		}
	} else {
		b.WriteString("\nThe written configuration passes authmilter check-config (the key files are checked above).\n")
	}
	return b.String()
}

// decodes reports whether text is TOML our decoder reads into a Config.
func decodes(text string) bool {
	d := toml.NewDecoder(bytes.NewReader([]byte(text)))
	d.DisallowUnknownFields()
	return d.Decode(config.Default()) == nil
}

// commentText makes text from the migrated files safe inside a TOML
// comment, which may hold no control character and only valid UTF-8 (TOML
// 1.0 §Comment): each such byte is written as \xNN, so the postmaster
// still sees what was there.
func commentText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (r < 0x20 && r != '\t') || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02X", s[i])
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String()
}
