package dmarc

import (
	"context"
	"testing"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
)

func BenchmarkParseRecord(b *testing.B) {
	txt := "v=DMARC1; p=reject; sp=quarantine; adkim=s; rua=mailto:a@example.com!10m,mailto:b@example.net; fo=1"
	for b.Loop() {
		if _, err := ParseRecord(txt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthorDomains(b *testing.B) {
	from := []string{" \"Jane Doe\" (work)\n <jane@Mail.Example.COM>"}
	for b.Loop() {
		if _, err := AuthorDomains(from); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateCached: discovery plus relaxed DKIM alignment with every
// answer in the resolver cache, i.e. DMARC's own cost per message.
func BenchmarkEvaluateCached(b *testing.B) {
	srv := dnstest.New(b, evalZone)
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	in := spfIn("example.com", "fail", "example.net", dk("mail.example.com", "pass"))
	ctx := context.Background()
	for b.Loop() {
		if res := evaluate(ctx, r, in, nil); res.Status != StatusPass {
			b.Fatal(res.Status, res.Reason)
		}
	}
}
