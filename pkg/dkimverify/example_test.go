package dkimverify_test

import (
	"errors"
	"fmt"

	"github.com/authmilter/authmilter/pkg/dkimverify"
)

// A key record read as the verifier reads it, and what it would do with a
// signature: the same answer `authmilter check-dns` gives a postmaster.
func ExampleParseKeyRecord() {
	rec, err := dkimverify.ParseKeyRecord("v=DKIM1; k=ed25519; h=sha256; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	fmt.Println(rec.Type, rec.Bits, err, rec.Usable("ed25519"), rec.Usable("rsa") != nil)

	rec, _ = dkimverify.ParseKeyRecord("v=DKIM1; p=")
	fmt.Println(errors.Is(rec.Usable(""), dkimverify.ErrKeyRevoked))

	_, err = dkimverify.ParseKeyRecord("v=DKIM1;; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	fmt.Println(errors.Is(err, dkimverify.ErrKeyRecord))
	// Output:
	// ed25519 256 <nil> <nil> true
	// true
	// true
}
