package service_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/authmilter/authmilter/internal/incoming"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// The milter server aborts a message in flight from the closing goroutine
// when a connection is cut at shutdown, while the session's goroutine may
// still be in Body or End: Abort must be safe then (go test -race), free
// an incoming-report slot exactly once (a second release would block the
// closing goroutine for ever) and leave End an unsigned message.
func TestAbortFromAnotherGoroutine(t *testing.T) {
	rsaKey, edKey := newTestKeys(t, t.TempDir())
	logs := &testmilter.Logs{}
	sg := newSigning(t, signingConfig(rsaKey, edKey, "relaxed/relaxed"), logs)

	st := tempStore(t)
	cfg := testmilter.Config(authservID, "127.0.0.1:9", 100e6)
	cfg.Policy.IgnoreHosts = []string{}
	log := testmilter.Logger(logs, 0)
	svc := testmilter.NewService(t, cfg, log, nil)
	svc.Incoming = service.NewIncoming(&incoming.Ingester{Store: st, Domains: []string{"example.org"}, Log: log},
		[]string{"dmarc@example.org"}, false, 1<<20)

	backends := map[string]milter.Backend{"sign": signOnly(sg), "verify with a report slot": svc}
	for name, b := range backends {
		t.Run(name, func(t *testing.T) {
			for range 20 { // more than the hook's slots: each must come back
				env := milter.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), MailFrom: "alice@example.com"}
				m := b.Begin(context.Background(), env)
				m.Recipient("dmarc@example.org")
				for _, h := range outboundHeaders("example.com") {
					m.Header(h[0], milter.FieldValue(h[1]))
				}
				m.EndOfHeaders()
				var wg sync.WaitGroup
				wg.Add(2)
				go func() {
					defer wg.Done()
					for range 50 {
						m.Body([]byte("a line of the body\r\n"))
					}
					m.End(context.Background(), "Q1")
				}()
				go func() {
					defer wg.Done()
					m.Abort()
					m.Abort()
				}()
				wg.Wait()
			}
		})
	}
}
