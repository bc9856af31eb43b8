package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeDashboard: serve with [dashboard] opens the dashboard on its
// own listener; it answers with the token and refuses without it.
func TestServeDashboard(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	mport, dport := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "am.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[milter]
listen = ["inet:%d@127.0.0.1"]
[store]
dir = "%s"
[metrics]
listen = ""
[dashboard]
listen = ":%d" # no host: loopback
token = "a-token-of-sixteen-chars"
resolve_names = false
`, mport, dir, dport)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, "serve", "-config", cfg)
	p.waitListening(fmt.Sprintf("127.0.0.1:%d", dport))
	url := fmt.Sprintf("http://127.0.0.1:%d/", dport)
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer a-token-of-sixteen-chars", 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || (c.want == 200 && !strings.Contains(string(b), "Your domains")) {
			t.Errorf("%q: %d %.80q, want %d", c.auth, resp.StatusCode, b, c.want)
		}
	}
}

func TestDashboardAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9894": "127.0.0.1:9894", "127.0.0.1:9894": "127.0.0.1:9894", "0.0.0.0:9894": "0.0.0.0:9894",
		"[::]:9894": "[::]:9894", "[::1]:80": "[::1]:80",
	} {
		if got := dashboardAddr(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
