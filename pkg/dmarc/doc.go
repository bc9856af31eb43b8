// Package dmarc decides the DMARC result of a message: it extracts the
// Author Domain from the From field, discovers the DMARC Policy Record and
// Organizational Domain (RFC 9989 §4.10 DNS tree walk, or the RFC 7489 Public
// Suffix List), parses the record, checks SPF and DKIM identifier alignment
// and returns the result with the policy that applies. What to do with the
// message (reject, quarantine, monitor, local overrides) is decided elsewhere.
package dmarc
