package archeck

import "testing"

// Check must catch each way go-msgauth misreads a field, or it proves
// nothing where it runs (testmilter.Send, pkg/authres).
func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		v  string
		ok bool
	}{
		{" mx; spf=pass smtp.mailfrom=a@b.example", true},
		{" mx;\r\n\tdkim=pass (2048-bit key) header.d=b.example header.s=sel;\r\n\tdmarc=pass (p=REJECT, SPF aligned (smtp.mailfrom=b.example)) header.from=b.example", true},
		{" mx; none", true},
		{" mx; dmarc=fail (p=REJECT; x) header.from=b.example", false},         // ';' in a comment ends the result
		{` mx; spf=none smtp.helo="a b"`, false},                               // quoting unknown to go-msgauth
		{" mx; dkim=fail (x header.i=@v.example) header.d=b.example", false},   // a property inside a comment
		{" mx; arc=pass header.oldest-pass=0", false},                          // go-msgauth refuses it
		{" mx; spf=pass smtp.mailfrom=a@b.example; dkim=pass header.d=", true}, // empty values read alike
	} {
		if err := Check(tt.v); (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.v, err, tt.ok)
		}
	}
}
