package dkimsign_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"strings"

	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// zone is a DNS of TXT records held in a map, the one method the verifier
// needs (dkimverify.TXTResolver). A daemon passes its resolver instead.
type zone map[string]string

func (z zone) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := z[name]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// A message signed with an Ed25519 key, its key record published, and the
// signature verified, as the milter does it: the header block first, then
// the body in chunks.
func ExampleStart() {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // a test key
	key := &dkimsign.LoadedKey{Key: dkimsign.Key{Name: "k", Domain: "example.org", Selector: "sel"},
		Algorithm: dkimsign.AlgEd25519, Bits: 256, Signer: priv}

	header := headerblock.Append(nil, "From", " Alice <alice@example.org>")
	header = headerblock.Append(header, "Subject", " hello")
	body := "Hello, Bob.\r\n"

	s := dkimsign.Start(header, []*dkimsign.LoadedKey{key}, nil)
	_, _ = s.Write([]byte(body))
	values, err := s.Finish()
	if err != nil {
		panic(err)
	}

	record, _ := dkimsign.TXTRecord(priv.Public())
	dns := zone{dkimsign.RecordName("sel", "example.org") + ".": record}

	signed := append(headerblock.Append(nil, "DKIM-Signature", values[0]), header...)
	v := dkimverify.Start(context.Background(), dns, append(signed, "\r\n"...), nil)
	_, _ = v.Write([]byte(body))
	for _, r := range v.Results() {
		fmt.Println(r.Status, r.Domain, r.Selector, r.Algorithm)
	}
	fmt.Println(strings.HasPrefix(record, "v=DKIM1; k=ed25519; p="))
	// Output:
	// pass example.org sel ed25519-sha256
	// true
}
