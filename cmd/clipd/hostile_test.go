package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/testimage"
	"github.com/clipd/clipd/server"
)

// hostileDaemon runs the real daemon under a 3 GiB address-space limit
// (prlimit --as), so that any input that makes it read or decode
// gigabytes kills it and fails the test, instead of passing on a machine
// with memory to spare.
func hostileDaemon(t *testing.T, dir, conf string) *daemonProc {
	t.Helper()
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatalf("prlimit (util-linux) is needed: %v", err)
	}
	wrapper := filepath.Join(dir, "limited-clipd")
	script := fmt.Sprintf("#!/bin/sh\nexec prlimit --as=%d -- %s \"$@\"\n", int64(3)<<30, clipdBinary(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return startDaemonWith(t, wrapper, dir, conf)
}

// Everything the hardening issue found taking the daemon down, against
// the real binary: classify of devices, FIFOs, sparse and decompression-
// bomb files, and files outside classify_dirs; a labels path swapped for
// /dev/zero and for a FIFO followed by SIGHUP; an emptied config on
// SIGHUP. The daemon must answer each with an error, keep classifying,
// and stop promptly on SIGTERM.
func TestDaemonSurvivesHostileInput(t *testing.T) {
	dir := testDir(t)
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	os.Symlink("/dev/zero", filepath.Join(images, "zero.png"))
	os.Symlink("/dev/urandom", filepath.Join(images, "urandom.jpg"))
	syscall.Mkfifo(filepath.Join(images, "fifo.png"), 0o644)
	sparse := filepath.Join(images, "sparse.png")
	if f, err := os.Create(sparse); err == nil {
		f.Truncate(2 << 30)
		f.Close()
	}
	os.WriteFile(filepath.Join(images, "bomb.png"), testimage.PNGDeclaring(20000, 20000), 0o644)
	os.WriteFile(filepath.Join(images, "text.png"), []byte("root:*:20000:0:99999:7:::\n"), 0o644)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	conf := strings.Replace(patternConfig(demoBundle(t), labels, ""), `path = "%SOCKET%"`,
		fmt.Sprintf("path = \"%%SOCKET%%\"\nclassify_dirs = [%q]", images), 1)
	d := hostileDaemon(t, dir, conf)
	c := d.dial()
	nextOf(t, c, "result", 30*time.Second)

	for name, want := range map[string]string{
		"zero.png":    "leads out of",
		"urandom.jpg": "leads out of",
		"fifo.png":    "not a regular file (a FIFO)",
		"sparse.png":  "file too large",
		"bomb.png":    "exceeds the limit of 100000000 pixels",
		"text.png":    "not a PNG or JPEG image",
	} {
		_, err := c.Command(server.Command{Cmd: "classify", Image: filepath.Join(images, name), Labels: []string{"a", "b"}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("classify %s: %v, want %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "root:") {
			t.Errorf("classify %s: the error quotes the file: %v", name, err)
		}
	}
	for _, path := range []string{"/etc/shadow", "/proc/self/environ", "/nonexistent", "/dev/zero"} {
		_, err := c.Command(server.Command{Cmd: "classify", Image: path, Labels: []string{"a"}})
		if err == nil || !strings.Contains(err.Error(), "not under a directory this daemon reads images from") {
			t.Errorf("classify %s: %v", path, err)
		}
	}
	// The same bomb inline.
	_, err := c.Command(server.Command{Cmd: "classify", ImageB64: base64.StdEncoding.EncodeToString(testimage.PNGDeclaring(20000, 20000)), Labels: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("inline 20000x20000 PNG: %v", err)
	}
	// A client that sends an 8 MB id and never reads.
	if nc, err := net.Dial("unix", d.socket); err == nil {
		go func() {
			id := `"` + strings.Repeat("i", 7<<20) + `"`
			for i := 0; i < 20; i++ {
				if _, err := fmt.Fprintf(nc, "{\"id\":%s,\"cmd\":\"nope\"}\n", id); err != nil {
					return
				}
			}
		}()
		defer nc.Close()
	}

	// The labels path becomes a symlink to /dev/zero, then a FIFO; each
	// is refused and the daemon keeps the last good set.
	os.Remove(labels)
	os.Symlink("/dev/zero", labels)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitError(t, c, "not a regular file")
	os.Remove(labels)
	syscall.Mkfifo(labels, 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitError(t, c, "not a regular file (a FIFO)")
	// An emptied config changes nothing either.
	os.WriteFile(d.config, nil, 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitError(t, c, "no [[camera]] tables")

	before := decodeResult(t, nextOf(t, c, "result", 20*time.Second)).Seq
	if after := decodeResult(t, nextOf(t, c, "result", 20*time.Second)).Seq; after <= before {
		t.Errorf("results stopped: seq %d then %d", before, after)
	}
	if took := d.stop(); took > 10*time.Second {
		t.Errorf("SIGTERM took %v", took)
	}
}

func waitError(t *testing.T, c *server.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m := nextOf(t, c, "error", time.Until(deadline))
		if strings.Contains(m.Message, want) {
			return
		}
	}
	t.Fatalf("no error containing %q", want)
}
