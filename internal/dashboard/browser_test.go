package dashboard

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browser starts Debian's chromium headless (no sandbox or GPU, no
// background networking, a fresh profile; the tests use loopback only) and
// returns a chromedp context. Under CI=true a missing chromium fails the
// test (scripts/test-all installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is required under CI (Debian package chromium; scripts/test-all installs it)")
		}
		t.Skip("chromium not installed")
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no timeout on this first call)
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// console collects every console message, exception and browser log entry
// (CSP violations and failed loads are log entries) of the tab.
type console struct {
	mu   sync.Mutex
	msgs []string
}

func (c *console) start(ctx context.Context) {
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m.String()+" "+m.URL)
			c.mu.Unlock()
		}
	}()
}

func (c *console) take() []string {
	time.Sleep(100 * time.Millisecond) // let the last events arrive
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.msgs
	c.msgs = nil
	return m
}

// TestDashboardInBrowser loads every page in a real browser with the token,
// at a desktop's and at a phone's width, and checks: status 200, nothing
// on the console (no error, exception, CSP violation or failed load), the
// seeded numbers where the page shows them, no page wider than the phone's
// screen. Without the token the browser gets 401 and none of the data.
// With UPDATE_SCREENSHOTS=1 it writes docs/dashboard-PAGE-desktop.png
// for every page and docs/dashboard-domain-phone.png.
func TestDashboardInBrowser(t *testing.T) {
	bctx := browser(t)
	srv := testServer(t, seed(t))
	var con console
	con.start(bctx)
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(srv.URL+"/domain?d=example.org"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnauthorized || strings.Contains(body, "1,550") || !strings.Contains(body, "authentication required") {
		t.Fatalf("without the token: status %d, body %q", resp.Status, body)
	}
	con.take() // the browser logs the 401 itself

	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer " + token}}); err != nil {
		t.Fatal(err)
	}
	pages := []struct {
		name, path string
		want       [][2]string // CSS selector, text it must contain
	}{
		{"overview", "/", [][2]string{{"#domains", "example.org"}, {"#domains .messages", "1,550"}, {"#domains .passrate", "90.3%"}}},
		{"domain", "/domain?d=example.org", [][2]string{{"#messages", "1,550"}, {"#passrate", "90.3%"}, {"#failing", "150"}, {"#reporters", "microsoft.test"}, {"#policy", "p=none"}}},
		{"sources", "/sources?d=example.org", [][2]string{{"#sources", "mail.example.org"}, {"#sources tbody tr:first-child", "1,400"}}},
		{"policy", "/policy?d=example.org", [][2]string{{"#affected", "150"}, {"#affected-sources tbody tr:first-child", "198.51.100.7"}}},
		{"local", "/local", [][2]string{{"#local tbody tr:first-child", "example.net"}, {"#local", "spoofed.test"}}},
	}
	shots := os.Getenv("UPDATE_SCREENSHOTS") != ""
	for _, size := range []struct {
		name string
		w, h int64
		opts []chromedp.EmulateViewportOption
	}{
		{"desktop", 1280, 900, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateScale(2)}},
	} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.w, size.h, size.opts...)); err != nil {
			t.Fatal(err)
		}
		for _, p := range pages {
			where := size.name + " " + p.name
			resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(srv.URL+p.path))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if resp.Status != 200 {
				t.Errorf("%s: status %d", where, resp.Status)
			}
			for _, w := range p.want {
				got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(w[0])))
				if err != nil {
					t.Fatalf("%s: %s: %v", where, w[0], err)
				}
				if !strings.Contains(got, w[1]) {
					t.Errorf("%s: %s shows %q, want %q", where, w[0], got, w[1])
				}
			}
			if p.name == "domain" { // the daily chart: two bars for each of 30 days
				n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart rect').length`))
				if err != nil || n != 60 {
					t.Errorf("%s: chart has %d bars (%v), want 60", where, n, err)
				}
			}
			wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
			if err != nil {
				t.Fatal(err)
			}
			if wide {
				t.Errorf("%s: the page is wider than the screen", where)
			}
			if m := con.take(); len(m) > 0 {
				t.Errorf("%s: console: %q", where, m)
			}
			if shots && (size.name == "desktop" || p.name == "domain") { // the phone's width once: the PNGs are large
				png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard-"+p.name+"-"+size.name+".png"), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
