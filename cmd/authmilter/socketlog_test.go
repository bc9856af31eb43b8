package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
)

// TestLogSocket (issue 19): the start log names a unix socket's path,
// owner, group and mode, says what to set when root gives Postfix a socket
// it cannot open, and warns about TCP on every interface.
func TestLogSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authmilter.sock")
	port := strconv.Itoa(freePort(t))
	tests := []struct {
		name, spec, group string
		euid              int
		postfix           bool
		want, notWant     []string
	}{
		{"root, no socket_group, postfix exists", "unix:" + path, "", 0, true,
			[]string{"msg=\"milter socket\"", "path=" + path, "mode=0660", "owner=", "group=", `set milter.socket_group = \"postfix\"`}, nil},
		{"socket_group set", "unix:" + path, "x", 0, true, []string{"mode=0660"}, []string{"socket_group"}},
		{"not root", "unix:" + path, "", 1000, true, []string{"mode=0660"}, []string{"socket_group"}},
		{"no postfix group", "unix:" + path, "", 0, false, []string{"mode=0660"}, []string{"socket_group"}},
		{"inet without host", "inet:" + port, "", 0, true, []string{"every interface"}, nil},
		{"inet on loopback", "inet:127.0.0.1:" + port, "", 0, true, nil, []string{"every interface", "WARN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock, err := config.ParseSocket(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := milter.Listen(sock, 0o660, "")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			logSocket(log, tc.spec, ln, tc.group, socketEnv{
				euid:       func() int { return tc.euid },
				groupExist: func(string) bool { return tc.postfix },
			})
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, buf.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(buf.String(), w) {
					t.Errorf("log has %q:\n%s", w, buf.String())
				}
			}
		})
	}
}
