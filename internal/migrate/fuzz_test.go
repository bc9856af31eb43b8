package migrate

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzMigrate: any opendkim.conf/opendmarc.conf/policyd-spf.conf text and
// host list migrates without a panic, and what is written is TOML the
// decoder reads (the checks may report problems, never a broken file).
func FuzzMigrate(f *testing.F) {
	for _, s := range []string{
		"Mode sv\nDomain example.com\nSelector s\nKeyFile /k\nInternalHosts /hosts\n",
		"KeyTable refile:/kt\nSigningTable refile:/st\nSocket inet:8891@localhost\n",
		"IgnoreHosts /hosts\nIgnoreMailFrom a.example, b.example\nRejectString \"x %s\"\nSocket local:/var/run/x.sock\n",
		"Mail_From_reject = Softfail\nskip_addresses = 127.0.0.0/8,::1\nWhitelist = 192.0.2.1\nHeader_Type = AR\n",
		"\x00\xff Mode\n#\nKeyTable db:/x\n",
	} {
		f.Add(s, "127.0.0.1\n!10.0.0.1\n*.example.com\n[::1]\n*@*.x\n")
	}
	dir := f.TempDir() // one per process: the calls of one worker are sequential
	f.Fuzz(func(t *testing.T, conf, table string) {
		for _, n := range []string{"hosts", "kt", "st"} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(table), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(c, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, in := range []Inputs{{OpenDKIM: c}, {OpenDMARC: c}, {PolicydSPF: c}} {
			in.Root = dir
			res, err := Run(in)
			if err != nil {
				t.Fatal(err)
			}
			if p := check(res.TOML); len(p) > 0 && !decodes(res.TOML) {
				t.Fatalf("written TOML does not decode: %v\n%s", p, res.TOML)
			}
		}
	})
}
