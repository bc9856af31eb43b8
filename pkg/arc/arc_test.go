package arc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/miekg/dns"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newDNS starts the in-repo DNS server with the chains' key records and
// returns it with the real resolver pointed at it.
func newDNS(t testing.TB) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	srv := dnstest.New(t, string(readFile(t, "keys.zone")))
	// A name outside the zone gets no answer: time out fast.
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, CacheSize: -1, Timeout: 200 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

// validate runs a whole message through a Validator, the body in chunks of
// chunk bytes (all at once if chunk <= 0).
func validate(t testing.TB, r *resolver.Resolver, msg []byte, o *Options, chunk int) Result {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatal("no end of header")
	}
	header, body := msg[:i+4], msg[i+4:]
	v := Start(context.Background(), r, header, o)
	if chunk <= 0 {
		chunk = len(body) + 1
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		v.Write(body[:n]) //nolint:errcheck // never fails
		body = body[n:]
	}
	return v.Result()
}

// The chains of testdata/chains, sealed by dkimpy (gen.py). want is our
// verdict; TestDkimpyAgrees checks that dkimpy's is the same, except for
// the chains in dkimpyDiffers.
var chainCases = []struct {
	name       string
	want       Status
	oldestPass int
	err        error  // for fail
	remoteIP   string // of the first hop, for pass
	sealers    string // d= of the seals, oldest first, for pass
}{
	{"none", StatusNone, 0, nil, "", ""},
	{"one-hop", StatusPass, 0, nil, "192.0.2.10", "forwarder.example"},
	{"two-hops", StatusPass, 0, nil, "192.0.2.10", "forwarder.example lists.example"},
	{"three-hops", StatusPass, 0, nil, "192.0.2.10", "forwarder.example lists.example relay.example"},
	// The list changed body and Subject after hop 1 sealed: AMS 1 fails,
	// which only lowers oldest-pass (RFC 8617 §5.2 step 5).
	{"list-footer", StatusPass, 2, nil, "192.0.2.10", "forwarder.example lists.example"},
	{"list-only", StatusPass, 0, nil, "198.51.100.20", "lists.example"},
	{"dmarc-fail-aar", StatusPass, 0, nil, "198.51.100.20", "lists.example"},
	{"body-after-seal", StatusFail, 0, ErrSignature, "", ""},
	{"broken-seal", StatusFail, 0, ErrSignature, "", ""},
	{"broken-newest-seal", StatusFail, 0, ErrSignature, "", ""},
	{"reordered-instances", StatusFail, 0, ErrStructure, "", ""}, // cv=none on i=2
	{"gap", StatusFail, 0, ErrStructure, "", ""},
	{"cv-fail", StatusFail, 0, ErrCVFail, "", ""},
	{"cv-fail-carried", StatusFail, 0, ErrCVFail, "", ""},
	// The sets moved in the header (set 1 above set 2), bytes unchanged:
	// RFC 8617 §5.1.1 has the seal cover the sets by instance, in
	// increasing order, so where they stand does not matter. dkimpy 1.1.4
	// picks the fields by name from the bottom of the header (as DKIM's h=
	// does) and fails the seal: the one case where we differ on purpose
	// (dkimpyDiffers).
	{"sets-moved", StatusPass, 0, nil, "192.0.2.10", "forwarder.example lists.example"},
	// A set copied from a genuine message onto a forged one and sealed
	// over: the chain passes (seals cover only ARC fields), the copied
	// set's message signature fails (oldest-pass 2). Local policy must
	// not take the copied set's word (internal/policy).
	{"replayed-set", StatusPass, 2, nil, "198.51.100.20", "lists.example forwarder.example"},
	{"ed25519-sealer", StatusPass, 0, nil, "192.0.2.40", "edseal.example"},
	{"ed25519-then-rsa", StatusPass, 0, nil, "192.0.2.40", "edseal.example lists.example"},
	{"missing-key", StatusFail, 0, ErrKey, "", ""},
}

// dkimpyDiffers: chains on which dkimpy's verdict is not ours, and its
// verdict there (checked, so that a change in dkimpy shows).
var dkimpyDiffers = map[string]string{"sets-moved": "fail"}

func TestChains(t *testing.T) {
	_, r := newDNS(t)
	for _, c := range chainCases {
		msg := readFile(t, "chains/"+c.name+".eml")
		for _, chunk := range []int{0, 1, 7, 4096} {
			got := validate(t, r, msg, nil, chunk)
			if got.Status != c.want {
				t.Fatalf("%s (chunk %d): %s (%s: %v), want %s", c.name, chunk, got.Status, got.Reason, got.Err, c.want)
			}
			if c.err != nil && !errors.Is(got.Err, c.err) {
				t.Errorf("%s: err %v, want %v", c.name, got.Err, c.err)
			}
			if c.want != StatusPass {
				continue
			}
			var sealers []string
			for _, s := range got.Sets {
				sealers = append(sealers, s.SealDomain)
				if !s.SealPass {
					t.Errorf("%s: set %d seal not marked pass", c.name, s.Instance)
				}
			}
			if strings.Join(sealers, " ") != c.sealers || got.OldestPass != c.oldestPass || got.RemoteIP != c.remoteIP {
				t.Errorf("%s: sealers %q oldest-pass %d remote-ip %q, want %q %d %q",
					c.name, sealers, got.OldestPass, got.RemoteIP, c.sealers, c.oldestPass, c.remoteIP)
			}
			latest := got.Latest()
			if latest.AuthServID != latest.SealDomain || len(latest.Results) == 0 {
				t.Errorf("%s: latest AAR %q %v", c.name, latest.AuthServID, latest.Results)
			}
		}
	}
}

// TestDkimpyAgrees is the differential test: dkimpy (Debian python3-dkim)
// verifies every chain with the same key records (testdata/verify.py, no
// network) and must reach our verdict. dkimpy 1.1.4 accepts only
// rsa-sha256 in ARC; verify.py --ed25519 adds ed25519-sha256 to its ARC
// algorithms so that the Ed25519 sealers are judged by its own Ed25519
// code rather than refused by name.
func TestDkimpyAgrees(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dkimpy (python3-dkim, python3-nacl) is required under CI: %v", err)
		}
		t.Skip("dkimpy not installed (apt-get install python3-dkim python3-nacl)")
	}
	args := []string{"testdata/verify.py", "--ed25519", "testdata/keys.zone"}
	for _, c := range chainCases {
		args = append(args, "testdata/chains/"+c.name+".eml")
	}
	out, err := exec.Command("/usr/bin/python3", args...).Output()
	if err != nil {
		t.Fatalf("verify.py: %v", err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		got[strings.TrimSuffix(f[0], ".eml")] = f[1]
	}
	if len(got) != len(chainCases) {
		t.Fatalf("dkimpy judged %d chains, want %d:\n%s", len(got), len(chainCases), out)
	}
	for _, c := range chainCases {
		want := string(c.want)
		if d, ok := dkimpyDiffers[c.name]; ok {
			want = d
		}
		if got[c.name] != want {
			t.Errorf("%s: dkimpy says %s, want %s (we say %s)", c.name, got[c.name], want, c.want)
		}
	}
}

func TestKeyTempError(t *testing.T) {
	srv, r := newDNS(t)
	srv.Fail("s2._domainkey.lists.example.", dns.RcodeServerFailure)
	got := validate(t, r, readFile(t, "chains/two-hops.eml"), nil, 0)
	if got.Status != StatusFail || !errors.Is(got.Err, ErrTemporary) {
		t.Fatalf("%s %v, want fail with ErrTemporary", got.Status, got.Err)
	}
}

func TestMaxSets(t *testing.T) {
	srv, r := newDNS(t)
	msg := readFile(t, "chains/three-hops.eml")
	got := validate(t, r, msg, &Options{MaxSets: 2}, 0)
	if got.Status != StatusFail || !errors.Is(got.Err, ErrTooMany) {
		t.Fatalf("%s %v, want fail with ErrTooMany", got.Status, got.Err)
	}
	if q := srv.Queries(); q != 0 {
		t.Errorf("%d DNS queries for a chain over the cap, want 0", q)
	}
	if got := validate(t, r, msg, &Options{MaxSets: 3}, 0); got.Status != StatusPass {
		t.Errorf("MaxSets 3: %s %v", got.Status, got.Err)
	}
}

// TestStructure: chains wrong before any cryptography (RFC 8617 §5.2
// steps 1-3), built by editing a good one.
func TestStructure(t *testing.T) {
	_, r := newDNS(t)
	two := string(readFile(t, "chains/two-hops.eml"))
	cases := []struct {
		name string
		msg  string
		err  error
	}{
		{"cv=pass on i=1", strings.Replace(two, "i=1; cv=none;", "i=1; cv=pass;", 1), ErrStructure},
		{"cv=none on i=2", strings.Replace(two, "i=2; cv=pass;", "i=2; cv=none;", 1), ErrStructure},
		{"cv=fail on the newest", strings.Replace(two, "i=2; cv=pass;", "i=2; cv=fail;", 1), ErrCVFail},
		{"instance 51", strings.Replace(two, "ARC-Seal: i=2;", "ARC-Seal: i=51;", 1), ErrStructure},
		{"instance 0", strings.Replace(two, "ARC-Seal: i=2;", "ARC-Seal: i=0;", 1), ErrStructure},
		{"no i=", strings.Replace(two, "ARC-Seal: i=2;", "ARC-Seal:", 1), ErrStructure},
		{"duplicate seal", "ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=x.example; s=s; b=AAAA\r\n" + two, ErrStructure},
		{"seal with h=", strings.Replace(two, "i=2; cv=pass;", "i=2; cv=pass; h=from;", 1), ErrStructure},
		{"rsa-sha1", strings.Replace(two, "i=2; cv=pass; a=rsa-sha256", "i=2; cv=pass; a=rsa-sha1", 1), ErrStructure},
		{"AAR without i=", strings.Replace(two, "ARC-Authentication-Results: i=2;", "ARC-Authentication-Results: lists.example;", 1), ErrStructure},
	}
	for _, c := range cases {
		if c.msg == two {
			t.Fatalf("%s: edit did not apply", c.name)
		}
		got := validate(t, r, []byte(c.msg), nil, 0)
		if got.Status != StatusFail || !errors.Is(got.Err, c.err) {
			t.Errorf("%s: %s %v, want fail with %v", c.name, got.Status, got.Err, c.err)
		}
	}
}

func TestAbort(t *testing.T) {
	_, r := newDNS(t)
	msg := readFile(t, "chains/one-hop.eml")
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	v := Start(context.Background(), r, msg[:i+4], nil)
	v.Abort()
	v.Write([]byte("more\r\n")) //nolint:errcheck
	if got := v.Result(); got.Status != StatusFail {
		t.Fatalf("after Abort: %s", got.Status)
	}
}

// RSA keys below the floor never verify (RFC 8301 §3.2; dkim.min_rsa_bits
// applies to ARC too): relay.example seals with a 1024-bit key.
func TestMinRSABits(t *testing.T) {
	_, r := newDNS(t)
	msg := readFile(t, "chains/three-hops.eml")
	if got := validate(t, r, msg, &Options{MinRSABits: 1024}, 0); got.Status != StatusPass {
		t.Fatalf("1024: %s %v", got.Status, got.Err)
	}
	got := validate(t, r, msg, &Options{MinRSABits: 2048}, 0)
	if got.Status != StatusFail || !errors.Is(got.Err, dkimverify.ErrKeyTooSmall) {
		t.Fatalf("2048: %s %v, want fail with ErrKeyTooSmall", got.Status, got.Err)
	}
}

// The message budget (the context given to Start) bounds the CPU work as
// well as the DNS waits: once it has ended, nothing more is verified.
func TestBudget(t *testing.T) {
	_, r := newDNS(t)
	msg := readFile(t, "chains/two-hops.eml")
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	ctx, cancel := context.WithCancel(context.Background())
	v := Start(ctx, r, msg[:i+4], nil)
	v.Write(msg[i+4:]) //nolint:errcheck
	cancel()
	if got := v.Result(); got.Status != StatusFail || !errors.Is(got.Err, ErrOverBudget) {
		t.Fatalf("%s %v, want fail over budget", got.Status, got.Err)
	}
}
