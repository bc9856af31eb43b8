package milter

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/authmilter/authmilter/internal/config"
)

// testHookAfterBind runs, in tests, after the socket is bound and before it
// gets its mode and group.
var testHookAfterBind func()

// listenUnix opens a unix socket at s.Address with mode and group (issue
// 16). Setting them on the socket's path after bind, as chmod(2) and
// chown(2) do, follows a symlink that another user swapped in meanwhile: a
// daemon running as root would hand /etc/shadow to the MTA's group. So the
// socket is bound in a private directory made for it (mode 0700, in the
// socket's directory, so on the same file system), given its mode and group
// there through that directory's descriptor (nobody else can put anything
// in it), and renamed into place: rename(2) replaces a name and never
// follows a symlink at the target.
func listenUnix(s config.Socket, mode fs.FileMode, group string) (net.Listener, error) {
	path := s.Address
	if err := checkSocketDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", s)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is listening on it", s)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: removing stale socket: %w", s, err)
		}
	}
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, fmt.Errorf("listen %s: %w", s, err)
		}
	}
	private, err := os.MkdirTemp(filepath.Dir(path), ".authmilter-")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	defer os.RemoveAll(private)
	d, err := os.Open(private)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	defer d.Close()
	ln, err := net.Listen("unix", filepath.Join(private, "s"))
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", s, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // its name moves; unixListener.Close removes it
	if testHookAfterBind != nil {
		testHookAfterBind()
	}
	dfd := int(d.Fd())
	err = unix.Fchmodat(dfd, "s", uint32(mode.Perm()), 0)
	if err == nil && gid >= 0 {
		err = unix.Fchownat(dfd, "s", -1, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil {
		err = unix.Renameat(dfd, "s", unix.AT_FDCWD, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: setting up the socket: %w", s, err)
	}
	return &unixListener{UnixListener: ul, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener is a socket renamed into place after bind: its address is
// the final path, and closing removes it (as net.UnixListener does with the
// path it bound).
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if !errors.Is(err, net.ErrClosed) {
		os.Remove(l.addr.Name)
	}
	return err
}

// checkSocketDir refuses a socket directory that every user may write to:
// if it, or a directory above it, is writable by others without the sticky
// bit, any local user can replace the socket (or the directory holding it)
// with their own and read or answer the MTA's traffic. Both the path as
// given and the directories it resolves to are checked.
//
// OpenDKIM and OpenDMARC do not check (their sockets usually live in a
// directory of their own under /run or Postfix's spool); Postfix itself
// refuses a world-writable queue directory. A sticky world-writable
// directory such as /tmp is let through: others cannot rename or remove
// what is ours there (SocketDirWarning says why it is still a poor place).
func checkSocketDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	chains := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		chains = append(chains, real)
	}
	for _, p := range chains {
		for d := p; ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("socket directory: %w", err)
			}
			if m := fi.Mode(); m.Perm()&0o002 != 0 && m&fs.ModeSticky == 0 {
				return fmt.Errorf("socket directory %s is writable by every user (mode %04o, no sticky bit): "+
					"any local user could replace the socket; put it in a directory only the milter's user and root can write, "+
					"e.g. /run/authmilter or Postfix's /var/spool/postfix/authmilter", d, m.Perm())
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}

// SocketDirWarning returns why a unix socket's directory, which Listen
// accepted, is still a poor place for it, or "": writable by every user
// with the sticky bit (another user can take the socket's name while the
// milter is down), or owned by a user other than root and this process's
// (that user can replace the socket).
func SocketDirWarning(path string) string {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Sprintf("socket directory %s is writable by every user (sticky): another user can take the socket's name "+
			"while the milter is not running; prefer a directory of the milter's own, e.g. /run/authmilter", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("socket directory %s belongs to uid %d, who can replace the socket; prefer a directory owned by root or the milter's user", dir, st.Uid)
	}
	return ""
}

// lookupGroup returns the id of a group given by name or number.
func lookupGroup(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		if g, err = user.LookupGroupId(group); err != nil {
			return 0, fmt.Errorf("socket_group %q: %w", group, err)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("socket_group %q: %w", group, err)
	}
	return gid, nil
}
