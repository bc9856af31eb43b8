package main

import (
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/testmilter"
)

// proc is the real binary running one command, its stderr in logs.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testmilter.Logs
	exited chan struct{} // closed when the process has ended
	err    error         // Wait's result, once exited is closed
}

// startProc starts bin with args. At cleanup the process is killed and,
// when the test failed, its log is shown.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), logs: &testmilter.Logs{}, exited: make(chan struct{})}
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s log:\n%s", args[0], p.logs.String())
		}
	})
	return p
}

// waitUntil polls cond until it holds, and fails the test if the process
// ends first or cond never holds within a generous deadline (a liveness
// check, not a timing assertion).
func (p *proc) waitUntil(what string, cond func() bool) {
	p.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		select {
		case <-p.exited:
			p.t.Fatalf("exited (%v) before %s:\n%s", p.err, what, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("never %s:\n%s", what, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitListening waits until addr (host:port) accepts TCP connections.
func (p *proc) waitListening(addr string) {
	p.t.Helper()
	p.waitUntil("listening on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to end and returns Wait's result.
func (p *proc) wait() error {
	<-p.exited
	return p.err
}
