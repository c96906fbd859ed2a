package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/promptcache"
	"golang.org/x/sys/unix"
)

// Every test of this package keeps its prompt cache in a temporary
// directory, never in /var/lib/clipd or ~/.cache; tests that look at the
// cache give --state-dir or state_dir themselves.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clipd-state")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("CLIPD_STATE_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func referenceImage(t *testing.T) string {
	return filepath.Join(testmodel.SharedDir(t), "reference", "images", "img0_640x480.jpg")
}

// plant stores chosen embeddings for prompts in the demo model's cache in
// state, as if they had been encoded: a command that then reports them
// has read the cache instead of encoding.
func plant(t *testing.T, state string, prompts []string, embs [][]float32) {
	t.Helper()
	m, err := model.Open(demoBundle(t), model.Options{Backend: engine.BackendONNXRuntime})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.OpenPromptCache(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(prompts, embs); err != nil {
		t.Fatal(err)
	}
}

// imageEmbedding is what the demo model makes of the reference image.
func imageEmbedding(t *testing.T) []float32 {
	var line struct{ Embedding []float32 }
	out := clipd(t, "", "embed", "--model", demoBundle(t), "--backend", "onnxruntime", "--image", referenceImage(t))
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatal(err)
	}
	return line.Embedding
}

type classifyLine struct {
	Top []struct {
		Label string
		Score float64
	}
}

// classify with a warm cache takes the label weights from it: planted
// embeddings (alpha = the image itself, beta = its opposite) decide the
// result, which real encoding would not give.
func TestClassifyUsesThePromptCache(t *testing.T) {
	state := t.TempDir()
	img := imageEmbedding(t)
	neg := make([]float32, len(img))
	for i, v := range img {
		neg[i] = -v
	}
	plant(t, state, []string{"a photo of a alpha.", "a photo of a beta."}, [][]float32{img, neg})
	labelsFile := filepath.Join(t.TempDir(), "ab.labels")
	writeFile(t, labelsFile, "alpha\nbeta\n")
	run := func(extra ...string) classifyLine {
		args := append([]string{"classify", "--model", demoBundle(t), "--backend", "onnxruntime", "--labels", labelsFile}, extra...)
		var line classifyLine
		if err := json.Unmarshal([]byte(clipd(t, "", append(args, referenceImage(t))...)), &line); err != nil {
			t.Fatal(err)
		}
		return line
	}
	warm := run("--state-dir", state)
	if warm.Top[0].Label != "alpha" || warm.Top[0].Score < 0.99 {
		t.Fatalf("with the planted cache: %+v, want alpha at ~1", warm.Top)
	}
	cold := run("--state-dir", state, "--no-prompt-cache")
	if math.Abs(cold.Top[0].Score-warm.Top[0].Score) < 1e-3 {
		t.Fatalf("--no-prompt-cache gave the planted result %+v", cold.Top)
	}
}

// A one-shot command does not know the daemon's prompt_cache_max, so its
// writes evict nothing: a daemon's cache of more than the default bound
// (here one segment of 2 GiB as eviction sees it, a sparse file, under
// another model's key, older than anything) survives a cold classify.
func TestClassifyEvictsNothing(t *testing.T) {
	state := t.TempDir()
	other := filepath.Join(state, promptcache.DirName, "v1", strings.Repeat("ab", 32))
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(other, "0123456789abcdef.seg")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 2*promptcache.DefaultMaxBytes); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	os.Chtimes(big, old, old)
	labelsFile := filepath.Join(t.TempDir(), "c.labels")
	writeFile(t, labelsFile, "red\ngreen\n")
	clipd(t, "", "classify", "--model", demoBundle(t), "--backend", "onnxruntime", "--labels", labelsFile,
		"--state-dir", state, referenceImage(t))
	if _, err := os.Stat(big); err != nil {
		t.Fatalf("classify evicted the daemon's cache: %v", err)
	}
	segs, _ := filepath.Glob(filepath.Join(state, promptcache.DirName, "v1", "*", "*.seg"))
	if len(segs) != 2 {
		t.Errorf("segments %v, want the planted one and classify's", segs)
	}
}

// A cold classify fills the cache with every prompt of the labels file; a
// warm one gives the same output.
func TestClassifyFillsThePromptCache(t *testing.T) {
	state := t.TempDir()
	labelsFile := filepath.Join(t.TempDir(), "c.labels")
	writeFile(t, labelsFile, "template: a photo of a {}.\ntemplate: a drawing of a {}.\nred\ngreen\nblue\n")
	args := []string{"classify", "--model", demoBundle(t), "--backend", "onnxruntime", "--labels", labelsFile,
		"--state-dir", state, "--top-k", "0", referenceImage(t)}
	cold := clipd(t, "", args...)
	m, err := model.Open(demoBundle(t), model.Options{Backend: engine.BackendONNXRuntime})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.OpenPromptCache(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	set, err := labels.Load(labelsFile)
	if err != nil {
		t.Fatal(err)
	}
	prompts := set.Prompts()
	want, err := m.EncodePrompts(context.Background(), prompts)
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range c.Get(prompts) {
		if got == nil {
			t.Fatalf("%q not cached", prompts[i])
		}
		if cos := testmodel.Cosine(got, want[i]); cos < 0.99999 {
			t.Fatalf("%q cached with cosine %v to its encoding", prompts[i], cos)
		}
	}
	if warm := clipd(t, "", args...); warm != cold {
		t.Fatalf("warm output differs:\n%s\n%s", cold, warm)
	}
}

func TestEmbedTextUsesThePromptCache(t *testing.T) {
	state := t.TempDir()
	planted := make([]float32, len(imageEmbedding(t)))
	planted[3] = 1
	plant(t, state, []string{"planted text"}, [][]float32{planted})
	out := clipd(t, "", "embed", "--model", demoBundle(t), "--backend", "onnxruntime", "--state-dir", state,
		"--text", "planted text", "--text", "fresh text", "--text", "planted text")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	var got [3]struct {
		Text      string
		Embedding []float32
	}
	for i, l := range lines {
		json.Unmarshal([]byte(l), &got[i])
	}
	for _, i := range []int{0, 2} {
		if got[i].Text != "planted text" || !slices32Equal(got[i].Embedding, planted) {
			t.Fatalf("line %d: %q is not the cached embedding", i, got[i].Text)
		}
	}
	// The fresh text was stored: a second run prints it unchanged.
	again := clipd(t, "", "embed", "--model", demoBundle(t), "--backend", "onnxruntime", "--state-dir", state, "--text", "fresh text")
	if strings.TrimSpace(again) != lines[1] {
		t.Fatalf("second run: %s, first: %s", again, lines[1])
	}
}

func slices32Equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestResolveStateDir(t *testing.T) {
	if got, _ := resolveStateDir("/x/flag"); got != "/x/flag" {
		t.Errorf("flag: %q", got)
	}
	t.Setenv("CLIPD_STATE_DIR", "/x/env")
	if got, _ := resolveStateDir(""); got != "/x/env" {
		t.Errorf("env: %q", got)
	}
	t.Setenv("CLIPD_STATE_DIR", "")
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	daemonDir := t.TempDir()
	old := daemonStateDir
	t.Cleanup(func() { daemonStateDir = old })
	daemonStateDir = daemonDir
	if got, _ := resolveStateDir(""); got != daemonDir {
		t.Errorf("writable daemon directory: %q, want %q", got, daemonDir)
	}
	daemonStateDir = filepath.Join(daemonDir, "missing")
	if got, _ := resolveStateDir(""); got != filepath.Join(xdg, "clipd") {
		t.Errorf("no daemon directory: %q, want %q", got, filepath.Join(xdg, "clipd"))
	}
}

// openPTY returns a real terminal: the master side and the path of the
// slave.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return master, "/dev/pts/" + strconv.Itoa(n)
}

// The progress bar is drawn on stderr only when stderr is a terminal; a
// pipe (a script, a log file) gets none of it.
func TestClassifyProgressBarOnlyOnATerminal(t *testing.T) {
	labelsFile := filepath.Join(t.TempDir(), "many.labels")
	var b strings.Builder
	b.WriteString("template: a photo of a {}.\ntemplate: a {} shape.\n")
	for i := range 300 {
		fmt.Fprintf(&b, "thing %d\n", i)
	}
	writeFile(t, labelsFile, b.String())
	args := []string{"classify", "--model", demoBundle(t), "--backend", "onnxruntime", "--labels", labelsFile, "--no-prompt-cache", referenceImage(t)}

	var piped bytes.Buffer
	cmd := exec.Command(clipdBinary(t), args...)
	cmd.Stderr = &piped
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, piped.String())
	}
	if piped.Len() != 0 {
		t.Errorf("stderr to a pipe got %q", piped.String())
	}

	master, slavePath := openPTY(t)
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(clipdBinary(t), args...)
	cmd.Stderr = slave
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	shown := make(chan string, 1)
	go func() {
		var all bytes.Buffer
		io.Copy(&all, master) // ends with EIO once the slave is closed
		shown <- all.String()
	}()
	err = cmd.Run()
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	var tty string
	select {
	case tty = <-shown:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal output did not end")
	}
	if !regexp.MustCompile(`\r\x1b\[K[^\r\n]*encoded 600 prompts in [^\r\n]*\r?\n`).MatchString(tty) {
		t.Errorf("terminal got %q, want a final progress line", tty)
	}
	if !strings.Contains(stdout.String(), `"top"`) {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestProgressBarLine(t *testing.T) {
	var out bytes.Buffer
	bar := progressBar(&out)
	bar(labels.Progress{File: "f", Total: 100})
	bar(labels.Progress{File: "f", Done: 50, Total: 100, Elapsed: 5 * time.Second})
	bar(labels.Progress{File: "f", Done: 100, Total: 100, Elapsed: 10 * time.Second})
	want := "\r\x1b[Kencoding prompts [..............................] 0/100 0.0/s ? left" +
		"\r\x1b[Kencoding prompts [###############...............] 50/100 10.0/s 5s left" +
		"\r\x1b[Kf: encoded 100 prompts in 10s (10.0/s)\n"
	if out.String() != want {
		t.Errorf("bar\n%q\nwant\n%q", out.String(), want)
	}
	if isTerminal(&out) {
		t.Error("a buffer is not a terminal")
	}
}

// A restart with the same model encodes no prompt: every one comes from
// the cache the first run filled.
func TestDaemonRestartEncodesNothing(t *testing.T) {
	dir := testDir(t)
	labelsFile := filepath.Join(dir, "colours.labels")
	writeFile(t, labelsFile, colourLabels)
	conf := patternConfig(demoBundle(t), labelsFile, "")
	first := startDaemon(t, dir, conf)
	nextOf(t, first.dial(), "result", 20*time.Second)
	first.stop()
	if logs := first.logs.String(); !strings.Contains(logs, `msg="encoding prompts" file=`+labelsFile+` prompts=16`) {
		t.Fatalf("first start did not encode the 16 prompts:\n%s", logs)
	}
	second := startDaemon(t, dir, conf)
	nextOf(t, second.dial(), "result", 20*time.Second)
	second.stop()
	logs := second.logs.String()
	if strings.Contains(logs, "encoding prompts") || !strings.Contains(logs, `msg="prompts from the prompt cache" file=`+labelsFile+` prompts=16`) {
		t.Fatalf("second start encoded prompts:\n%s", logs)
	}
}

// SIGTERM while a large label set is being encoded stops the encoding at
// the next batch and the daemon exits cleanly; what was encoded is kept,
// so the next start encodes only the rest.
func TestDaemonStopsWhileEncodingPrompts(t *testing.T) {
	dir := testDir(t)
	labelsFile := filepath.Join(dir, "huge.labels")
	var b strings.Builder
	for _, tmpl := range []string{"a photo of a {}.", "a drawing of a {}.", "a {} in the dark.", "a small {}.", "a big {}."} {
		b.WriteString("template: " + tmpl + "\n")
	}
	const labelCount = 8000 // 40,000 prompts: a minute or more here
	for i := range labelCount {
		fmt.Fprintf(&b, "object number %d\n", i)
	}
	writeFile(t, labelsFile, b.String())
	conf := patternConfig(demoBundle(t), labelsFile, "")
	d := startDaemon(t, dir, conf)
	progress := regexp.MustCompile(`msg="encoding prompts" file=\S+ done=(\d+) total=40000`)
	waitForLog(t, d, progress, time.Minute)
	took := d.stop()
	logs := d.logs.String()
	stopped := regexp.MustCompile(`msg="encoding prompts stopped" file=\S+ done=(\d+) total=40000`).FindStringSubmatch(logs)
	if stopped == nil {
		t.Fatalf("no sign that encoding stopped:\n%s", logs)
	}
	done, _ := strconv.Atoi(stopped[1])
	t.Logf("SIGTERM to exit while encoding: %s, after %d of 40000 prompts", took.Round(time.Millisecond), done)

	again := startDaemon(t, dir, conf)
	start := regexp.MustCompile(`msg="encoding prompts" file=\S+ prompts=(\d+) from_cache=(\d+)`)
	m := waitForLog(t, again, start, time.Minute)
	left, _ := strconv.Atoi(m[1])
	fromCache, _ := strconv.Atoi(m[2])
	if fromCache < done || left+fromCache != 40000 {
		t.Errorf("restart encodes %d with %d from the cache, after %d were encoded", left, fromCache, done)
	}
	again.stop()
}

// waitForLog waits until the daemon's log matches re and returns the match.
func waitForLog(t *testing.T, d *daemonProc, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := re.FindStringSubmatch(d.logs.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s within %s:\n%s", re, within, d.logs.String())
		}
		select {
		case err := <-d.exited:
			t.Fatalf("clipd exited (%v):\n%s", err, d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// While the daemon encodes prompts, systemd's status line says so; when
// it is done, the line is the usual one again.
func TestDaemonEncodingStatusForSystemd(t *testing.T) {
	dir := testDir(t)
	notify := filepath.Join(dir, "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	labelsFile := filepath.Join(dir, "many.labels")
	var b strings.Builder
	b.WriteString("template: a photo of a {}.\ntemplate: a {} shape.\n")
	for i := range 100 {
		fmt.Fprintf(&b, "thing %d\n", i)
	}
	writeFile(t, labelsFile, b.String())
	startDaemon(t, dir, patternConfig(demoBundle(t), labelsFile, ""))
	var states []string
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(time.Minute); ; {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%v; notifications so far: %q", err, states)
		}
		states = append(states, string(buf[:n]))
		if strings.HasPrefix(states[len(states)-1], "STATUS=serving 1 camera(s)") {
			break
		}
	}
	i := slices.Index(states, "STATUS="+labelsFile+": encoding 200 prompts")
	if i < 0 || !slices.Contains(states[i:], "READY=1") {
		t.Errorf("notifications %q: want the encoding status, then READY=1 and the serving status", states)
	}
}
