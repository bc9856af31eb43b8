package integration

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// State shared by every test of one `go test` run.
var (
	skipReason string   // non-empty: prerequisites missing outside CI
	pf         *postfix // the private Postfix instance
	workDir    string   // temp root: Postfix, milter configs and sockets
	milterBin  string   // authmilter built from this checkout
	buildErr   error    // why milterBin is missing
)

// prerequisites returns what is missing to run the suite on this machine.
func prerequisites() string {
	for _, b := range []string{postfixBin, postconfBin, postcatBin, postqueBin} {
		if _, err := os.Stat(b); err != nil {
			return b + " is missing: install the Debian package postfix (see integration/README.md)"
		}
	}
	if os.Geteuid() != 0 {
		return "the private Postfix instance needs root (postfix start, virtual delivery as uid 65534)"
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "the go command is needed to build ./cmd/authmilter"
	}
	return ""
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if missing := prerequisites(); missing != "" {
		if os.Getenv("CI") == "true" {
			// Under CI a missing prerequisite is a failure, never a skip.
			fmt.Fprintln(os.Stderr, "FAIL integration: prerequisite missing under CI=true:", missing)
			return 1
		}
		skipReason = "integration suite skipped: " + missing
		fmt.Fprintln(os.Stderr, skipReason)
		return m.Run()
	}

	var err error
	workDir, err = os.MkdirTemp("", "authmilter-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL integration:", err)
		return 1
	}
	// Postfix daemons run as user postfix and virtual(8) as uid 65534: they
	// must be able to reach their directories below this one.
	if err := os.Chmod(workDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL integration:", err)
		return 1
	}
	keep := os.Getenv("AUTHMILTER_IT_KEEP") != ""
	defer func() {
		if keep {
			fmt.Fprintln(os.Stderr, "integration: kept", workDir)
			return
		}
		os.RemoveAll(workDir)
	}()

	// Build the milter while Postfix creates its queue (~2 s).
	built := make(chan struct{})
	go func() {
		milterBin, buildErr = buildMilter(workDir)
		close(built)
	}()

	pf, err = newPostfix(workDir + "/postfix")
	if err == nil {
		err = pf.start()
	}
	<-built
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL integration: private Postfix:", err)
		if pf != nil {
			pf.stop()
		}
		return 1
	}
	defer func() {
		if err := pf.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
		}
	}()
	return m.Run()
}

// needPostfix skips (outside CI only) when prerequisites are missing.
func needPostfix(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// needMilter also fails the test when the milter could not be built.
func needMilter(t *testing.T) {
	t.Helper()
	needPostfix(t)
	if buildErr != nil {
		t.Fatalf("authmilter binary: %v", buildErr)
	}
}
