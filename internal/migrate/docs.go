package migrate

import (
	"fmt"
	"regexp"
	"strings"
)

// Markdown is the migration table of one tool for docs/operations.md:
// every option, what it becomes and how, or why it has no equivalent.
// Options in a row share their target and note.
func (t *Tool) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s | authmilter | |\n|---|---|---|\n", t.Name)
	opts := t.Options
	for i := 0; i < len(opts); {
		j := i + 1
		for j < len(opts) && opts[j].Target == opts[i].Target && opts[j].Note == opts[i].Note && opts[j].Kind == opts[i].Kind {
			j++
		}
		names := make([]string, 0, j-i)
		for _, o := range opts[i:j] {
			names = append(names, "`"+o.Name+"`")
		}
		o := opts[i]
		target := "no equivalent"
		if o.Target != "" {
			target = code(o.Target)
		} else if o.Kind != None {
			target = "built in"
		}
		note := o.Note
		if o.Kind == Changed {
			note = "**changed:** " + note
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.Join(names, ", "), target, cell(note))
		i = j
	}
	return b.String()
}

// Summary is README's table: the options of every tool that have an
// equivalent.
func Summary() string {
	var b strings.Builder
	b.WriteString("| tool | option | authmilter |\n|---|---|---|\n")
	for _, t := range Tools {
		for _, o := range t.Options {
			if o.Target == "" || o.Kind == None {
				continue
			}
			target := code(o.Target)
			if o.Kind == Changed {
				target += " (changed)"
			}
			fmt.Fprintf(&b, "| %s | `%s` | %s |\n", t.Name, o.Name, target)
		}
	}
	b.WriteString("| postfix-policyd-spf-perl | reject on fail, `PREPEND Received-SPF` | `spf.fail_action = \"reject\"`, `spf.received_spf_header = true` |\n")
	return b.String()
}

// code puts each comma-separated option name in backquotes.
func code(s string) string {
	parts := strings.Split(s, ", ")
	for i, p := range parts {
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, ", ")
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// block matches a generated block in a Markdown file:
// <!-- migrate:NAME --> … <!-- /migrate -->.
var block = regexp.MustCompile(`(?s)(<!-- migrate:([a-z-]+) -->\n).*?(<!-- /migrate -->)`)

// Generated returns the text of the generated block NAME: "summary" or a
// tool's file name without ".conf" ("opendkim", "opendmarc",
// "policyd-spf").
func Generated(name string) (string, bool) {
	if name == "summary" {
		return Summary(), true
	}
	for _, t := range Tools {
		if strings.TrimSuffix(t.File, ".conf") == name {
			return t.Markdown(), true
		}
	}
	return "", false
}

// UpdateDoc rewrites every generated block of a Markdown text.
func UpdateDoc(text string) (string, error) {
	var err error
	out := block.ReplaceAllStringFunc(text, func(m string) string {
		sub := block.FindStringSubmatch(m)
		g, ok := Generated(sub[2])
		if !ok {
			err = fmt.Errorf("unknown generated block %q", sub[2])
			return m
		}
		return sub[1] + g + sub[3]
	})
	return out, err
}
