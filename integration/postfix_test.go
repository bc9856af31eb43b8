package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Postfix binaries the harness needs (Debian package "postfix").
const (
	postfixBin  = "/usr/sbin/postfix"
	postconfBin = "/usr/sbin/postconf"
	postcatBin  = "/usr/sbin/postcat"
	postqueBin  = "/usr/sbin/postqueue"
)

// postfix is one private Postfix instance under dir, built from the tested
// loopback recipe: every domain is a virtual mailbox domain delivered into
// one Maildir, no DNS is used for delivery, XCLIENT is allowed from loopback.
type postfix struct {
	dir     string // root of the instance
	etc     string // config_directory
	spool   string // queue_directory
	maildir string // the one Maildir every recipient lands in
	maillog string

	// SMTP listeners, each "127.0.0.1:PORT".
	smtpTCP   string // smtpd_milters = the main milter over TCP
	smtpUnix  string // smtpd_milters = the main milter over a Unix socket
	smtpAlt   string // smtpd_milters = the per-test milter over TCP
	smtpPlain string // no milter; sender hold@harness.test is held (HOLD action)

	// Milter addresses Postfix is configured to use.
	milterTCP  string // "127.0.0.1:PORT" of the main milter
	milterSock string // Unix socket path of the main milter
	milterAlt  string // "127.0.0.1:PORT" of the per-test milter
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. The listeners are
// all held open until every port is picked, so the ports differ.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// newPostfix writes the configuration of a private instance under dir. It
// does not start it.
func newPostfix(dir string) (*postfix, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	pf := &postfix{
		dir:        dir,
		etc:        filepath.Join(dir, "etc"),
		spool:      filepath.Join(dir, "spool"),
		maildir:    filepath.Join(dir, "mail", "inbox"),
		maillog:    filepath.Join(dir, "log", "maillog"),
		smtpTCP:    addr(ports[0]),
		smtpUnix:   addr(ports[1]),
		smtpAlt:    addr(ports[2]),
		smtpPlain:  addr(ports[3]),
		milterTCP:  addr(ports[4]),
		milterAlt:  addr(ports[5]),
		milterSock: filepath.Join(dir, "run", "milter.sock"),
	}
	// The queue and the Maildir are used by unprivileged Postfix processes
	// (postfix, and uid 65534 for virtual(8)): every directory on the way
	// must be searchable.
	for _, d := range []string{dir, pf.etc, pf.spool, filepath.Join(dir, "data"), filepath.Join(dir, "log"),
		filepath.Join(dir, "mail"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	// data_directory must belong to postfix; the Maildir root to virtual's uid.
	if err := chownTo(filepath.Join(dir, "data"), "postfix"); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(dir, "mail"), 65534, 65534); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pf.etc, "main.cf"), []byte(pf.mainCF()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pf.etc, "master.cf"), []byte(pf.masterCF()), 0o644); err != nil {
		return nil, err
	}
	return pf, nil
}

func chownTo(path, user string) error {
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		return fmt.Errorf("user %s: %w", user, err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	out, err = exec.Command("id", "-g", user).Output()
	if err != nil {
		return fmt.Errorf("group of %s: %w", user, err)
	}
	gid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return os.Chown(path, uid, gid)
}

// mainCF is the main.cf of a self-contained loopback Postfix instance
// (every path under its own directory, chroot off, local delivery to a
// Maildir, XCLIENT allowed from loopback so a test sets the client), with
// short milter timeouts so a broken milter shows quickly. One change: with
// inet_protocols = ipv4, smtpd refuses "XCLIENT ADDR=IPV6:..." (501 Bad ADDR
// syntax), so IPv6 is enabled; inet_interfaces still binds 127.0.0.1 only.
func (pf *postfix) mainCF() string {
	return `compatibility_level = 3.6
queue_directory = ` + pf.spool + `
data_directory = ` + filepath.Join(pf.dir, "data") + `
maillog_file = ` + pf.maillog + `
maillog_file_prefixes = ` + pf.dir + `
myhostname = mx.rcpt.test
mydomain = rcpt.test
myorigin = $myhostname
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4, ipv6
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = static:all
virtual_mailbox_base = ` + filepath.Join(pf.dir, "mail") + `
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 0
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
local_header_rewrite_clients =
smtpd_banner = $myhostname ESMTP
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_error_sleep_time = 0
smtpd_client_event_limit_exceptions = 0.0.0.0/0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
delay_warning_time = 0h
smtpd_milters = inet:` + pf.milterTCP + `
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 10s
milter_command_timeout = 10s
milter_content_timeout = 10s
`
}

// masterCF has chroot "n" everywhere (a private queue has no /etc copy).
func (pf *postfix) masterCF() string {
	return pf.smtpTCP + ` inet n - n - - smtpd
` + pf.smtpUnix + ` inet n - n - - smtpd -o smtpd_milters=unix:` + pf.milterSock + ` -o syslog_name=postfix/unix
` + pf.smtpAlt + ` inet n - n - - smtpd -o smtpd_milters=inet:` + pf.milterAlt + ` -o syslog_name=postfix/alt
` + pf.smtpPlain + ` inet n - n - - smtpd -o smtpd_milters= -o syslog_name=postfix/nomilter
  -o { smtpd_sender_restrictions = check_sender_access inline:{ hold@harness.test=HOLD } }
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
`
}

// start starts the instance and waits for the SMTP greeting on every port.
// postfix(1) reports errors only to a terminal or the maillog, so a failure
// returns postconf's view of the config and the maillog.
func (pf *postfix) start() error {
	out, err := exec.Command(postfixBin, "-c", pf.etc, "start").CombinedOutput()
	if err != nil {
		conf, _ := exec.Command(postconfBin, "-c", pf.etc, "-n").CombinedOutput()
		return fmt.Errorf("postfix start: %w: %s\npostconf -n:\n%s\nmaillog:\n%s", err, out, conf, pf.logTail(4000))
	}
	for _, addr := range []string{pf.smtpTCP, pf.smtpUnix, pf.smtpAlt, pf.smtpPlain} {
		if err := waitGreeting(addr, 20*time.Second); err != nil {
			return fmt.Errorf("postfix started but %s does not greet: %w\nmaillog:\n%s", addr, err, pf.logTail(4000))
		}
	}
	return nil
}

// waitGreeting waits until addr sends a 3-digit greeting. Any connection
// opens a milter session, so start the milters first when that matters.
func waitGreeting(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, rerr := c.Read(buf)
			c.Write([]byte("QUIT\r\n"))
			c.Close()
			if rerr == nil && n >= 4 && buf[0] >= '2' && buf[0] <= '5' {
				return nil
			}
			err = fmt.Errorf("greeting %q: %v", buf[:n], rerr)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the instance and waits until the master process has exited
// (postfix stop returns ~1.5 s before that).
func (pf *postfix) stop() error {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(pf.spool, "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	out, err := exec.Command(postfixBin, "-c", pf.etc, "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix stop: %w: %s", err, out)
	}
	if pid <= 0 {
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return errors.New("postfix master did not exit within 15s; killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// logTail returns at most n bytes from the end of the maillog.
func (pf *postfix) logTail(n int) string {
	b, err := os.ReadFile(pf.maillog)
	if err != nil {
		return "(no maillog: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// held reports whether queue id sits in the hold queue, and returns its
// header block as postcat(1) shows it (the queued header, no delivery fields).
func (pf *postfix) held(id string) (bool, *delivered, error) {
	if _, err := os.Stat(filepath.Join(pf.spool, "hold", id)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil, nil
		}
		return false, nil, err
	}
	out, err := exec.Command(postcatBin, "-c", pf.etc, "-h", "-q", id).CombinedOutput()
	if err != nil {
		return true, nil, fmt.Errorf("postcat %s: %w: %s", id, err, out)
	}
	return true, parseMessage(string(out)), nil
}

// queueListing is postqueue -p (held messages are marked with "!").
func (pf *postfix) queueListing() (string, error) {
	out, err := exec.Command(postqueBin, "-c", pf.etc, "-p").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("postqueue -p: %w: %s", err, out)
	}
	return string(out), nil
}
