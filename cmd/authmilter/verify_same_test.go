package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/testmilter"
)

// sameCorpora are the message files of the repository's test corpora.
var sameCorpora = []string{
	"testdata/verify/*.eml",
	"../../integration/testdata/dkim/*.eml",
	"../../pkg/dkimverify/testdata/*.eml",
	"../../internal/milter/testdata/*.eml",
	"../../internal/service/testdata/*.eml",
	"../../internal/failrep/testdata/samples/*.eml",
	"../../pkg/arc/testdata/chains/*.eml",
	"../../pkg/report/testdata/samples/*.eml",
}

// `authmilter verify` runs the milter's own path (issue 18): every message
// of the test corpora, sent through the real milter protocol to the service
// and given to verify, gets byte for byte the same header edits and the same
// verdict, for a client that passes SPF and for the null sender.
func TestVerifySameAsMilter(t *testing.T) {
	var files []string
	for _, g := range sameCorpora {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 30 {
		t.Fatalf("only %d corpus messages found", len(files))
	}
	var zone strings.Builder
	for _, f := range []string{"testdata/verify/zone.txt", "testdata/verify/keys.zone", "../../pkg/dkimverify/testdata/keys.zone",
		"../../pkg/dkimverify/testdata/rfc.zone", "../../integration/testdata/dkim/keys.zone"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		zone.Write(b)
		zone.WriteByte('\n')
	}
	d, cfgPath := verifyDNS(t, "[spf]\nreceived_spf_header = true\n")
	if err := d.SetZone(zone.String()); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	svc := testmilter.NewService(t, cfg, slog.New(slog.DiscardHandler), nil)
	ms := testmilter.Serve(t, svc, milter.Options{}, nil)

	envs := []struct{ ip, helo, from string }{
		{"192.0.2.10", "mail.example.org", "alice@example.org"},
		{"203.0.113.5", "evil.test", ""},
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := parseMessage(raw)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		for _, env := range envs {
			name := filepath.Base(file) + "/" + env.ip
			// The milter, as Postfix drives it.
			s, err := testmilter.Dial("tcp", ms.Addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tm := testmilter.Message{IP: env.ip, Host: "[" + env.ip + "]", HELO: env.helo, From: env.from}
			for _, f := range msg.fields {
				tm.Headers = append(tm.Headers, [2]string{f.Name, f.Value})
			}
			for b := msg.body; len(b) > 0; {
				n := min(len(b), chunkSize)
				tm.Body = append(tm.Body, b[:n])
				b = b[n:]
			}
			res, err := testmilter.Send(s, tm)
			s.Close()
			if err != nil {
				t.Errorf("%s: milter: %v", name, err)
				continue
			}
			var got []string
			deleted := 0
			action := "accept"
			for _, m := range res.Mods {
				switch m.Code {
				case gomilter.ActInsertHeader:
					// Each is inserted at the very top: the last one
					// sent ends up topmost.
					got = append([]string{m.HeaderName + ":" + m.HeaderValue}, got...)
				case gomilter.ActChangeHeader:
					deleted++
				case gomilter.ActQuarantine:
					action = "quarantine"
				}
			}
			var reply string
			switch res.Action.Code {
			case gomilter.ActReplyCode:
				reply = fmt.Sprintf("%d %s", res.Action.SMTPCode, res.Action.SMTPText)
				action = map[bool]string{true: "reject", false: "tempfail"}[res.Action.SMTPCode >= 500]
			case gomilter.ActContinue, gomilter.ActAccept:
			default:
				action = string(res.Action.Code)
			}

			// verify, on the file.
			var out, errb bytes.Buffer
			args := []string{"verify", "-config", cfgPath, "-json", "-ip", env.ip, "-helo", env.helo, "-mail-from", env.from, file}
			if code := run(args, &out, &errb); code != 0 {
				t.Errorf("%s: verify exit %d: %s", name, code, errb.String())
				continue
			}
			var rep verifyReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var want []string
			for _, h := range rep.AddHeaders {
				// In the milter's wire form: a leading space, folds as LF.
				want = append(want, h.Name+": "+strings.ReplaceAll(h.Value, "\r\n", "\n"))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: header edits differ\nmilter: %q\nverify: %q", name, got, want)
			}
			if deleted != rep.Removed || action != rep.Disposition.Action || reply != strings.ReplaceAll(rep.Disposition.Reply, "%%", "%") {
				t.Errorf("%s: verdict differs: milter %s %q, %d removed; verify %s %q, %d removed",
					name, action, reply, deleted, rep.Disposition.Action, rep.Disposition.Reply, rep.Removed)
			}
		}
	}
	t.Logf("%d messages, %d envelopes each", len(files), len(envs))
}
