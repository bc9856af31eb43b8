package migrate

import (
	"fmt"
	"strings"

	"github.com/authmilter/authmilter/internal/config"
)

// postfixSocket is how Postfix's main.cf names our socket; a unix socket
// inside the chroot of smtpd is named relative to it.
func (r *run) postfixSocket() string {
	s := r.listen
	if s.Network == "" {
		s, _ = config.ParseSocket(config.Default().Milter.Listen[0])
	}
	if s.Network == "unix" {
		if p, ok := strings.CutPrefix(s.Address, postfixChroot); ok {
			return "unix:" + p
		}
		return "unix:" + s.Address
	}
	return s.String()
}

// sameSocket reports whether a main.cf milter entry (Postfix's view)
// names the socket s: a unix path inside the chroot is relative to it,
// and localhost is 127.0.0.1.
func sameSocket(entry string, s config.Socket) bool {
	e, err := config.ParseSocket(entry)
	if err != nil {
		return false
	}
	if e == s || (s.Network == "unix" && e.Network == "unix" && s.Address == postfixChroot+e.Address) {
		return true
	}
	sh, sp, _ := strings.Cut(s.Address, ":")
	eh, ep, _ := strings.Cut(e.Address, ":")
	loop := func(h string) bool { return h == "localhost" || h == "127.0.0.1" }
	return s.Network == "tcp" && e.Network == "tcp" && sp == ep && loop(sh) && loop(eh)
}

// oldMilter reports whether a main.cf milter entry is one of the replaced
// filters' sockets.
func (r *run) oldMilter(entry string) bool {
	for _, s := range r.sockets {
		if old, err := socketFor(s.value); err == nil && sameSocket(entry, old) {
			return true
		}
	}
	return false
}

// postfix writes the main.cf and master.cf changes.
func (r *run) postfix() string {
	var b strings.Builder
	ours := r.postfixSocket()
	policySvc := r.perlService
	if policySvc == "" {
		policySvc = r.pySPFService
	}
	b.WriteString("\nPostfix main.cf (then `postfix reload`):\n")
	line := func(k, v, why string) {
		s := fmt.Sprintf("  %s = %s", k, v)
		if why != "" {
			s = fmt.Sprintf("%-48s # %s", s, why)
		}
		b.WriteString(s + "\n")
	}
	m := r.mainCF
	milters := func(param string) {
		if m == nil {
			return
		}
		e, ok := m.params[param]
		if !ok {
			return
		}
		var keep []string
		replaced := false
		for _, x := range strings.FieldsFunc(e.value, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
			if r.oldMilter(x) {
				if !replaced {
					if r.listen.Network != "" && sameSocket(x, r.listen) {
						keep = append(keep, x) // already names our socket
					} else {
						keep = append(keep, ours)
					}
					replaced = true
				}
				continue
			}
			keep = append(keep, x)
		}
		if !replaced && !strings.HasPrefix(e.value, "$") {
			keep = append(keep, ours)
		}
		v := strings.Join(keep, ", ")
		if v == e.value {
			line(param, v, fmt.Sprintf("unchanged (%s)", e.at))
			return
		}
		line(param, v, fmt.Sprintf("was (%s): %s", e.at, e.value))
	}
	if m != nil && m.params["smtpd_milters"].value != "" {
		milters("smtpd_milters")
	} else {
		line("smtpd_milters", ours, "the one milter")
	}
	signing := r.out.vals["signing.enabled"] != nil
	if m != nil && m.params["non_smtpd_milters"].value != "" {
		milters("non_smtpd_milters")
	} else if signing {
		line("non_smtpd_milters", "$smtpd_milters", "mail submitted with sendmail(1) is signed too")
	}
	line("milter_protocol", "6", "")
	line("milter_default_action", "accept", "or tempfail: defer mail while authmilter is down")
	if policySvc != "" {
		check := "check_policy_service unix:private/" + policySvc
		found := false
		if m != nil {
			for _, k := range m.order {
				e := m.params[k]
				if strings.Contains(e.value, check) {
					found = true
					v := strings.Join(strings.Fields(strings.Replace(e.value, check, "", 1)), " ")
					v = strings.Trim(strings.ReplaceAll(v, ", ,", ","), ", ")
					line(k, v, fmt.Sprintf("without %s (%s)", check, e.at))
				}
			}
			if e, ok := m.params[policySvc+"_time_limit"]; ok {
				fmt.Fprintf(&b, "  remove %s = %s (%s): only the policy service used it\n", e.key, e.value, e.at)
			}
		}
		if !found {
			fmt.Fprintf(&b, "  remove \"%s\" from smtpd_recipient_restrictions: authmilter checks SPF\n", check)
		}
	}
	if policySvc != "" || len(r.policyLines) > 0 {
		b.WriteString("\nPostfix master.cf:\n")
		if len(r.policyLines) > 0 {
			fmt.Fprintf(&b, "  remove the service %q (master.cf lines %d-%d): authmilter checks SPF in the milter\n",
				policySvc, r.policyLines[0], r.policyLines[len(r.policyLines)-1])
		} else {
			fmt.Fprintf(&b, "  remove the service %q that runs policyd-spf\n", policySvc)
		}
	}
	if r.listen.Network == "unix" {
		b.WriteString("\nUnix socket:\n")
		if strings.HasPrefix(r.listen.Address, postfixChroot+"/") {
			fmt.Fprintf(&b, "  %s is inside Postfix's chroot (%s), so a chrooted smtpd reaches it as %s.\n", r.listen.Address, postfixChroot, ours)
			fmt.Fprintf(&b, "  systemd: add ReadWritePaths=%s/authmilter to the unit; create the directory owned by authmilter.\n", postfixChroot)
		} else {
			fmt.Fprintf(&b, "  %s is in authmilter's run directory (systemd RuntimeDirectory=authmilter: /run/authmilter; rc.d: /var/run/authmilter).\n", r.listen.Address)
			fmt.Fprintf(&b, "  A chrooted smtpd (master.cf chroot column \"y\"; Debian's default)\n")
			fmt.Fprintf(&b, "  cannot see it: set the smtpd chroot column to \"n\", or use listen = [\"unix:%s/authmilter/authmilter.sock\"].\n", postfixChroot)
			if c, ok := r.masterChroots["smtp"]; ok {
				fmt.Fprintf(&b, "  master.cf here: smtp runs with chroot %q.\n", c)
			}
		}
		b.WriteString("  authmilter must be in group postfix to give the socket to it (systemd: SupplementaryGroups=postfix).\n")
	}
	var stop []string
	if r.tools["OpenDKIM"] {
		stop = append(stop, "opendkim")
	}
	if r.tools["OpenDMARC"] {
		stop = append(stop, "opendmarc")
	}
	if len(stop) > 0 {
		fmt.Fprintf(&b, "\nThen stop and disable %s (systemctl disable --now %s).\n", strings.Join(stop, " and "), strings.Join(stop, " "))
	}
	return b.String()
}
