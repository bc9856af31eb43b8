package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEGoVersion: README names the Go version go.mod needs (issue 19:
// a Debian 12 user with golang-go 1.19 must learn it before the first
// command fails).
func TestREADMEGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go line in go.mod")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Go " + string(m[1]) + " or newer", "golang-go` is 1.19", "https://go.dev/dl/"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README does not say %q", want)
		}
	}
}
