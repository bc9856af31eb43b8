package config

import (
	"net"
	"strconv"
)

// Metrics configures the HTTP listener of the Prometheus endpoint
// (/metrics) and of the liveness and readiness checks (/healthz, /readyz).
type Metrics struct {
	// Listen is "HOST:PORT"; empty disables the listener. The default is
	// loopback only: the endpoint has no authentication.
	Listen string `toml:"listen"`
}

// DefaultMetricsListen is the default metrics.listen.
const DefaultMetricsListen = "127.0.0.1:9893"

func defaultMetrics() Metrics { return Metrics{Listen: DefaultMetricsListen} }

func (c *Config) validateMetrics() Errors {
	l := c.Metrics.Listen
	if l == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		return Errors{{Key: "metrics.listen", Msg: strconv.Quote(l) + ` is not HOST:PORT (e.g. "127.0.0.1:9893"; "" disables)`}}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return Errors{{Key: "metrics.listen", Msg: strconv.Quote(port) + " is not a port number (1-65535)"}}
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return Errors{{Key: "metrics.listen", Msg: strconv.Quote(host) + ` is not an IP address ("" or "0.0.0.0" for every address)`}}
	}
	return nil
}
