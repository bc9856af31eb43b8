// Package dnserr holds the one reading of a DNS error that every check
// shares: whether it proves that there is no such record, and how it is
// said in a header comment. The resolver
// (internal/resolver) and any other the checks accept return
// *net.DNSError values: IsNotFound for NXDOMAIN and NODATA, anything else
// (SERVFAIL, a timeout, a cancelled context) is a failure that proves
// nothing.
package dnserr

import (
	"errors"
	"net"
	"strings"
)

// IsNotFound reports whether err is (or wraps) a *net.DNSError saying the
// name or the record does not exist. Any other error, nil included, is not.
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Describe says what went wrong with a lookup in a postmaster's words,
// for Authentication-Results comments: "DNS timeout", "DNS server refused
// the query", "DNS server failure", and the name that was asked. It
// leaves out the server and socket addresses that net.DNSError's own text
// carries ("lookup x on 127.0.0.1:53: read udp 127.0.0.1:41495->…"), which
// mean nothing to the reader of a header (issue 19). ok is false for an
// error that is not a DNS error.
func Describe(err error) (what, name string, ok bool) {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return "", "", false
	}
	what = "DNS error"
	switch {
	case de.IsTimeout:
		what = "DNS timeout"
	case de.IsNotFound:
		what = "no such DNS record"
	case de.Err == "query refused":
		what = "DNS server refused the query"
	case de.Err == "server misbehaving": // SERVFAIL, in net.Resolver's words
		what = "DNS server failure"
	case strings.HasPrefix(de.Err, "DNS "):
		what = de.Err
	case de.Err != "":
		what = "DNS error: " + de.Err
	}
	return what, strings.TrimSuffix(de.Name, "."), true
}
