package spfcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"
)

// The RFC 7208 test suite (testdata/rfc7208-tests.yml, see testdata/README.md),
// run through a real DNS server and the real resolver.

type suiteDoc struct {
	Description string
	Tests       map[string]suiteCase
	ZoneData    map[string][]map[string]yaml.Node `yaml:"zonedata"`
}

type suiteCase struct {
	Description string
	Spec        strings1
	Helo        string
	Host        string
	MailFrom    string `yaml:"mailfrom"`
	Result      strings1
}

// strings1 is a YAML scalar or a list of scalars.
type strings1 []string

func (s *strings1) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*s = l
		return nil
	}
	var one string
	if err := n.Decode(&one); err != nil {
		return err
	}
	*s = strings1{one}
	return nil
}

func loadSuite(t *testing.T, path string) []suiteDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []suiteDoc
	dec := yaml.NewDecoder(f)
	for {
		var d suiteDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	return docs
}

// txtData writes character-strings in master-file form: split into chunks
// of at most 255 octets, with \" \\ and \DDD escapes (RFC 1035 §5.1).
func txtData(parts []string) string {
	var b strings.Builder
	if len(parts) == 0 {
		parts = []string{""}
	}
	for _, p := range parts {
		for first := true; first || p != ""; first = false {
			chunk := p[:min(len(p), 255)]
			p = p[len(chunk):]
			b.WriteString(` "`)
			for i := 0; i < len(chunk); i++ {
				c := chunk[i]
				switch {
				case c == '"' || c == '\\':
					b.WriteByte('\\')
					b.WriteByte(c)
				case c < ' ' || c > '~':
					fmt.Fprintf(&b, "\\%03d", c)
				default:
					b.WriteByte(c)
				}
			}
			b.WriteString(`"`)
		}
	}
	return b.String()
}

// nameText writes a raw domain name in master-file form, absolute, with
// every octet that is special or not printable as \DDD.
func nameText(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c > '~' || strings.IndexByte(`\\"();@$`, c) >= 0 {
			fmt.Fprintf(&b, "\\%03d", c)
		} else {
			b.WriteByte(c)
		}
	}
	return dns.Fqdn(b.String())
}

// zoneFor converts a suite's zonedata into zone text, plus the names that
// must time out. The conversion follows the suite's own harness (pyspf):
//   - TXT "NONE" means no TXT record (and stops the SPF→TXT rule below);
//   - SPF records are served as TXT when the name has no TXT entry: the
//     SPF RR type is obsolete (RFC 7208 §3.1, §14.1) and never queried;
//   - TIMEOUT times out the types the name has no records for. dnstest
//     drops whole names, so a name is dropped only when it has no records;
//     otherwise the types it lacks answer NODATA (only the spftimeout case,
//     whose timeout is on the SPF type we never ask, depends on this);
//   - CNAMELOOP (this copy's stand-in for a CNAME to itself) is served as
//     that CNAME loop.
func zoneFor(zd map[string][]map[string]yaml.Node) (string, []string, error) {
	var b strings.Builder
	var drop []string
	names := make([]string, 0, len(zd))
	for n := range zd {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		owner := nameText(name)
		var spf [][]string
		hasTXT, hasData, timeout := false, false, false
		for _, rec := range zd[name] {
			for typ, node := range rec {
				var v strings1
				if node.Kind != yaml.MappingNode && typ != "MX" {
					if err := node.Decode(&v); err != nil {
						return "", nil, fmt.Errorf("%s %s: %w", name, typ, err)
					}
				}
				switch typ {
				case "TXT":
					hasTXT = true
					if len(v) == 1 && v[0] == "NONE" {
						continue
					}
					fmt.Fprintf(&b, "%s 300 IN TXT%s\n", owner, txtData(v))
					hasData = true
				case "SPF":
					spf = append(spf, v)
				case "A", "AAAA":
					for _, a := range v {
						fmt.Fprintf(&b, "%s 300 IN %s %s\n", owner, typ, a)
					}
					hasData = true
				case "PTR":
					for _, p := range v {
						fmt.Fprintf(&b, "%s 300 IN PTR %s\n", owner, nameText(p))
					}
					hasData = true
				case "CNAME":
					fmt.Fprintf(&b, "%s 300 IN CNAME %s\n", owner, nameText(v[0]))
					hasData = true
				case "CNAMELOOP":
					fmt.Fprintf(&b, "%s 300 IN CNAME %s\n", owner, owner)
					hasData = true
				case "MX":
					var mx []any
					if err := node.Decode(&mx); err != nil || len(mx) != 2 {
						return "", nil, fmt.Errorf("%s MX: %v", name, node.Value)
					}
					fmt.Fprintf(&b, "%s 300 IN MX %v %s\n", owner, mx[0], nameText(fmt.Sprint(mx[1])))
					hasData = true
				case "TIMEOUT":
					timeout = true
				default:
					return "", nil, fmt.Errorf("%s: unknown record type %s", name, typ)
				}
			}
		}
		if !hasTXT {
			for _, s := range spf {
				fmt.Fprintf(&b, "%s 300 IN TXT%s\n", owner, txtData(s))
				hasData = true
			}
		}
		if timeout && !hasData {
			drop = append(drop, owner)
		}
	}
	return b.String(), drop, nil
}

func resultIn(got Status, want []string) bool {
	return slices.Contains(want, string(got))
}

func TestRFC7208Suite(t *testing.T) {
	docs := loadSuite(t, "testdata/rfc7208-tests.yml")
	var skips map[string]string
	raw, err := os.ReadFile("testdata/skips.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &skips); err != nil {
		t.Fatalf("skips.yml: %v", err)
	}

	seen := map[string]bool{}
	var run, passed, known int
	for _, doc := range docs {
		zone, drop, err := zoneFor(doc.ZoneData)
		if err != nil {
			t.Fatalf("%s: %v", doc.Description, err)
		}
		srv := dnstest.New(t, zone)
		for _, n := range drop {
			srv.Drop(n)
		}
		res, err := resolver.New(resolver.Config{
			Servers:  []string{srv.Addr()},
			Timeout:  300 * time.Millisecond, // TIMEOUT names cost this much
			Attempts: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(doc.Tests))
		for n := range doc.Tests {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := doc.Tests[name]
			if seen[name] {
				t.Fatalf("case name %q is not unique", name)
			}
			seen[name] = true
			run++
			ip := net.ParseIP(tc.Host)
			out := CheckMailFrom(context.Background(), res, ip, tc.Helo, tc.MailFrom, nil)
			ok := resultIn(out.Status, tc.Result)
			reason, listed := skips[name]
			switch {
			case ok && listed:
				t.Errorf("%s: passes now (%s) but skips.yml lists it (%s): remove it", name, out.Status, reason)
			case ok:
				passed++
			case listed:
				known++
				t.Logf("%s: known failure: got %s, want %v: %s", name, out.Status, tc.Result, reason)
			default:
				t.Errorf("%s (%s, spec %v): got %s (%s; %v), want %v\n  helo=%q host=%s mailfrom=%q",
					name, doc.Description, tc.Spec, out.Status, out.Reason, out.Err, tc.Result,
					tc.Helo, tc.Host, tc.MailFrom)
			}
		}
	}
	for name := range skips {
		if !seen[name] {
			t.Errorf("skips.yml names %q, which is not a case of the suite", name)
		}
	}
	t.Logf("RFC 7208 suite: %d cases run, %d passed, %d known failures listed in testdata/skips.yml", run, passed, known)
}
