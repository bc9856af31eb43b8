package config

import "testing"

// Found by pkg/authres FuzzFormatParse: an authserv_id with a control
// character (NUL, DEL, \x01…) or invalid UTF-8 passed Validate, but
// authres.Format writes it cleaned (as `" "` for "\x00"), so the A-R we add
// would not carry our id and forged fields claiming it would never be
// recognised (RFC 8601 §5). Validate must refuse it.
func TestAuthservIDControlCharacters(t *testing.T) {
	for _, id := range []string{"\x00", "mx\x01.example", "mx.example\x7f", "mx\xff.example", "mx\x1b[0m"} {
		c := Default()
		c.AuthservID = id
		found := false
		for _, e := range c.Validate() {
			found = found || e.Key == "authserv_id"
		}
		if !found {
			t.Errorf("authserv_id %q accepted", id)
		}
	}
}
