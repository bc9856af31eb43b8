package milter

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/authmilter/authmilter/internal/config"
)

// A socket directory any user may write to is refused, through a symlink
// too; a sticky one (like /tmp) is accepted with a warning; a private one
// without (issue 16).
func TestListenSocketDir(t *testing.T) {
	base := t.TempDir()
	mkdir := func(name string, mode fs.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return d
	}
	open := mkdir("open", 0o777)
	if err := os.Symlink(open, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dir string
		refused   bool
		warning   bool
	}{
		{"writable by all", open, true, false},
		{"through a symlink", filepath.Join(base, "link"), true, false},
		{"below a directory writable by all", mkdir("open/sub", 0o750), true, false},
		{"sticky, writable by all", mkdir("sticky", 0o777|fs.ModeSticky), false, true},
		{"private", mkdir("private", 0o750), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(tt.dir, "milter.sock")
			ln, err := Listen(config.Socket{Network: "unix", Address: path}, 0o660, "")
			if tt.refused {
				if err == nil || !strings.Contains(err.Error(), "writable by every user") {
					t.Fatalf("Listen = %v, want refused", err)
				}
				if _, err := os.Lstat(path); err == nil {
					t.Error("a socket was left behind")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if w := SocketDirWarning(path); (w != "") != tt.warning {
				t.Errorf("SocketDirWarning = %q, want a warning: %v", w, tt.warning)
			}
		})
	}
}

// Mode and group are set where no other user can reach the socket, then
// it is renamed into place: a symlink swapped in at the socket's path
// after bind is replaced, never followed (issue 16: chmod/chown on the path
// would have changed the file the symlink points to).
func TestListenSymlinkSwappedAfterBind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "milter.sock")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	vfi, _ := os.Stat(victim)
	vgid := vfi.Sys().(*syscall.Stat_t).Gid
	testHookAfterBind = func() {
		if err := os.Symlink(victim, path); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookAfterBind = nil }()
	// A group other than the victim's, when running as root.
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = int(vgid) + 1
	}
	ln, err := Listen(config.Socket{Network: "unix", Address: path}, 0o666, strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Gid != vgid {
		t.Errorf("the symlink's target was changed: mode %04o gid %d", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o666 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket at the path: %v %v", fi.Mode(), err)
	}
	if ln.Addr().String() != path {
		t.Errorf("Addr %s, want %s", ln.Addr(), path)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if left, _ := filepath.Glob(filepath.Join(dir, ".authmilter-*")); len(left) != 0 {
		t.Errorf("private directories left: %v", left)
	}
	ln.Close()
	if _, err := os.Lstat(path); err == nil {
		t.Error("socket still there after Close")
	}
}
