package dnserr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestIsNotFound(t *testing.T) {
	nx := &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}
	tests := []struct {
		err  error
		want bool
	}{
		{nx, true},
		{fmt.Errorf("lookup: %w", nx), true},
		{&net.DNSError{Err: "server misbehaving", Name: "x.test", IsTemporary: true}, false},
		{&net.DNSError{Err: "i/o timeout", Name: "x.test", IsTimeout: true}, false},
		{context.Canceled, false},
		{errors.New("no such host"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsNotFound(tt.err); got != tt.want {
			t.Errorf("IsNotFound(%v) = %v", tt.err, got)
		}
	}
}

// TestDescribe (issue 19): the words of an A-R comment, never the
// resolver's own addresses.
func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		err        error
		what, name string
		ok         bool
	}{
		{&net.DNSError{Err: "i/o timeout", Name: "x.test.", Server: "127.0.0.1:53", IsTimeout: true}, "DNS timeout", "x.test", true},
		{fmt.Errorf("spf: %w", &net.DNSError{Err: "query refused", Name: "x.test"}), "DNS server refused the query", "x.test", true},
		{&net.DNSError{Err: "server misbehaving", Name: "x.test", IsTemporary: true}, "DNS server failure", "x.test", true},
		{&net.DNSError{Err: "DNS server refused the connection", Name: "x.test"}, "DNS server refused the connection", "x.test", true},
		{&net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, "no such DNS record", "x.test", true},
		{&net.DNSError{Err: "answer truncated over TCP", Name: "x.test"}, "DNS error: answer truncated over TCP", "x.test", true},
		{errors.New("read udp 127.0.0.1:41495->127.0.0.1:53: i/o timeout"), "", "", false},
	} {
		what, name, ok := Describe(tc.err)
		if what != tc.what || name != tc.name || ok != tc.ok {
			t.Errorf("Describe(%v) = %q, %q, %v; want %q, %q, %v", tc.err, what, name, ok, tc.what, tc.name, tc.ok)
		}
	}
}
