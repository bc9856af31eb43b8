package authres

import (
	"strings"
	"testing"

	gomsgauth "github.com/emersion/go-msgauth/authres"
)

// msgauthID is the authserv-id go-msgauth's authres.Parse reads, "" when
// it reads none.
func msgauthID(v string) string {
	id, _, err := gomsgauth.Parse(v)
	if err != nil && id == "" {
		return ""
	}
	return id
}

// readsAsOurs: a Go consumer compares the id go-msgauth returns with its
// own case-insensitively (strings.EqualFold), a trailing dot aside.
func readsAsOurs(v, ours string) bool {
	id := msgauthID(v)
	return id != "" && strings.EqualFold(strings.TrimSuffix(id, "."), ours)
}

// Issue #15 item 7: a forged field hidden behind characters other readers
// take for white space. Each forged variant is read as carrying our id by
// go-msgauth (asserted, so the table shows what the rule derives from) or
// by the RFC 8601 reading; all must be recognised. Look-alikes must not.
func TestSameServIDOtherReaders(t *testing.T) {
	const ours = "mx.rcpt.test"
	forged := []struct {
		name, v string
		msgauth bool // go-msgauth reads our id
	}{
		{"VT before", "\v" + ours + "; dmarc=pass header.from=bank.example", true},
		{"VT after", " " + ours + "\v; dmarc=pass header.from=bank.example", true},
		{"FF before", "\f" + ours + "; dmarc=pass", true},
		{"FF after", " " + ours + "\f; dmarc=pass", true},
		{"NBSP before", "\u00a0" + ours + "; dmarc=pass", true},
		{"NBSP after", " " + ours + "\u00a0; dmarc=pass", true},
		{"NEL before", "\u0085" + ours + "; dmarc=pass", true},
		{"NEL after", " " + ours + "\u0085; dmarc=pass", true},
		{"ideographic space", "\u3000" + ours + "\u3000; dmarc=pass", true},
		{"em space and thin space", "\u2003" + ours + "\u2009; dmarc=pass", true},
		{"line separator", "\u2028" + ours + "; dmarc=pass", true},
		{"NBSP then version", " " + ours + "\u00a01; dmarc=pass", true},
		{"VT then version", " " + ours + "\v1; dmarc=pass", true},
		{"CR alone", "\r" + ours + "; dmarc=pass", true},
		{"Kelvin sign for k", " mx.rcpt.tes\u212a" + "t; dmarc=pass", false}, // no k in ours: see below
		{"zero-width space before", "\u200b" + ours + "; dmarc=pass", false},
		{"BOM before", "\ufeff" + ours + "; dmarc=pass", false},
		{"NUL before", "\x00" + ours + "; dmarc=pass", false},
		{"comment with NBSP inside", " (x\u00a0y)\u00a0" + ours + "; dmarc=pass", false},
		{"plain", " " + ours + "; dmarc=pass", true},
	}
	for _, tt := range forged {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "Kelvin sign for k" {
				// An id with a k: the Kelvin sign folds to it in Go's
				// EqualFold and in Perl's lc.
				const withK = "mx.bank.test"
				v := " mx.ban\u212a.test; dmarc=pass"
				if !readsAsOurs(v, withK) || !SameServID(v, withK) {
					t.Errorf("%q: go-msgauth reads ours %v, SameServID %v", v, readsAsOurs(v, withK), SameServID(v, withK))
				}
				return
			}
			if got := readsAsOurs(tt.v, ours); got != tt.msgauth {
				t.Errorf("go-msgauth reads %q as ours: %v, table says %v (id %q)", tt.v, got, tt.msgauth, msgauthID(tt.v))
			}
			if !SameServID(tt.v, ours) {
				t.Errorf("forged %q not recognised", tt.v)
			}
		})
	}
	for _, v := range []string{
		" " + ours + ".evil; dmarc=pass",
		" evil." + ours + "; dmarc=pass",
		" " + ours + "x; dmarc=pass",
		" mx.rcpt\u200b.test; dmarc=pass", // no reader sees our id
		" other.example; dmarc=pass (" + ours + ")",
		" other.example; dmarc=pass smtp.mailfrom=" + ours,
	} {
		if SameServID(v, ours) || readsAsOurs(v, ours) {
			t.Errorf("look-alike %q taken for ours (go-msgauth id %q)", v, msgauthID(v))
		}
	}
}

// FuzzServIDGoMsgauth is the differential check the rule comes from:
// whatever field go-msgauth's authres.Parse reads as carrying our id,
// SameServID recognises, so the milter removes it.
func FuzzServIDGoMsgauth(f *testing.F) {
	for _, s := range []string{
		"\vmx.rcpt.test; dmarc=pass", " mx.rcpt.test\u00a0; x=y", "\u0085mx.rcpt.test 1;", " MX.RCPT.TEST.; none",
		" (c) mx.rcpt.test; spf=pass", "mx.rcpt.test", "\u2003mx.rcpt.test\u2003", " mx.rcpt.tes\u212at;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, ours := range []string{"mx.rcpt.test", "mx.bank.test"} {
			if readsAsOurs(v, ours) && !SameServID(v, ours) {
				t.Fatalf("go-msgauth reads %q as carrying %q (id %q); SameServID does not", v, ours, msgauthID(v))
			}
		}
	})
}
