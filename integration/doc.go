// Package integration is the end-to-end suite: it runs the authmilter binary
// built from this checkout behind a private Postfix instance and a loopback
// DNS server, sends real SMTP, and checks what Postfix delivered, held or
// replied. All of its code lives in _test.go files; see README.md.
package integration
