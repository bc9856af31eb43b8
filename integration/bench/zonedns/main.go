// Command zonedns serves one RFC 1035 master file authoritatively over UDP
// and TCP, for benchmarks: authmilter, OpenDKIM and OpenDMARC all resolve
// against it (inside a network namespace, on 127.0.0.1:53). NXDOMAIN for
// names that do not exist (and have nothing below them), NODATA for
// existing names without the type; UDP answers above 512 bytes (or the
// EDNS0 size) are truncated so that the client retries over TCP.
//
//	go run ./integration/bench/zonedns -zone zone.txt -listen 127.0.0.1:53
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/miekg/dns"
)

type zone struct {
	rrs   map[string]map[uint16][]dns.RR // owner name (lowercase, absolute) → type → records
	exist map[string]bool                // every owner and every name above one (empty non-terminals)
}

func load(path string) (*zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z := &zone{rrs: map[string]map[uint16][]dns.RR{}, exist: map[string]bool{}}
	zp := dns.NewZoneParser(f, ".", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		if z.rrs[name] == nil {
			z.rrs[name] = map[uint16][]dns.RR{}
		}
		t := rr.Header().Rrtype
		z.rrs[name][t] = append(z.rrs[name][t], rr)
		for n := name; ; {
			z.exist[n] = true
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return z, nil
}

func main() {
	zonePath := flag.String("zone", "", "zone file (RFC 1035 master format, absolute names)")
	listen := flag.String("listen", "127.0.0.1:53", "addresses for UDP and TCP, comma-separated")
	flag.Parse()
	z, err := load(*zonePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "zonedns:", err)
		os.Exit(1)
	}
	var queries atomic.Int64
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.RecursionAvailable = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			_ = w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case !z.exist[name]:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeANY:
			for _, rrs := range z.rrs[name] {
				m.Answer = append(m.Answer, rrs...)
			}
		default:
			m.Answer = append(m.Answer, z.rrs[name][q.Qtype]...)
		}
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		if w.LocalAddr().Network() == "udp" {
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	addrs := strings.Split(*listen, ",")
	errc := make(chan error, 2*len(addrs))
	for _, addr := range addrs {
		for _, netw := range []string{"udp", "tcp"} {
			srv := &dns.Server{Addr: addr, Net: netw, Handler: handler}
			go func() { errc <- srv.ListenAndServe() }()
		}
	}
	fmt.Fprintf(os.Stderr, "zonedns: serving %d names on %s (udp, tcp)\n", len(z.rrs), *listen)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "zonedns:", err)
		os.Exit(1)
	case <-sigs:
		fmt.Fprintf(os.Stderr, "zonedns: %d queries\n", queries.Load())
	}
}
