// Package migrate turns the configuration of an OpenDKIM + OpenDMARC +
// policyd-spf installation into authmilter's: the TOML file, a report of
// what was mapped, what changed in meaning and what has no equivalent
// (with the reason), the checks of the signing key files, and the Postfix
// main.cf/master.cf changes. What each option of each tool becomes is data
// (mapping.go); the migration tables of README.md and docs/operations.md
// are generated from the same data (docs.go).
package migrate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/authmilter/authmilter/internal/config"
)

// Inputs are the files of the installation being replaced. Every path may
// be empty.
type Inputs struct {
	OpenDKIM   string // opendkim.conf
	OpenDMARC  string // opendmarc.conf
	PolicydSPF string // the Python policyd-spf.conf
	// PolicydSPFPerl says postfix-policyd-spf-perl is in use (it has no
	// configuration file; a master.cf that runs it says so too).
	PolicydSPFPerl bool
	MainCF         string // Postfix main.cf, to rewrite its milter lines
	MasterCF       string // Postfix master.cf, to find the policy service
	// User is the account authmilter will run as; the key files are
	// checked against it. Empty: "authmilter".
	User string
	// Root, when set, is where the absolute paths named inside the files
	// (KeyTable, key files, IgnoreHosts…) are read from: a copy of the old
	// server's /etc.
	Root string
}

// Result is what a migration produces.
type Result struct {
	TOML   string // the authmilter configuration, commented
	Report string // mapped / changed / not mapped, key files, Postfix
}

// Run migrates the inputs. An error means an input could not be read at
// all; everything else (options without equivalent, unreadable key files)
// is in the report.
func Run(in Inputs) (*Result, error) {
	if in.User == "" {
		in.User = "authmilter"
	}
	r := &run{in: in, out: newOutput()}
	if in.OpenDKIM == "" && in.OpenDMARC == "" && in.PolicydSPF == "" && !in.PolicydSPFPerl && in.MasterCF == "" {
		return nil, fmt.Errorf("nothing to migrate: give at least one of opendkim.conf, opendmarc.conf, policyd-spf.conf, master.cf")
	}
	if in.MasterCF != "" {
		if err := r.readMasterCF(in.MasterCF); err != nil {
			return nil, err
		}
	}
	if in.MainCF != "" {
		if err := r.readMainCF(in.MainCF); err != nil {
			return nil, err
		}
	}
	for _, t := range []struct {
		path string
		tool *Tool
	}{{in.OpenDKIM, &OpenDKIM}, {in.OpenDMARC, &OpenDMARC}, {in.PolicydSPF, &PolicydSPF}} {
		if t.path == "" {
			continue
		}
		if err := r.apply(t.tool, t.path); err != nil {
			return nil, err
		}
	}
	if r.in.PolicydSPFPerl {
		r.applyPerl()
	}
	r.finish()
	return &Result{TOML: r.out.toml(r.header()), Report: r.report()}, nil
}

// run is the state of one migration.
type run struct {
	in   Inputs
	out  *output
	hits []hit // what each option of the inputs became, in file order

	tools map[string]bool // tools whose file was read
	// Collected across the tools, decided in finish.
	dkimMode      string // OpenDKIM Mode; "" without opendkim.conf
	sockets       []source
	peerHosts     []string // PeerList / skip_addresses entries (not OpenDMARC's)
	dmarcIgnored  bool     // OpenDMARC IgnoreHosts (or its default) was applied
	keyFiles      []string // key files named, for the checks
	perlService   string   // master.cf service running postfix-policyd-spf-perl
	pySPFService  string   // master.cf service running the Python policyd-spf
	policyLines   []int    // master.cf lines of those services
	mainCF        *mainCF
	masterChroots map[string]string // master.cf: service -> chroot column of smtpd
	signingKeys   []keyDef
	signingRules  []ruleDef
	multipleSigs  bool
	singleDomain  *singleDomain
	tableSeen     bool          // KeyTable or SigningTable given
	base          string        // BaseDirectory of the file being read
	peerFrom      []source      // where each peerHosts entry came from
	listen        config.Socket // the socket chosen; zero: the default
}

// source is where a value came from: file base name and line.
type source struct {
	file  string
	line  int
	value string
}

func (s source) String() string {
	if s.line == 0 {
		return s.file
	}
	return fmt.Sprintf("%s:%d", s.file, s.line)
}

// hit is one option found in an input and what it became.
type hit struct {
	at   source
	name string
	kind Kind
	text string
}

func (r *run) note(at source, name string, kind Kind, format string, args ...any) {
	r.hits = append(r.hits, hit{at: at, name: name, kind: kind, text: fmt.Sprintf(format, args...)})
}

// path resolves a path named inside an input: relative to base (OpenDKIM's
// and OpenDMARC's BaseDirectory), then under Root.
func (r *run) path(p, base string) string {
	if !filepath.IsAbs(p) && base != "" {
		p = filepath.Join(base, p)
	}
	if r.in.Root != "" && filepath.IsAbs(p) {
		return filepath.Join(r.in.Root, p)
	}
	return p
}

func (r *run) readFile(p, base string) ([]byte, error) {
	return os.ReadFile(r.path(p, base))
}

func (r *run) header() string {
	var b strings.Builder
	b.WriteString("# authmilter configuration written by `authmilter migrate` from:\n")
	for _, f := range []string{r.in.OpenDKIM, r.in.OpenDMARC, r.in.PolicydSPF} {
		if f != "" {
			fmt.Fprintf(&b, "#   %s\n", commentText(filepath.Base(f)))
		}
	}
	if r.in.PolicydSPFPerl {
		b.WriteString("#   postfix-policyd-spf-perl (its fixed behaviour)\n")
	}
	b.WriteString("# Only the options that differ from authmilter's defaults are set; each says\n" +
		"# where it came from. config.example.toml documents every option. Check it with\n" +
		"#   authmilter check-config FILE\n")
	return b.String()
}
