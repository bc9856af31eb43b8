package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/milter"
)

// noChecks is a milter backend that checks nothing.
type noChecks struct{}

func (noChecks) Begin(context.Context, milter.Envelope) milter.Message { return nil }

func TestHealthcheck(t *testing.T) {
	// A real milter server on a unix socket and on TCP.
	srv := milter.NewServer(noChecks{}, milter.Options{IdleTimeout: time.Minute,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "m.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range []net.Listener{tcp, unix} {
		go srv.Serve(ln) //nolint:errcheck // ends at Shutdown
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck
	})

	// A listener that accepts and hangs up: not a milter.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("authserv_id = \"mx.test\"\n[milter]\nlisten = [\"inet:%s\"]\n", tcp.Addr())), 0o600)

	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-addr", "inet:" + tcp.Addr().String()}, 0, "ok"},
		{[]string{"-addr", "unix:" + sock}, 0, "ok"},
		{[]string{"-config", cfg}, 0, "ok"},
		{[]string{"-addr", "inet:" + mute.Addr().String(), "-timeout", "2s"}, 1, "negotiate"},
		{[]string{"-addr", fmt.Sprintf("inet:127.0.0.1:%d", freePort(t))}, 1, "refused"},
		{[]string{"-addr", "unix:" + filepath.Join(t.TempDir(), "none.sock")}, 1, "no such file"},
		{[]string{"-addr", "bogus"}, 2, "socket"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(append([]string{"healthcheck"}, tt.args...), &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Errorf("%v: exit %d (want %d), output lacks %q: %s%s", tt.args, code, tt.code, tt.want, out.String(), errb.String())
		}
	}
}
