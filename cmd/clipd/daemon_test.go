package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/syncbuf"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/server"
)

// These tests run the real clipd binary as a daemon: a real model on ONNX
// Runtime, real capture sources, real label files watched with fsnotify and
// the real unix socket, driven with real signals.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func clipdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clipd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "clipd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// demoBundle is the committed demo model.
func demoBundle(t *testing.T) string {
	dir := filepath.Join(testmodel.RepoRoot(t), "models", "demo")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatalf("the demo model is missing: %v", err)
	}
	return dir
}

type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	socket string
	config string
	logs   *syncbuf.Buffer
	exited chan error
}

// testDir is short because unix socket paths are limited to 108 bytes.
func testDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "cd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemon writes config (with %SOCKET% and %DIR% substituted) and runs
// clipd on it until the socket answers.
func startDaemon(t *testing.T, dir, config string) *daemonProc {
	t.Helper()
	return startDaemonWith(t, clipdBinary(t), dir, config)
}

// startDaemonWith is startDaemon with another binary (a wrapper).
func startDaemonWith(t *testing.T, binary, dir, config string) *daemonProc {
	t.Helper()
	d := &daemonProc{t: t, dir: dir, socket: filepath.Join(dir, "s.sock"), config: filepath.Join(dir, "clipd.toml"), logs: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	d.writeConfig(config)
	d.cmd = exec.Command(binary, "run", "--config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.exited <- d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-d.exited:
			t.Fatalf("clipd exited before serving: %v\n%s", err, d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("clipd did not serve within a minute:\n%s", d.logs.String())
		}
	}
}

func (d *daemonProc) writeConfig(config string) {
	config = strings.ReplaceAll(config, "%SOCKET%", d.socket)
	config = strings.ReplaceAll(config, "%DIR%", d.dir)
	if err := os.WriteFile(d.config, []byte(config), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func (d *daemonProc) dial() *server.Client {
	d.t.Helper()
	c, err := server.Dial(d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// stop sends SIGTERM and returns how long the daemon took to exit.
func (d *daemonProc) stop() time.Duration {
	d.t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Errorf("clipd exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatalf("clipd did not exit within 30s of SIGTERM")
	}
	return time.Since(start)
}

// nextOf reads messages until one of type typ arrives (or the deadline).
func nextOf(t *testing.T, c *server.Client, typ string, within time.Duration) server.Message {
	t.Helper()
	type res struct {
		m   server.Message
		err error
	}
	deadline := time.After(within)
	for {
		ch := make(chan res, 1)
		go func() {
			m, err := c.Next()
			ch <- res{m, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("reading the socket: %v", r.err)
			}
			if r.m.Type == typ {
				return r.m
			}
		case <-deadline:
			t.Fatalf("no %q message within %s", typ, within)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile saves the way editors do: write a temporary file, rename it
// over the original.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// colourLabels name the colours of the synthetic world with the demo
// model's evaluation prompts (not its training captions).
const colourLabels = `template: a photo of one {} shape.
template: one {} shape in the image.
red
green
blue
yellow
orange
purple
white
black
`

const shapeLabels = `template: a photo of one {}.
template: one {} in the image.
circle
square
triangle
star
ring
cross
`

func patternConfig(bundle, labels string, extra string) string {
	return fmt.Sprintf(`[model]
bundle = %q
backend = "onnxruntime"
threads = 1
state_dir = "%%DIR%%/state"
[socket]
path = "%%SOCKET%%"
[log]
level = "debug"
[[camera]]
name = "pat"
source = "pattern?hold=2&seed=900000&shapes=1"
width = 240
height = 240
fps = 15
labels = %q
classify_every = 0
top_k = 3
%s`, bundle, labels, extra)
}

type resultLine struct {
	Camera        string    `json:"camera"`
	Region        string    `json:"region"`
	Seq           uint64    `json:"seq"`
	Time          time.Time `json:"time"`
	LabelsVersion uint64    `json:"labels_version"`
	Top           []struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	} `json:"top"`
	Truth struct {
		Shapes []struct {
			Kind, Color  string
			X, Y, Radius float64
		}
		Width, Height int
	} `json:"truth"`
}

func decodeResult(t *testing.T, m server.Message) resultLine {
	var r resultLine
	if err := m.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDaemonResultsAgreeWithTruth(t *testing.T) {
	for _, tc := range []struct {
		name, labels string
		truth        func(kind, color string) string
	}{
		{"colours", colourLabels, func(_, color string) string { return color }},
		{"shapes", shapeLabels, func(kind, _ string) string { return kind }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			labels := filepath.Join(dir, tc.name+".labels")
			writeFile(t, labels, tc.labels)
			d := startDaemon(t, dir, patternConfig(demoBundle(t), labels, ""))
			c := d.dial()
			agree, total := 0, 0
			for total < 60 {
				r := decodeResult(t, nextOf(t, c, "result", 20*time.Second))
				if len(r.Truth.Shapes) != 1 {
					t.Fatalf("frame %d has %d shapes; the camera draws one", r.Seq, len(r.Truth.Shapes))
				}
				total++
				if s := r.Truth.Shapes[0]; r.Top[0].Label == tc.truth(s.Kind, s.Color) {
					agree++
				}
			}
			t.Logf("top-1 %s label agrees with the synthetic truth on %d of %d frames", tc.name, agree, total)
			if agree*100 < 90*total {
				t.Errorf("only %d of %d results agree with the truth (want ≥ 90%%)", agree, total)
			}
			d.stop()
		})
	}
}

func TestDaemonLabelsHotReload(t *testing.T) {
	dir := testDir(t)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	d := startDaemon(t, dir, patternConfig(demoBundle(t), labels, ""))
	c := d.dial()
	first := decodeResult(t, nextOf(t, c, "result", 20*time.Second))

	// An edit saved by temp file and rename applies within a second.
	replaceFile(t, labels, "circle\nsquare\n")
	saved := time.Now()
	m := nextOf(t, c, "labels", 5*time.Second)
	applied := time.Since(saved)
	var upd server.LabelsUpdate
	m.Decode(&upd)
	t.Logf("labels applied %s after the rename (version %d → %d)", applied.Round(time.Millisecond), first.LabelsVersion, upd.Version)
	if applied > time.Second {
		t.Errorf("the new labels took %s to apply (want ≤ 1s)", applied)
	}
	if upd.Version <= first.LabelsVersion || strings.Join(upd.Labels, ",") != "circle,square" {
		t.Errorf("labels event %+v", upd)
	}
	for {
		r := decodeResult(t, nextOf(t, c, "result", 5*time.Second))
		if r.LabelsVersion == upd.Version {
			if l := r.Top[0].Label; l != "circle" && l != "square" {
				t.Errorf("result uses label %q outside the new set", l)
			}
			break
		}
	}

	// A broken file keeps the last good set and reports file and line.
	replaceFile(t, labels, "circle\ntemplate: no placeholder here\n")
	em := nextOf(t, c, "error", 5*time.Second)
	var rep server.ErrorReport
	em.Decode(&rep)
	if rep.Line != 2 || !strings.HasSuffix(rep.File, "shapes.labels") {
		t.Errorf("error event %+v does not name shapes.labels line 2", rep)
	}
	r := decodeResult(t, nextOf(t, c, "result", 5*time.Second))
	if r.LabelsVersion != upd.Version {
		t.Errorf("after a broken edit results use labels version %d, want the last good %d", r.LabelsVersion, upd.Version)
	}
	d.stop()
}

// mjpegVideo makes a 640x360 MJPEG file of ffmpeg's test pattern, seconds
// long at 10 frames a second.
func mjpegVideo(t *testing.T, dir string, seconds int) string {
	t.Helper()
	video := filepath.Join(dir, "clip.mkv")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=10", "-t", fmt.Sprint(seconds),
		"-c:v", "mjpeg", "-q:v", "5", video).CombinedOutput(); err != nil {
		t.Fatalf("making a test video: %v\n%s", err, out)
	}
	return video
}

func TestDaemonThreeCamerasAndSlowClient(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg is not installed")
	}
	dir := testDir(t)
	video := mjpegVideo(t, dir, 2)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	conf := patternConfig(demoBundle(t), labels, fmt.Sprintf(`
[[camera]]
name = "file"
source = %q
loop = true
width = 320
height = 180
fps = 10
labels = %q
classify_every = 0

# No size: the file's own, so its JPEG images pass through ffmpeg undecoded.
[[camera]]
name = "jpeg"
source = %q
loop = true
fps = 10
labels = %q
classify_every = 0
`, video, labels, video, labels))
	conf = strings.Replace(conf, "[log]", "client_queue = 4\n[log]", 1)
	conf = strings.Replace(conf, "width = 240\nheight = 240\nfps = 15", "width = 64\nheight = 64\nfps = 60", 1)
	d := startDaemon(t, dir, conf)

	stuck, err := net.Dial("unix", d.socket) // connects and never reads
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()

	c := d.dial()
	seen := map[string]int{}
	var stuckDropped uint64
	var st struct {
		Cameras []struct {
			Name       string
			Format     string
			Classified uint64
		}
		Clients []server.ClientInfo
	}
	// The stuck client's kernel socket buffer absorbs a few hundred results
	// before its queue in the daemon overflows; the reader must keep getting
	// results all along.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := decodeResult(t, nextOf(t, c, "result", 10*time.Second))
		seen[r.Camera]++
		if seen["pat"]%20 != 0 || seen["file"] < 10 || seen["jpeg"] < 10 {
			continue
		}
		reply, err := c.Command(server.Command{Cmd: "status"})
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(reply.Data, &st); err != nil {
			t.Fatal(err)
		}
		for _, cl := range st.Clients {
			stuckDropped = max(stuckDropped, cl.Dropped)
		}
		if stuckDropped > 0 {
			break
		}
	}
	t.Logf("results read %v; the client that never reads lost %d results; status: %+v", seen, stuckDropped, st.Cameras)
	if seen["pat"] < 40 || seen["file"] < 10 || seen["jpeg"] < 10 {
		t.Errorf("results per camera %v: every camera should deliver", seen)
	}
	formats := map[string]string{}
	for _, cam := range st.Cameras {
		formats[cam.Name] = cam.Format
	}
	if formats["file"] != "rgb24" || formats["jpeg"] != "mjpeg" {
		t.Errorf("camera formats %v: want the scaled file decoded to rgb24 and the native one passed through as mjpeg", formats)
	}
	if stuckDropped == 0 {
		t.Errorf("the client that never reads lost nothing; its queue should have overflowed: %+v", st.Clients)
	}
	d.stop()
}

// A GStreamer pipeline camera (how a Jetson's CSI cameras are read), with
// videotestsrc standing in for nvarguscamerasrc.
func TestDaemonGStreamerCamera(t *testing.T) {
	if _, err := exec.LookPath("gst-launch-1.0"); err != nil {
		t.Skip("gst-launch-1.0 is not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base)")
	}
	dir := testDir(t)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	d := startDaemon(t, dir, patternConfig(demoBundle(t), labels, fmt.Sprintf(`
[[camera]]
name = "csi"
source = "gst:videotestsrc is-live=true pattern=smpte75 ! video/x-raw,width=640,height=480,framerate=30/1"
width = 320
height = 240
labels = %q
classify_every = "100ms"
`, labels)))
	c := d.dial()
	if err := c.Subscribe([]string{"csi"}); err != nil {
		t.Fatal(err)
	}
	var last resultLine
	for range 5 {
		last = decodeResult(t, nextOf(t, c, "result", 20*time.Second))
		if last.Camera != "csi" || len(last.Top) == 0 {
			t.Fatalf("result %+v", last)
		}
	}
	reply, err := c.Command(server.Command{Cmd: "status"})
	if err != nil {
		t.Fatal(err)
	}
	type cameraStatus struct {
		Name, Format  string
		Width, Height int
	}
	var st struct{ Cameras []cameraStatus }
	if err := json.Unmarshal(reply.Data, &st); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st.Cameras, func(cam cameraStatus) bool { return cam.Name == "csi" })
	if i < 0 || st.Cameras[i].Format != "nv12" || st.Cameras[i].Width != 320 || st.Cameras[i].Height != 240 {
		t.Errorf("cameras in status: %+v, want csi as nv12 320x240", st.Cameras)
	}
	t.Logf("5 results from the GStreamer camera, last seq %d; status %+v", last.Seq, st.Cameras)
	d.stop()
}

func TestDaemonSignals(t *testing.T) {
	dir := testDir(t)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	two := patternConfig(demoBundle(t), labels, `
[[camera]]
name = "other"
source = "pattern?seed=5"
width = 160
height = 120
fps = 10
labels = "`+labels+`"
classify_every = 0
`)
	d := startDaemon(t, dir, two)
	c := d.dial()
	before := map[string]uint64{}
	for len(before) < 2 || before["pat"] < 10 {
		r := decodeResult(t, nextOf(t, c, "result", 20*time.Second))
		before[r.Camera] = r.Seq
	}

	// SIGHUP with only camera "other" changed: it restarts (its sequence
	// starts again), "pat" keeps running (its sequence continues).
	d.writeConfig(strings.Replace(two, "fps = 10", "fps = 5", 1))
	d.cmd.Process.Signal(syscall.SIGHUP)
	restarted := false
	deadline := time.Now().Add(20 * time.Second)
	for !restarted && time.Now().Before(deadline) {
		r := decodeResult(t, nextOf(t, c, "result", 10*time.Second))
		switch r.Camera {
		case "pat":
			if r.Seq < before["pat"] {
				t.Fatalf("camera pat restarted on SIGHUP although its settings did not change (seq %d after %d)", r.Seq, before["pat"])
			}
			before["pat"] = r.Seq
		case "other":
			if r.Seq < before["other"] {
				restarted = true
			}
			before["other"] = r.Seq
		}
	}
	if !restarted {
		t.Errorf("camera other was not restarted after its fps changed and SIGHUP")
	}

	took := d.stop()
	t.Logf("SIGTERM to exit: %s", took.Round(time.Millisecond))
	if _, err := os.Stat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind after exit: %v", err)
	}
}

func TestDaemonGarbageCommandKeepsConnection(t *testing.T) {
	dir := testDir(t)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	images := filepath.Join(testmodel.SharedDir(t), "reference", "images")
	conf := strings.Replace(patternConfig(demoBundle(t), labels, ""), `path = "%SOCKET%"`,
		fmt.Sprintf("path = \"%%SOCKET%%\"\nclassify_dirs = [%q, %q]", images, dir), 1)
	d := startDaemon(t, dir, conf)
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("this is not json\n{\"cmd\":\"frobnicate\"}\n{\"cmd\":\"status\",\"id\":7}\n"))
	dec := json.NewDecoder(conn)
	var errs, replies int
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for replies == 0 {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("after garbage the connection broke: %v", err)
		}
		switch m["type"] {
		case "error":
			errs++
		case "reply":
			replies++
			if m["id"] != float64(7) {
				t.Errorf("reply id %v, want 7", m["id"])
			}
		}
	}
	if errs != 2 {
		t.Errorf("got %d error replies for 2 bad commands", errs)
	}

	// The socket serves while cameras are still starting: wait for a result.
	nextOf(t, d.dial(), "result", 20*time.Second)
	out, err := exec.Command(clipdBinary(t), "status", "--socket", d.socket, "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"name": "pat"`) || !strings.Contains(string(out), `"gpu"`) ||
		!strings.Contains(string(out), `"state": "running"`) || !strings.Contains(string(out), `"source": "pattern?hold=2&seed=900000&shapes=1"`) {
		t.Errorf("clipd status --json: %v\n%s", err, out)
	}
	out, err = exec.Command(clipdBinary(t), "status", "--socket", d.socket).CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^pat +running +rgb24 +240x240 +[0-9.]+/s +[0-9.]+/s +[0-9]+ +[0-9.]+/[0-9.]+ ms$`).Match(out) ||
		!strings.Contains(string(out), "pat  source  pattern?hold=2&seed=900000&shapes=1") {
		t.Errorf("clipd status: %v\n%s", err, out)
	}

	// classify over the socket with ad-hoc labels on a rendered file.
	c := d.dial()
	img := filepath.Join(images, "img3_224x224.png")
	rep, err := c.Command(server.Command{Cmd: "classify", Image: img, Labels: []string{"circle", "square"}})
	if err != nil {
		t.Fatal(err)
	}
	var cr struct{ Top []struct{ Label string } }
	json.Unmarshal(rep.Data, &cr)
	if len(cr.Top) != 2 {
		t.Errorf("classify reply %s", rep.Data)
	}
	_, err = c.Command(server.Command{Cmd: "classify", Image: filepath.Join(dir, "missing.png"), Labels: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "missing.png") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("classify of a missing file: %v", err)
	}
	_, err = c.Command(server.Command{Cmd: "classify", Image: "/etc/passwd", Labels: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "not under a directory this daemon reads images from") {
		t.Errorf("classify of a file outside classify_dirs: %v", err)
	}
	d.stop()
}

// clipd tail shows a camera whose device is missing as a camera line,
// whether it connected before the camera went to retrying or after; the
// daemon's log never calls that camera started.
func TestTailShowsACameraThatIsDown(t *testing.T) {
	dir := testDir(t)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	const device = "/dev/clipd-test-absent"
	d := startDaemon(t, dir, patternConfig(demoBundle(t), labels, "")+
		fmt.Sprintf("[[camera]]\nname = \"gone\"\nsource = %q\nlabels = %q\n", device, labels))
	for _, when := range []string{"at once", "later"} {
		if when == "later" {
			// By now the missing camera is retrying: status shows it.
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(d.logs.String(), "camera waiting for its source") {
				if time.Now().After(deadline) {
					t.Fatalf("the missing camera was never said to wait:\n%s", d.logs.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		cmd := exec.Command(clipdBinary(t), "tail", "--socket", d.socket)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// The line wraps at 80 columns: compare words.
		want := "camera gone retrying: open " + device + ": no such file or directory"
		var seen []string
		timeout := time.After(30 * time.Second)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("tail (%s) ended without %q:\n%s", when, want, strings.Join(seen, "\n"))
				}
				seen = append(seen, line)
				last := seen[max(0, len(seen)-3):]
				if strings.Contains(strings.Join(strings.Fields(strings.Join(last, " ")), " "), want) {
					break read
				}
			case <-timeout:
				t.Fatalf("tail (%s) did not show %q:\n%s", when, want, strings.Join(seen, "\n"))
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	logs := d.logs.String()
	if strings.Contains(logs, `camera started" camera=gone`) || !strings.Contains(logs, `camera started" camera=pat`) {
		t.Errorf("want camera started for pat only:\n%s", logs)
	}
	d.stop()
}

// regionTruth says what a region of the frame shows, from the synthetic
// camera's truth: the one shape lying wholly inside box, if exactly one
// does and no other reaches into it.
func regionTruth(r resultLine, box [4]float64) (kind, color string, ok bool) {
	w, h := float64(r.Truth.Width), float64(r.Truth.Height)
	inside, touching := 0, 0
	for _, s := range r.Truth.Shapes {
		x, y, rad := s.X*w, s.Y*h, s.Radius
		if x-rad >= box[0] && x+rad <= box[2] && y-rad >= box[1] && y+rad <= box[3] {
			inside++
			kind, color = s.Kind, s.Color
		} else if x+rad > box[0] && x-rad < box[2] && y+rad > box[1] && y-rad < box[3] {
			touching++
		}
	}
	return kind, color, inside == 1 && touching == 0
}

// Two regions of a synthetic camera, the left half asked for colours and
// the right half for shapes, each with its own labels file: each region's
// results agree with what the camera drew inside it, and editing one
// region's labels reloads that region only.
func TestDaemonRegionsAgreeWithTruth(t *testing.T) {
	dir := testDir(t)
	colours, shapes := filepath.Join(dir, "colours.labels"), filepath.Join(dir, "shapes.labels")
	writeFile(t, colours, colourLabels)
	writeFile(t, shapes, shapeLabels)
	conf := patternConfig(demoBundle(t), colours, fmt.Sprintf(`whole_frame = false

[[camera.region]]
name = "left"
box = [0, 0, 240, 240]
labels = %q

[[camera.region]]
name = "right"
rect = [0.5, 0, 1, 1]
labels = %q
`, colours, shapes))
	conf = strings.Replace(conf, "source = \"pattern?hold=2&seed=900000&shapes=1\"\nwidth = 240", "source = \"pattern?hold=2&seed=700000&shapes=2\"\nwidth = 480", 1)
	d := startDaemon(t, dir, conf)
	c := d.dial()
	type tally struct{ agree, checked int }
	got := map[string]*tally{"left": {}, "right": {}}
	boxes := map[string][4]float64{"left": {0, 0, 240, 240}, "right": {240, 0, 480, 240}}
	deadline := time.Now().Add(3 * time.Minute)
	for got["left"].checked < 20 || got["right"].checked < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("too few checkable frames: %+v %+v", *got["left"], *got["right"])
		}
		r := decodeResult(t, nextOf(t, c, "result", 20*time.Second))
		region := r.Region
		kind, color, ok := regionTruth(r, boxes[region])
		if !ok {
			continue
		}
		want := color
		if region == "right" {
			want = kind
		}
		got[region].checked++
		if r.Top[0].Label == want {
			got[region].agree++
		}
	}
	for region, g := range got {
		t.Logf("region %s: top-1 agrees with the shape drawn inside it on %d of %d frames", region, g.agree, g.checked)
		if g.agree*100 < 90*g.checked {
			t.Errorf("region %s: only %d of %d agree (want ≥ 90%%)", region, g.agree, g.checked)
		}
	}

	// An edit of the shapes file reloads the right region only.
	replaceFile(t, shapes, shapeLabels+"heart\n")
	m := nextOf(t, c, "labels", 20*time.Second)
	var upd server.LabelsUpdate
	m.Decode(&upd)
	if upd.Region != "right" || upd.Version != 2 {
		t.Fatalf("labels update %s, want the right region's v2 only", m.Raw)
	}
	for {
		r := decodeResult(t, nextOf(t, c, "result", 20*time.Second))
		if r.Region == "left" && r.LabelsVersion != 1 {
			t.Fatalf("the left region's labels version changed to %d", r.LabelsVersion)
		}
		if r.Region == "right" && r.LabelsVersion == 2 {
			break
		}
	}
	d.stop()
}
