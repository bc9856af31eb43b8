package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The container image (the repository's Dockerfile) built with podman and
// run next to the suite's Postfix. What the test does is what
// docs/operations.md#docker describes; keep the two in step.
//
// Networking: the container runs in its own network namespace with
// slirp4netns (--network slirp4netns:allow_host_loopback=true). The milter
// listens on the image's own address, inet:0.0.0.0:8893, published on the
// host's 127.0.0.1 only (-p 127.0.0.1:PORT:8893, PORT = the harness's main
// milter port, which Postfix's smtpTCP listener uses); the container reaches
// the test DNS server on the host's 127.0.0.1 as 10.0.2.2, slirp4netns's
// address for the host loopback. Nothing leaves the loopback interface. The
// unix socket is on a shared volume: the harness's socket directory is
// bind-mounted on the image's /run/authmilter.
const (
	// slirpHostLoopback is the host's 127.0.0.1 seen from a container run
	// with slirp4netns:allow_host_loopback=true (its default 10.0.2.0/24).
	slirpHostLoopback = "10.0.2.2"
	containerUID      = 65532 // the image's USER
	// containerStop is `podman stop -t`: the config's shutdown_timeout
	// (5s, milterConfig.toml) and 5 s for the process to exit. podman
	// kills the container after it, and a killed container does not exit 0.
	containerStop = "10"
)

// podman runs the podman command with a containers.conf of the test's own
// (CONTAINERS_CONF): the host's configuration is neither read nor changed.
type podman struct {
	env []string
}

// needPodman skips, or fails under CI=true, when podman or what it needs
// here is missing (scripts/test-all installs them), and writes the
// containers.conf the test runs with.
func needPodman(t *testing.T) *podman {
	t.Helper()
	for _, b := range []string{"podman", "runc", "slirp4netns"} {
		if _, err := exec.LookPath(b); err != nil {
			msg := b + " is missing: install the Debian packages podman runc slirp4netns (scripts/test-all does)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	// runc: crun refuses hybrid cgroup hierarchies. default_ulimits = []:
	// setting the default nofile rlimit is not permitted on every host
	// (podman's default would make every container fail to start).
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := writeFile(conf, "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n"); err != nil {
		t.Fatal(err)
	}
	return &podman{env: append(os.Environ(), "CONTAINERS_CONF="+conf)}
}

// run runs podman with args and returns its standard output, trimmed.
func (p *podman) run(args ...string) (string, error) {
	cmd := exec.Command("podman", args...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// must is run that fails t on error.
func (p *podman) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// logs is the container's log: the milter logs to stderr, which podman
// logs writes to its own stderr.
func (p *podman) logs(name string) string {
	cmd := exec.Command("podman", "logs", name)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(podman logs %s: %v)\n%s", name, err, out)
	}
	return string(out)
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestContainer builds the image, runs it as the MTA's neighbour and checks
// the promises of docs/operations.md#docker: non-root, HEALTHCHECK,
// read-only root filesystem, mail from the real Postfix over TCP and over
// a unix socket on a shared volume, SIGHUP, podman stop, the records on the
// volume across a new container. The image size and start-up time are
// logged (go test -v; recorded in docs/operations.md).
func TestContainer(t *testing.T) {
	needMilter(t)
	pod := needPodman(t)
	dnsSrv := startDNS(t)
	_, dnsPort, _ := net.SplitHostPort(dnsSrv.Addr())
	_, milterPort, _ := net.SplitHostPort(pf.milterTCP)
	suffix := randomSuffix(t)
	image := "localhost/authmilter-it:" + suffix
	volume := "authmilter-it-state-" + suffix

	// The build stage's files made on the host (no Go image is pulled),
	// handed in as the stage named "build" of the Dockerfile.
	began := time.Now()
	ctxDir := t.TempDir()
	if out, err := exec.Command("../scripts/image-files", filepath.Join(ctxDir, "out")).CombinedOutput(); err != nil {
		t.Fatalf("scripts/image-files: %v\n%s", err, out)
	}
	filesTook := time.Since(began)
	began = time.Now()
	pod.must(t, "build", "--quiet", "--format", "docker", "--build-context", "build="+ctxDir, "--tag", image, "..")
	buildTook := time.Since(began)
	t.Cleanup(func() { pod.run("rmi", "--force", image) })
	size, _ := strconv.ParseInt(pod.must(t, "image", "inspect", "--format", "{{.Size}}", image), 10, 64)
	t.Logf("image %s: %d bytes (%.1f MB); scripts/image-files %v, podman build %v",
		image, size, float64(size)/1e6, filesTook.Round(time.Millisecond), buildTook.Round(time.Millisecond))
	if user := pod.must(t, "image", "inspect", "--format", "{{.Config.User}}", image); user != "65532:65532" {
		t.Errorf("image USER %q, want 65532:65532", user)
	}

	// The configuration directory, mounted read-only on /etc/authmilter.
	cfgDir := t.TempDir()
	os.Chmod(cfgDir, 0o755)
	cfg := defaultConfig(slirpHostLoopback+":"+dnsPort, "inet:0.0.0.0:8893", "unix:/run/authmilter/milter.sock")
	cfg.StoreDir = "/var/lib/authmilter"
	writeConfig := func(c milterConfig) {
		t.Helper()
		// Written aside and renamed, as editors do: the directory mount
		// shows the new file (a file mount would keep the old inode).
		tmp := filepath.Join(cfgDir, ".authmilter.toml.new")
		if err := writeFile(tmp, c.toml()); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(cfgDir, "authmilter.toml")); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(cfg)

	// The shared volume for the unix socket: the directory where the
	// harness's Postfix expects the main milter's socket, writable by the
	// container's user for the test.
	sockDir := filepath.Dir(pf.milterSock)
	if err := os.Chown(sockDir, containerUID, containerUID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chown(sockDir, 0, 0) })

	pod.must(t, "volume", "create", volume)
	t.Cleanup(func() { pod.run("volume", "rm", "--force", volume) })

	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			if t.Failed() {
				t.Logf("container %s log (tail):\n%s", n, tail(pod.logs(n), 6000))
			}
			pod.run("rm", "--force", "--volumes", "--time", "0", n)
		}
	})
	// start runs a new container and waits until the milter answers the
	// option negotiation through the published port and the unix socket
	// exists; it returns the start-up time.
	start := func(t *testing.T, name string) time.Duration {
		t.Helper()
		names = append(names, name)
		began := time.Now()
		pod.must(t, "run", "--detach", "--name", name,
			"--read-only", "--read-only-tmpfs=false",
			"--network", "slirp4netns:allow_host_loopback=true",
			"--publish", "127.0.0.1:"+milterPort+":8893",
			"--volume", cfgDir+":/etc/authmilter:ro",
			"--volume", volume+":/var/lib/authmilter",
			"--volume", sockDir+":/run/authmilter",
			image)
		deadline := time.Now().Add(30 * time.Second)
		for {
			hc := exec.Command(milterBin, "healthcheck", "-addr", "inet:"+pf.milterTCP, "-timeout", "1s")
			_, sockErr := os.Stat(pf.milterSock)
			if hc.Run() == nil && sockErr == nil {
				return time.Since(began)
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s not answering on %s and %s after 30s; log:\n%s", name, pf.milterTCP, pf.milterSock, tail(pod.logs(name), 4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// stop is `podman stop`: SIGTERM must end the milter, exit 0, before
	// podman's timeout.
	stop := func(t *testing.T, name string) {
		t.Helper()
		began := time.Now()
		pod.must(t, "stop", "--time", containerStop, name)
		took := time.Since(began)
		code := pod.must(t, "inspect", "--format", "{{.State.ExitCode}}", name)
		t.Logf("podman stop %s: %v, exit code %s", name, took.Round(time.Millisecond), code)
		if code != "0" {
			t.Errorf("container %s exited %s after podman stop -t %s, want 0", name, code, containerStop)
		}
		if _, err := os.Stat(pf.milterSock); err == nil {
			t.Errorf("unix socket %s left behind", pf.milterSock)
		}
	}

	t.Run("the image as shipped", func(t *testing.T) {
		// No mounts: its own configuration (inet:0.0.0.0:8893), the store
		// on the anonymous volume of its VOLUME, read-only root.
		ports, err := freePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		name := "authmilter-it-shipped-" + suffix
		names = append(names, name)
		pod.must(t, "run", "--detach", "--name", name, "--read-only", "--read-only-tmpfs=false",
			"--network", "slirp4netns", "--publish", addr+":8893", image)
		deadline := time.Now().Add(30 * time.Second)
		for exec.Command(milterBin, "healthcheck", "-addr", "inet:"+addr, "-timeout", "1s").Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the image's own configuration does not answer on %s after 30s; log:\n%s", addr, tail(pod.logs(name), 4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := pod.run("healthcheck", "run", name); err != nil {
			t.Error(err)
		}
		pod.must(t, "stop", "--time", containerStop, name)
		if code := pod.must(t, "inspect", "--format", "{{.State.ExitCode}}", name); code != "0" {
			t.Errorf("exit code %s after podman stop, want 0", code)
		}
	})

	first := "authmilter-it-" + suffix
	startup := start(t, first)
	t.Logf("start-up (podman run to the milter answering): %v", startup.Round(time.Millisecond))

	good := client{IP: goodV4, Name: "mail.example.net", HELO: "mail.example.net"}
	bad := client{IP: badV4, Name: "spoofer.example.net", HELO: "spoofer.example.net"}
	const policyDomain = "dmarc-reject.test" // p=reject, SPF-authorised for goodV4
	recorded := 0                            // messages of policyDomain the milter saw

	t.Run("non-root", func(t *testing.T) {
		pid := pod.must(t, "inspect", "--format", "{{.State.Pid}}", first)
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("\t%d\t%d\t%d\t%d", containerUID, containerUID, containerUID, containerUID)
		for _, l := range strings.Split(string(status), "\n") {
			if (strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:")) && !strings.HasSuffix(l, want) {
				t.Errorf("container process %s: %q, want %d everywhere", pid, l, containerUID)
			}
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		// The image's HEALTHCHECK command, run by podman in the container.
		if _, err := pod.run("healthcheck", "run", first); err != nil {
			t.Error(err)
		}
	})

	t.Run("read-only root filesystem", func(t *testing.T) {
		// The container runs with --read-only (and no tmpfs added): the
		// milter serves all the same, and nothing outside the volumes can
		// be written.
		out, err := pod.run("exec", first, "/usr/local/bin/authmilter", "keygen",
			"--domain", "ro.test", "--selector", "s", "--type", "ed25519", "--out", "/etc")
		if err == nil || !strings.Contains(err.Error(), "read-only file system") {
			t.Errorf("keygen writing to /etc in the container: %v, want a read-only file system error\n%s", err, out)
		}
	})

	for _, c := range []struct{ name, addr string }{
		{"tcp", pf.smtpTCP},          // published 127.0.0.1 port
		{"unix socket", pf.smtpUnix}, // socket on the shared volume
	} {
		t.Run("postfix over "+c.name, func(t *testing.T) {
			id := newID(t.Name())
			from := "alice@" + policyDomain
			recorded++
			ar := wantAR(t, deliver(t, c.addr, good, from, message(id, from), id))
			// SPF passes only for the real client address (XCLIENT).
			wantResult(t, ar, "spf", "smtp.mailfrom", from, "pass")
			wantResult(t, ar, "dmarc", "header.from", policyDomain, "pass")
		})
	}

	t.Run("SIGHUP applies a changed configuration", func(t *testing.T) {
		from := "alice@" + policyDomain
		id := newID(t.Name())
		recorded++
		_, err := sendOne(pf.smtpTCP, bad, from, []string{"rcpt@rcpt.test"}, message(id, from))
		wantSMTPError(t, err, 550, "5.7.1")

		mon := cfg
		mon.Monitor = true
		writeConfig(mon)
		pod.must(t, "kill", "--signal", "HUP", first)
		deadline := time.Now().Add(10 * time.Second)
		for {
			logs := pod.logs(first)
			if strings.Contains(logs, "configuration reloaded") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reload logged within 10s of SIGHUP:\n%s", tail(logs, 3000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		id = newID(t.Name())
		recorded++
		ar := wantAR(t, deliver(t, pf.smtpTCP, bad, from, message(id, from), id))
		wantResult(t, ar, "dmarc", "header.from", policyDomain, "fail")
	})

	t.Run("podman stop with a message in flight", func(t *testing.T) {
		// An SMTP client stalls after DATA: the milter waits for the
		// message until shutdown_timeout, then closes the connection and
		// exits 0, and Postfix answers the end of the message with 451
		// (milter_default_action = tempfail): nothing is accepted
		// unchecked, the client retries. (Postfix passes MAIL and RCPT,
		// which need no reply, to the milter only at DATA: a client
		// stalled before DATA leaves the milter connection idle, closed
		// at once.)
		s, err := dial(pf.smtpTCP, good)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		for _, c := range []struct {
			code        int
			stage, line string
		}{{250, "MAIL", "MAIL FROM:<alice@" + policyDomain + ">"}, {250, "RCPT", "RCPT TO:<rcpt@rcpt.test>"}, {354, "DATA", "DATA"}} {
			if _, _, err := s.cmd(c.code, c.stage, "%s", c.line); err != nil {
				t.Fatal(err)
			}
		}
		stop(t, first)
		id := newID(t.Name())
		w := s.c.Text.DotWriter()
		w.Write(message(id, "alice@"+policyDomain))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.c.Text.ReadResponse(250)
		wantSMTPError(t, asSMTPError("EOM", err), 451, "4.7.1")
		if !strings.Contains(pod.logs(first), "messages still in flight were cut off") {
			t.Error("the milter did not wait for the message in flight until shutdown_timeout")
		}
	})

	t.Run("records on the volume in a new container", func(t *testing.T) {
		second := first + "-2"
		t.Logf("start-up of a second container on the same volume: %v", start(t, second).Round(time.Millisecond))
		from := "alice@" + policyDomain
		id := newID(t.Name())
		recorded++
		wantAR(t, deliver(t, pf.smtpUnix, good, from, message(id, from), id))
		stop(t, second)

		// The store on the volume, read from the host: one report for the
		// policy domain counting every message of it both containers saw.
		mnt := pod.must(t, "volume", "inspect", "--format", "{{.Mountpoint}}", volume)
		dir := t.TempDir()
		host := cfg
		host.StoreDir = mnt
		cfgPath := filepath.Join(dir, "report.toml")
		if err := writeFile(cfgPath, host.toml()); err != nil {
			t.Fatal(err)
		}
		tomorrow := time.Now().UTC().Add(26 * time.Hour).Format(time.RFC3339)
		if out, err := exec.Command(milterBin, "report", "-config", cfgPath, "-out", dir, "-now", tomorrow).CombinedOutput(); err != nil {
			t.Fatalf("authmilter report: %v\n%s", err, tail(string(out), 3000))
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.xml.gz"))
		got := map[string]int{}
		for _, f := range files {
			domain, n := readReport(t, f)
			got[domain] += n
		}
		if got[policyDomain] != recorded || len(got) != 1 {
			t.Errorf("reports from the volume count %v, want %d messages of %s", got, recorded, policyDomain)
		}
	})
}
