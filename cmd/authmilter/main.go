// Command authmilter is the inbound mail-authentication milter: SPF, DKIM
// and DMARC in one daemon, one Authentication-Results header.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// the module version or VCS revision from the build info is used.
var version = ""

const usage = `usage: authmilter <command> [options]

commands:
  serve [-config FILE]     run the milter (embedded defaults without -config)
  check-config FILE        validate a configuration file and exit
  verify [options] FILE    evaluate one message offline and explain the results
  report [-config FILE] [-dry-run] [-out DIR] [-period D]
                           send the DMARC aggregate reports of closed periods once
  reports import [-config FILE] FILE|DIR|-
                           read incoming aggregate reports (files, a Maildir, an mbox)
  reports summary [-config FILE] [-domain D] [-since 30d|DATE]
                           what reporters say about your domains, per domain and source
  healthcheck [-config FILE | -addr SOCKET]
                           exit 0 if the milter answers on its (first) socket
  keygen --domain D --selector S [--type rsa|ed25519] [--bits N] [--out DIR]
                           make a DKIM key and print the TXT record to publish
  check-dns DOMAIN [--selector S] [--key FILE] [--ip ADDR] [--json] [-config FILE]
                           check a domain's SPF, DKIM, DMARC (and ADSP) records
  migrate [-opendkim FILE] [-opendmarc FILE] [-policyd-spf FILE | -policyd-spf-perl]
          [-main-cf FILE] [-master-cf FILE] [-user NAME] [-out FILE]
                           write an authmilter configuration from OpenDKIM, OpenDMARC
                           and policyd-spf ones, with a report and the Postfix changes
  version                  print the version

Run "authmilter <command> -h" for the options of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "reports":
		return cmdReports(args[1:], stdinOf, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(args[1:], stdout, stderr)
	case "keygen":
		return cmdKeygen(args[1:], stdout, stderr)
	case "check-dns":
		return cmdCheckDNS(args[1:], stdout, stderr)
	case "migrate":
		return cmdMigrate(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "authmilter", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "authmilter: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = "devel-" + s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v + " " + bi.GoVersion
}
