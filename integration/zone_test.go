package integration

import (
	"os"
	"testing"

	"github.com/miekg/dns"

	"github.com/authmilter/authmilter/internal/dnstest"
)

// Client addresses. goodV4/goodV6 are authorised by every SPF record below
// that authorises anything; badV4/badV6 by none.
const (
	goodV4 = "192.0.2.1"
	goodV6 = "2001:db8:1::1"
	badV4  = "198.51.100.7"
	badV6  = "2001:db8:2::7"
)

// baseZone is the test DNS data (RFC 1035 master-file text). The DKIM public
// keys are appended from testdata/dkim/keys.zone.
const baseZone = `$TTL 300
; SPF (RFC 7208)
spf-pass.test.            IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
mail.spf-pass.test.       IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
spf-fail.test.            IN TXT "v=spf1 -all"
mail.spf-fail.test.       IN TXT "v=spf1 -all"
spf-softfail.test.        IN TXT "v=spf1 ~all"
spf-none.test.            IN A   192.0.2.99
; answers SERVFAIL in the suite (Server.Fail): SPF temperror
spf-temp.test.            IN TXT "v=spf1 -all"

; DMARC (RFC 9989): one domain per policy, SPF-aligned when sent from goodV4
dmarc-reject.test.        IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
_dmarc.dmarc-reject.test. IN TXT "v=DMARC1; p=reject; rua=mailto:agg@dmarc-reject.test"
dmarc-quar.test.          IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
_dmarc.dmarc-quar.test.   IN TXT "v=DMARC1; p=quarantine; rua=mailto:agg@dmarc-quar.test"
dmarc-none.test.          IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
_dmarc.dmarc-none.test.   IN TXT "v=DMARC1; p=none"
dmarc-temp.test.          IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"
; answers SERVFAIL in the suite: DMARC temperror
_dmarc.dmarc-temp.test.   IN TXT "v=DMARC1; p=reject"

; DKIM fixtures sign for dkim.test; SPF never passes for it, so DMARC
; passes only through an aligned DKIM signature.
dkim.test.                IN TXT "v=spf1 -all"
_dmarc.dkim.test.         IN TXT "v=DMARC1; p=reject"
`

// startDNS serves the suite's zone on 127.0.0.1 for the life of t.
func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	keys, err := os.ReadFile("testdata/dkim/keys.zone")
	if err != nil {
		t.Fatal(err)
	}
	s := dnstest.New(t, baseZone+string(keys))
	s.Fail("spf-temp.test.", dns.RcodeServerFailure)
	s.Fail("_dmarc.dmarc-temp.test.", dns.RcodeServerFailure)
	return s
}
