package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/authmilter/authmilter/pkg/identity"
)

// Socket is one listen address in the form the milter server opens.
type Socket struct {
	Network string // "tcp" or "unix"
	Address string // "127.0.0.1:8893", "[::1]:8893" or "/run/authmilter.sock"
}

func (s Socket) String() string {
	if s.Network == "unix" {
		return "unix:" + s.Address
	}
	return "inet:" + s.Address
}

// ParseSocket accepts the spellings Postfix, Sendmail, OpenDKIM and
// OpenDMARC use, so existing milter lines keep working:
//
//	inet:HOST:PORT   inet:PORT@HOST   inet6:[ADDR]:PORT   inet6:PORT@ADDR
//	unix:/path       local:/path      /path
func ParseSocket(spec string) (Socket, error) {
	bad := func(why string) (Socket, error) {
		return Socket{}, fmt.Errorf("socket %q: %s", spec, why)
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		if strings.HasPrefix(spec, "/") {
			return Socket{Network: "unix", Address: spec}, nil
		}
		return bad("want inet:HOST:PORT, inet6:[ADDR]:PORT, unix:/path or local:/path")
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return bad("a unix socket needs an absolute path")
		}
		return Socket{Network: "unix", Address: rest}, nil
	case "inet", "inet6", "tcp":
	default:
		return bad("unknown socket type " + strconv.Quote(kind))
	}
	var host, port string
	if p, h, ok := strings.Cut(rest, "@"); ok { // Sendmail form PORT@HOST
		host, port = h, p
	} else {
		var err error
		host, port, err = net.SplitHostPort(rest)
		if err != nil {
			if _, perr := strconv.Atoi(rest); perr == nil { // "inet:8893": all interfaces, like Sendmail
				host, port = "", rest
			} else {
				return bad("want HOST:PORT or PORT@HOST")
			}
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return bad("port must be 1-65535")
	}
	if strings.EqualFold(kind, "inet6") && host != "" {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return bad("inet6 needs an IPv6 address")
		}
	}
	if strings.ContainsAny(host, " /") {
		return bad("bad host")
	}
	return Socket{Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
}

// HostMatcher matches a client by address or by name: an IP address, a
// CIDR prefix, a host name (exact, case-insensitive) or ".example.org" for
// the domain and every name below it.
type HostMatcher struct {
	prefix netip.Prefix // valid for address and CIDR entries
	name   string       // lowercase, without trailing dot; leading "." for domains
}

// ParseHostMatcher parses one ignore-list or trusted-forwarder entry.
func ParseHostMatcher(s string) (HostMatcher, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return HostMatcher{}, fmt.Errorf("empty host entry")
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return HostMatcher{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return HostMatcher{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if strings.Contains(s, "/") || strings.ContainsAny(s, " \t@:*") {
		return HostMatcher{}, fmt.Errorf("%q is not an IP address, CIDR prefix or host name", s)
	}
	return HostMatcher{name: identity.Fold(s)}, nil
}

// Match reports whether the client address or host name matches.
func (m HostMatcher) Match(ip netip.Addr, host string) bool {
	if m.prefix.IsValid() {
		return ip.IsValid() && m.prefix.Contains(ip.Unmap())
	}
	host = identity.Fold(host)
	if host == "" || strings.HasPrefix(host, "[") {
		return false
	}
	if strings.HasPrefix(m.name, ".") {
		return strings.HasSuffix(host, m.name) || host == m.name[1:]
	}
	return host == m.name
}

// HostList is a parsed list of HostMatcher entries.
type HostList []HostMatcher

// ParseHostList parses every entry; the config was validated before, so an
// error here means a programming mistake and is returned as is.
func ParseHostList(entries []string) (HostList, error) {
	l := make(HostList, 0, len(entries))
	for _, e := range entries {
		m, err := ParseHostMatcher(e)
		if err != nil {
			return nil, err
		}
		l = append(l, m)
	}
	return l, nil
}

// Match reports whether any entry matches.
func (l HostList) Match(ip netip.Addr, host string) bool {
	for _, m := range l {
		if m.Match(ip, host) {
			return true
		}
	}
	return false
}
