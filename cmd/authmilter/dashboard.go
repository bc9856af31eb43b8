package main

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/dashboard"
	"github.com/authmilter/authmilter/internal/metrics"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
)

// startDashboard opens the dashboard's listener ([dashboard]); it returns
// the function that stops it, or nil when it could not start (logged: the
// milter runs on).
func startDashboard(cfg *config.Config, st *store.Store, res *resolver.Resolver, log *slog.Logger) func() {
	c := cfg.Dashboard
	o := dashboard.Options{Store: st, Auth: dashboard.Auth{Token: c.Token, User: c.User, Password: c.Password}, Log: log}
	if c.ResolveNames && res != nil {
		o.Names = dashboard.ReverseNames(res)
	}
	srv, err := metrics.Listen(dashboardAddr(c.Listen), dashboard.Handler(o), log)
	if err != nil {
		log.Error("dashboard not started", "err", err)
		return nil
	}
	log.Info("dashboard listener", "listen", srv.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck // shutting down
	}
}

// dashboardAddr is where the dashboard listens: dashboard.listen, with a
// missing host meaning loopback (":9894" is 127.0.0.1:9894); every
// address only when said ("0.0.0.0:9894", "[::]:9894").
func dashboardAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host != "" {
		return listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}
