// Command milterprof runs the authmilter service (the same parts cmd/authmilter
// serve wires up: resolver, engine, policy, service, milter server) under
// the CPU profiler, for profiling under milterload. It writes the CPU
// profile and the allocation and heap profiles when it gets SIGTERM or
// SIGINT.
//
//	go run ./integration/cmd/milterprof -config integration/bench/authmilter.toml -cpuprofile cpu.out -memprofile mem.out
//	go tool pprof -top cpu.out
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("milterprof", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "authmilter configuration file")
	cpuOut := fl.String("cpuprofile", "cpu.out", "CPU profile output")
	memOut := fl.String("memprofile", "mem.out", "allocation profile output (go tool pprof -sample_index=alloc_space)")
	memRate := fl.Int("memprofilerate", runtime.MemProfileRate, "runtime.MemProfileRate: one sample per this many allocated bytes")
	noop := fl.Bool("noop", false, "serve with a backend that checks nothing: the cost of the milter protocol and adapter alone")
	if err := fl.Parse(args); err != nil || *cfgPath == "" {
		fmt.Fprintln(stderr, "usage: milterprof -config FILE [-cpuprofile FILE] [-memprofile FILE]")
		return 2
	}
	runtime.MemProfileRate = *memRate
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The resolver and service exactly as serve builds them (dns.cache_size
	// = 0 is no cache here too).
	rc := service.ResolverConfig(cfg)
	rc.Logger = log
	res, err := resolver.New(rc)
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	svc, err := service.New(cfg, service.Deps{Resolver: res, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	var backend milter.Backend = svc
	if *noop {
		backend = noopBackend{}
	}
	srv := milter.NewServer(backend, milter.Options{IdleTimeout: cfg.Milter.IdleTimeout.Duration, SocketMode: 0o666, Log: log})
	if len(cfg.Milter.Listen) != 1 {
		fmt.Fprintln(stderr, "milterprof: want exactly one listen socket")
		return 1
	}
	sock, err := config.ParseSocket(cfg.Milter.Listen[0])
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	ln, err := milter.Listen(sock, fs.FileMode(0o666), "")
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	f, err := os.Create(*cpuOut)
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "milterprof: serving %s, profiling until SIGTERM\n", sock)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	code := 0
	select {
	case <-sigs:
	case err := <-done:
		fmt.Fprintln(stderr, "milterprof: serve:", err)
		code = 1
	}
	pprof.StopCPUProfile()
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if sock.Network == "unix" {
		os.Remove(sock.Address)
	}
	mf, err := os.Create(*memOut)
	if err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	defer mf.Close()
	if err := pprof.Lookup("allocs").WriteTo(mf, 0); err != nil {
		fmt.Fprintln(stderr, "milterprof:", err)
		return 1
	}
	return code
}

// noopBackend checks nothing: Begin returns no message, so the milter adapter
// only speaks the protocol and answers continue.
type noopBackend struct{}

func (noopBackend) Begin(context.Context, milter.Envelope) milter.Message { return nil }
