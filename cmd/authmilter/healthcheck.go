package main

// `authmilter healthcheck`: connect to the running milter and complete the
// milter option negotiation, for container HEALTHCHECKs and monitoring
// scripts. Exit 0 when the milter answered, 1 otherwise. It needs no shell
// or netcat in the image.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/config"
)

func cmdHealthcheck(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file whose first milter.listen socket is checked")
	addr := fl.String("addr", "", "milter `socket` to check instead (e.g. inet:127.0.0.1:8893, unix:/run/authmilter/authmilter.sock)")
	timeout := fl.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	spec := *addr
	if spec == "" {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "authmilter:", err)
			return 1
		}
		if len(cfg.Milter.Listen) == 0 {
			fmt.Fprintln(stderr, "authmilter healthcheck: milter.listen is empty")
			return 1
		}
		spec = cfg.Milter.Listen[0]
	}
	sock, err := config.ParseSocket(spec)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter healthcheck:", err)
		return 2
	}
	if err := milterAlive(sock, *timeout); err != nil {
		fmt.Fprintf(stderr, "authmilter healthcheck: %s: %v\n", spec, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", spec)
	return 0
}

// milterAlive dials the socket and completes the option negotiation (the
// first exchange of every milter connection), then says goodbye.
func milterAlive(sock config.Socket, timeout time.Duration) error {
	c := gomilter.NewClientWithOptions(sock.Network, sock.Address, gomilter.ClientOptions{
		Dialer:      &net.Dialer{Timeout: timeout},
		ReadTimeout: timeout, WriteTimeout: timeout,
		// As Postfix asks; ProtocolMask 0 (see NOTES: go-milter client trap).
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		return err
	}
	return s.Close()
}
