package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/authmilter/authmilter/internal/config"
)

// socketEnv is what logSocket asks of the system; tests replace it.
type socketEnv struct {
	euid       func() int
	groupExist func(name string) bool
}

var systemSocketEnv = socketEnv{
	euid:       os.Geteuid,
	groupExist: func(name string) bool { _, err := user.LookupGroup(name); return err == nil },
}

// logSocket says at start what an MTA will find: for a unix socket its
// path, owner, group and mode (the most common first-day outage is a
// socket Postfix may not open: it answers 451 to every client and the
// milter never sees a connection), with what to set when the daemon runs as
// root without milter.socket_group while a postfix group exists; for TCP
// on every interface, a warning (issue 19).
func logSocket(log *slog.Logger, spec string, ln net.Listener, socketGroup string, env socketEnv) {
	sock, err := config.ParseSocket(spec)
	if err != nil {
		return
	}
	if sock.Network == "tcp" {
		if host, _, err := net.SplitHostPort(sock.Address); err == nil && host == "" {
			log.Warn("milter socket listens on every interface: anyone who reaches the port can use the milter; "+
				"name the address, e.g. inet:127.0.0.1:PORT", "listen", spec, "address", ln.Addr().String())
		}
		return
	}
	fi, err := os.Stat(sock.Address)
	if err != nil {
		log.Warn("milter socket: cannot read its owner and mode", "path", sock.Address, "err", err)
		return
	}
	owner, group := "?", "?"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner, group = strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
		if u, err := user.LookupId(owner); err == nil {
			owner = u.Username
		}
		if g, err := user.LookupGroupId(group); err == nil {
			group = g.Name
		}
	}
	mode := fi.Mode().Perm()
	log.Info("milter socket", "path", sock.Address, "owner", owner, "group", group, "mode", fmt.Sprintf("%04o", mode))
	if socketGroup == "" && group != "postfix" && env.euid() == 0 && mode&0o006 != 0o006 && env.groupExist("postfix") {
		log.Warn("milter socket: Postfix's smtpd runs as user postfix and cannot connect to a socket of "+
			owner+":"+group+" mode "+fmt.Sprintf("%04o", mode)+" (every SMTP client then gets 451); "+
			"set milter.socket_group = \"postfix\"", "path", sock.Address)
	}
}
