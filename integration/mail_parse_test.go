package integration

import (
	"reflect"
	"testing"
)

// TestParseAR checks the suite's own Authentication-Results reader, which
// every case relies on (RFC 8601 §2.2 syntax, comments per RFC 5322 §3.2.2).
func TestParseAR(t *testing.T) {
	cases := []struct {
		in     string
		servID string
		want   []arResult
	}{
		{" mx.rcpt.test; none", "mx.rcpt.test", nil},
		{" mx.rcpt.test;\n\tspf=pass smtp.mailfrom=a@sender.test", "mx.rcpt.test",
			[]arResult{{"spf", "pass", map[string]string{"smtp.mailfrom": "a@sender.test"}}}},
		{" (c) mx.rcpt.test 1; dkim=pass (2048-bit key; \"q\") header.d=d.test header.s=sel;\n dmarc = fail (p=reject) header.from=d.test policy.dmarc=reject",
			"mx.rcpt.test", []arResult{
				{"dkim", "pass", map[string]string{"header.d": "d.test", "header.s": "sel"}},
				{"dmarc", "fail", map[string]string{"header.from": "d.test", "policy.dmarc": "reject"}},
			}},
		{" x.test; spf=pass smtp.mailfrom=\"quoted\"", "x.test",
			[]arResult{{"spf", "pass", map[string]string{"smtp.mailfrom": "quoted"}}}},
		{" x.test; spf=none smtp.mailfrom=\"a;b\"@x.test", "x.test",
			[]arResult{{"spf", "none", map[string]string{"smtp.mailfrom": "\"a;b\"@x.test"}}}},
	}
	for _, c := range cases {
		ar, err := parseAR(c.in)
		if err != nil {
			t.Errorf("parseAR(%q): %v", c.in, err)
			continue
		}
		if ar.ServID != c.servID || !reflect.DeepEqual(ar.Results, c.want) {
			t.Errorf("parseAR(%q) = %q %+v, want %q %+v", c.in, ar.ServID, ar.Results, c.servID, c.want)
		}
	}
	if _, err := parseAR(" mx.rcpt.test; spf"); err == nil {
		t.Error("resinfo without a result accepted")
	}
}

func TestParseMessage(t *testing.T) {
	d := parseMessage("Return-Path: <a@b>\nAuthentication-Results: mx.rcpt.test;\n\tspf=pass\nSubject: x\n\nbody\n")
	want := []field{{"Return-Path", " <a@b>"}, {"Authentication-Results", " mx.rcpt.test;\n\tspf=pass"}, {"Subject", " x"}}
	if !reflect.DeepEqual(d.Header, want) || d.Body != "body\n" {
		t.Errorf("got %+v body %q", d.Header, d.Body)
	}
	if top := d.topField(); top.Name != "Authentication-Results" {
		t.Errorf("top field %q", top.Name)
	}
}
