package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/authmilter/authmilter/internal/migrate"
)

func cmdMigrate(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var in migrate.Inputs
	fl.StringVar(&in.OpenDKIM, "opendkim", "", "opendkim.conf to migrate")
	fl.StringVar(&in.OpenDMARC, "opendmarc", "", "opendmarc.conf to migrate")
	fl.StringVar(&in.PolicydSPF, "policyd-spf", "", "policyd-spf.conf (the Python policyd-spf) to migrate")
	fl.BoolVar(&in.PolicydSPFPerl, "policyd-spf-perl", false, "postfix-policyd-spf-perl is in use (also found in -master-cf)")
	fl.StringVar(&in.MainCF, "main-cf", "", "Postfix main.cf: its milter and policy lines are rewritten in the report")
	fl.StringVar(&in.MasterCF, "master-cf", "", "Postfix master.cf: finds the policyd-spf service")
	fl.StringVar(&in.User, "user", "authmilter", "the user authmilter will run as (key files are checked against it)")
	fl.StringVar(&in.Root, "root", "", "read the absolute paths named in the files below this directory (a copy of the old server's files)")
	out := fl.String("out", "", "write the TOML here (refuses to overwrite) and the report to standard output; default: TOML to standard output, report to standard error")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: authmilter migrate [-opendkim FILE] [-opendmarc FILE] [-policyd-spf FILE | -policyd-spf-perl]\n"+
			"                          [-main-cf FILE] [-master-cf FILE] [-user NAME] [-root DIR] [-out FILE]")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fl.Usage()
		return 2
	}
	res, err := migrate.Run(in)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter migrate:", err)
		return 1
	}
	report := stderr
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			fmt.Fprintln(stderr, "authmilter migrate:", err)
			return 1
		}
		_, err = io.WriteString(f, res.TOML)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintln(stderr, "authmilter migrate:", err)
			return 1
		}
		report = stdout
	} else {
		io.WriteString(stdout, res.TOML)
	}
	io.WriteString(report, res.Report)
	return 0
}
