package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// RSA key sizes accepted for signing. RFC 8301 §3.2: signers MUST use at
// least 1024 bits and SHOULD use at least 2048. Above 4096 the public key
// no longer fits a TXT record most DNS panels accept, and verifiers may
// refuse it (RFC 8301 §3.2 only asks them to handle up to 4096).
const (
	MinRSABits     = 1024
	MaxRSABits     = 4096
	DefaultRSABits = 2048
)

// Errors of key loading. They are wrapped with the file name.
var (
	// ErrKeyPermissions: the key file can be read or written by its group
	// or by others (OpenDKIM's RequireSafeKeys refuses these too).
	ErrKeyPermissions = errors.New("dkimsign: key file is accessible to group or others")
	// ErrKeyFormat: the file holds no private key we can read.
	ErrKeyFormat = errors.New("dkimsign: unreadable private key")
	// ErrKeySize: an RSA key outside MinRSABits..MaxRSABits.
	ErrKeySize = errors.New("dkimsign: RSA key size not allowed")
)

// Key algorithms, as in the k= tag of the key record (RFC 6376 §3.6.1,
// RFC 8463 §4.2).
const (
	AlgRSA     = "rsa"
	AlgEd25519 = "ed25519"
)

// LoadKeyFile reads a private key file for signing. It refuses a file whose
// mode gives group or others any access (the error names the file), and
// reads the formats ParsePrivateKey documents.
func LoadKeyFile(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dkimsign: key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path: what we check is what we read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("dkimsign: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFormat, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o (chmod 600 it)", ErrKeyPermissions, path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("dkimsign: key file %s: %w", path, err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKey reads a private key in one of these forms:
//
//   - PEM "RSA PRIVATE KEY" (PKCS #1), as opendkim-genkey and
//     `openssl genrsa` (1.x) write;
//   - PEM "PRIVATE KEY" (PKCS #8) holding an RSA or Ed25519 key, as
//     `openssl genpkey` and `authmilter keygen` write;
//   - for Ed25519 only, the bare base64 form dkimpy's dknewkey and
//     OpenDKIM 2.11 use: the 32-byte seed (RFC 8032 §5.1.5 private key, as
//     in RFC 8463 Appendix A), or seed followed by the 32-byte public key.
//
// Encrypted PEM keys are refused: the daemon has nobody to ask for a
// passphrase. RSA keys must be MinRSABits..MaxRSABits.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	if block, _ := pem.Decode(data); block != nil {
		return parsePEM(block)
	}
	if strings.Contains(string(data), "-----BEGIN") {
		return nil, fmt.Errorf("%w: broken PEM armour", ErrKeyFormat)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(data)), ""))
	if err != nil {
		return nil, fmt.Errorf("%w: neither PEM nor a base64 Ed25519 seed", ErrKeyFormat)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !k.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(raw[ed25519.SeedSize:])) {
			return nil, fmt.Errorf("%w: Ed25519 public half does not match the seed", ErrKeyFormat)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: base64 key of %d bytes (an Ed25519 seed has 32)", ErrKeyFormat, len(raw))
}

func parsePEM(block *pem.Block) (crypto.Signer, error) {
	if _, enc := block.Headers["Proc-Type"]; enc || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("%w: the key is encrypted; store it without a passphrase", ErrKeyFormat)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")", ErrKeyFormat, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFormat, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("%w: %d bits (allowed %d to %d)", ErrKeySize, bits, MinRSABits, MaxRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: key type %T is not RSA or Ed25519", ErrKeyFormat, key)
}

// KeyInfo names a public key's algorithm (AlgRSA or AlgEd25519) and size in
// bits (the RSA modulus; 256 for Ed25519).
func KeyInfo(pub crypto.PublicKey) (alg string, bits int, err error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return AlgRSA, k.N.BitLen(), nil
	case ed25519.PublicKey:
		return AlgEd25519, 256, nil
	}
	return "", 0, fmt.Errorf("%w: key type %T is not RSA or Ed25519", ErrKeyFormat, pub)
}

// MarshalPrivateKey encodes a key as PEM "PRIVATE KEY" (PKCS #8), the form
// `authmilter keygen` writes for both algorithms.
func MarshalPrivateKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("dkimsign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
