package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/authmilter/authmilter/pkg/dkimsign"
	"github.com/authmilter/authmilter/pkg/identity"
)

// cmdKeygen is `authmilter keygen`: it makes a DKIM key pair, writes the
// private key (mode 0600, never over an existing file) and prints the TXT
// record to publish, as a zone-file entry (strings of at most 255 bytes)
// and as one line for web DNS panels. The whole output is valid zone-file
// text: everything but the record is a ";" comment.
func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing domain (d=)")
	selector := fs.String("selector", "", "selector (s=)")
	typ := fs.String("type", dkimsign.AlgRSA, "key type: rsa or ed25519")
	bits := fs.Int("bits", dkimsign.DefaultRSABits, fmt.Sprintf("RSA key size, %d to %d", dkimsign.MinRSABits, dkimsign.MaxRSABits))
	out := fs.String("out", ".", "directory for the private key file <domain>.<selector>.key")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: authmilter keygen --domain D --selector S [--type rsa|ed25519] [--bits N] [--out DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bitsSet := false
	fs.Visit(func(f *flag.Flag) { bitsSet = bitsSet || f.Name == "bits" })
	if fs.NArg() > 0 || *domain == "" || *selector == "" {
		fs.Usage()
		return 2
	}
	d, err := identity.ASCII(*domain)
	if err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: --domain: %v\n", err)
		return 2
	}
	if err := dkimsign.CheckSelector(*selector); err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: --selector: %v\n", err)
		return 2
	}
	var key crypto.Signer
	switch *typ {
	case dkimsign.AlgRSA:
		if *bits < dkimsign.MinRSABits || *bits > dkimsign.MaxRSABits {
			fmt.Fprintf(stderr, "authmilter keygen: --bits %d: RSA keys must have %d to %d bits (RFC 8301 §3.2)\n",
				*bits, dkimsign.MinRSABits, dkimsign.MaxRSABits)
			return 2
		}
		key, err = rsa.GenerateKey(rand.Reader, *bits)
	case dkimsign.AlgEd25519:
		if bitsSet {
			fmt.Fprintln(stderr, "authmilter keygen: --bits applies to rsa keys only")
			return 2
		}
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		fmt.Fprintf(stderr, "authmilter keygen: --type %q: want rsa or ed25519\n", *typ)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: %v\n", err)
		return 1
	}
	pemKey, err := dkimsign.MarshalPrivateKey(key)
	if err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: %v\n", err)
		return 1
	}
	txt, err := dkimsign.TXTRecord(key.Public())
	if err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: %v\n", err)
		return 1
	}
	path := filepath.Join(*out, d+"."+*selector+".key")
	if err := writeNewFile(path, pemKey); err != nil {
		fmt.Fprintf(stderr, "authmilter keygen: %v\n", err)
		return 1
	}
	alg, n, _ := dkimsign.KeyInfo(key.Public())
	name := dkimsign.RecordName(*selector, d)
	fmt.Fprintf(stdout, "; DKIM key for %s, selector %s: %s, %d bits\n", d, *selector, alg, n)
	fmt.Fprintf(stdout, "; private key: %s (mode 0600)\n", path)
	fmt.Fprintf(stdout, ";\n; Publish this TXT record (zone-file form):\n")
	fmt.Fprintln(stdout, dkimsign.ZoneRecord(name, txt))
	fmt.Fprintf(stdout, ";\n; Or, in a web DNS panel, a TXT record named\n;   %s\n; with the value\n;   %s\n", name, txt)
	return 0
}

// writeNewFile writes data to a file that must not exist yet, readable by
// its owner only.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; not overwriting a key (choose another selector or remove it)", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
