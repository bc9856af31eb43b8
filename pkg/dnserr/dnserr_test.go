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
