// Package dnserr holds the one reading of a DNS error that every check
// shares: whether it proves that there is no such record. The resolver
// (internal/resolver) and any other the checks accept return
// *net.DNSError values: IsNotFound for NXDOMAIN and NODATA, anything else
// (SERVFAIL, a timeout, a cancelled context) is a failure that proves
// nothing.
package dnserr

import (
	"errors"
	"net"
)

// IsNotFound reports whether err is (or wraps) a *net.DNSError saying the
// name or the record does not exist. Any other error, nil included, is not.
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
