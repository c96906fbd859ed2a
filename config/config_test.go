package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/capture"
)

func defaultResolved(dir string) *Config {
	c := Default()
	c.Model.Bundle = filepath.Join(dir, c.Model.Bundle)
	return c
}

func TestEmptyFileIsDefault(t *testing.T) {
	cfg, err := Parse(nil, "/etc/clipd/clipd.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultResolved("/etc/clipd"); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("empty file:\n got %+v\nwant %+v", cfg, want)
	}
}

// The example documents every default: it must decode to Default() plus
// the synthetic camera it runs, wherever it is installed.
func TestExampleIsDefaultPlusCameras(t *testing.T) {
	data, err := os.ReadFile("clipd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, "/etc/clipd/clipd.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultResolved("/etc/clipd")
	want.Cameras = []Camera{{
		Name: "demo", Source: "pattern?hold=10&shapes=1", Format: "auto", Width: 480, Height: 480, FPS: 10,
		Labels: "/etc/clipd/labels/demo.labels", ClassifyEvery: 500 * time.Millisecond, TopK: 3, Threshold: 0,
		StateHold: DefaultStateHold,
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("example:\n got %+v\nwant %+v", cfg, want)
	}
}

// exampleCameras are the commented-out [[camera]] tables of the example,
// uncommented: "# [[camera]]" and the "# key = value" lines after it.
func exampleCameras(t *testing.T) string {
	data, err := os.ReadFile("clipd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "# [[camera]]":
			in = true
			out.WriteString("[[camera]]\n")
		case in && exampleKeyLine.MatchString(line):
			out.WriteString(strings.TrimPrefix(line, "# ") + "\n")
		default:
			in = false
		}
	}
	return out.String()
}

var exampleKeyLine = regexp.MustCompile(`^# [a-z_]+ = `)

// The commented-out cameras are valid as they stand once uncommented, and
// the first spells out every camera key with its default.
func TestExampleCommentedCameras(t *testing.T) {
	doc := exampleCameras(t)
	cfg, err := Parse([]byte(doc), "/etc/clipd/clipd.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	want := []Camera{
		{
			Name: "front", Source: "/dev/video0", Format: "auto", Width: 1280, Height: 720, FPS: 30,
			Labels: "/etc/clipd/labels/home.labels", ClassifyEvery: 200 * time.Millisecond, TopK: 5, Threshold: 0, StateHold: time.Second,
		},
		{
			// A stream keeps its own size by default.
			Name: "door", Source: "rtsp://192.0.2.10:554/stream1", Format: "auto", Width: 0, Height: 0, FPS: 30,
			Labels: "/etc/clipd/labels/cifar10.labels", ClassifyEvery: time.Second, TopK: 3, Threshold: 0.25, StateHold: time.Second,
		},
	}
	if !reflect.DeepEqual(cfg.Cameras, want) {
		t.Fatalf("example cameras:\n got %+v\nwant %+v", cfg.Cameras, want)
	}
	noDefaults := want[0]
	noDefaults.Name, noDefaults.Source, noDefaults.Labels = "", "", ""
	if !reflect.DeepEqual(noDefaults, Camera{Format: DefaultCameraFormat, Width: 1280, Height: 720,
		FPS: DefaultCameraFPS, ClassifyEvery: DefaultClassifyEvery, TopK: DefaultTopK, Threshold: DefaultCameraThreshold,
		StateHold: DefaultStateHold}) {
		t.Fatalf("example camera front does not show the defaults: %+v", noDefaults)
	}
	front := doc[:strings.Index(doc[1:], "[[camera]]")+1]
	for _, key := range knownKeys([]string{"camera"}) {
		if !strings.Contains(front, "\n"+key+" = ") && !isTable(key) {
			t.Errorf("the example camera front does not show key %s", key)
		}
	}
}

// isTable says whether a camera key is a table of its own ([[camera.x]]),
// which the key lines of the example do not show.
func isTable(key string) bool {
	t := reflect.TypeOf(fileCamera{})
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) == key {
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			return ft.Kind() == reflect.Struct
		}
	}
	return false
}

// The example, as it stands in the repository, names files that exist
// there: its labels and models are links to examples/labels and models.
func TestExampleResolvesInTheRepository(t *testing.T) {
	cfg, err := Load("clipd.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Model.Bundle, "config.json")); err != nil {
		t.Errorf("the example's bundle: %v", err)
	}
}

func TestCameraKinds(t *testing.T) {
	doc := `
[[camera]]
name = "a"
source = "/dev/video0"
labels = "l.txt"
[[camera]]
name = "b"
source = "rtsps://host/x"
labels = "l.txt"
[[camera]]
name = "c"
source = "https://host/mjpg"
labels = "l.txt"
[[camera]]
name = "d"
source = "clips/walk.mp4"
labels = "/abs/l.txt"
[[camera]]
name = "e"
source = "pattern"
labels = "l.txt"
format = "rgb24"
classify_every = 0
[[camera]]
name = "f"
source = "pattern?hold=3&seed=9"
labels = "l.txt"
[[camera]]
name = "g"
source = "gst:nvarguscamerasrc sensor-id=0 ! nvvidconv"
labels = "l.txt"
`
	cfg, err := Parse([]byte(doc), "/srv/c/clipd.toml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := []capture.Kind{capture.KindV4L2, capture.KindStream, capture.KindStream, capture.KindFile, capture.KindPattern, capture.KindPattern, capture.KindGStreamer}
	for i, k := range kinds {
		if got := cfg.Cameras[i].SourceKind(); got != k {
			t.Errorf("camera %s: kind %v, want %v", cfg.Cameras[i].Name, got, k)
		}
	}
	if got := cfg.Cameras[5].Source; got != "pattern?hold=3&seed=9" {
		t.Errorf("pattern options taken for a file path: %q", got)
	}
	if got := cfg.Cameras[3].Source; got != "/srv/c/clips/walk.mp4" {
		t.Errorf("file source not resolved: %q", got)
	}
	if got := cfg.Cameras[3].Labels; got != "/abs/l.txt" {
		t.Errorf("absolute labels path changed: %q", got)
	}
	if _, ok := cfg.Cameras[0].PixelFormat(); ok {
		t.Error("format auto reported as a concrete pixel format")
	}
	if f, ok := cfg.Cameras[4].PixelFormat(); !ok || f.String() != "rgb24" {
		t.Errorf("PixelFormat = %v, %v", f, ok)
	}
	if cfg.Cameras[4].ClassifyEvery != 0 {
		t.Errorf("classify_every = 0 gave %v", cfg.Cameras[4].ClassifyEvery)
	}
	// Without width/height a device and the pattern get the default size,
	// streams and files their own (0x0 here, probed at start).
	for i, want := range [][2]int{{1280, 720}, {0, 0}, {0, 0}, {0, 0}, {1280, 720}, {1280, 720}, {1280, 720}} {
		if got := [2]int{cfg.Cameras[i].Width, cfg.Cameras[i].Height}; got != want {
			t.Errorf("camera %s (%v): size %v, want %v", cfg.Cameras[i].Name, kinds[i], got, want)
		}
	}
}

func TestSocketMode(t *testing.T) {
	cfg, err := Parse([]byte("[socket]\nmode = \"0600\"\ngroup = \"video\"\n"), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Socket.Mode != 0o600 || cfg.Socket.Group != "video" {
		t.Fatalf("socket = %+v", cfg.Socket)
	}
}

const camHead = "[[camera]]\nname = \"a\"\nsource = \"/dev/video0\"\nlabels = \"l.txt\"\n"

func TestInvalid(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"fps zero", camHead + camHead[:11] + "name = \"b\"\nsource = \"/dev/video1\"\nlabels = \"l.txt\"\nfps = 0\n",
			"clipd.toml:9: camera[1].fps: must be between 1 and 240, got 0"},
		{"unknown key", "[model]\nbundle = \"x\"\nbakend = \"auto\"\n",
			"clipd.toml:3: model.bakend: unknown key"},
		{"unknown key in second camera", camHead + camHead + "colour = true\n",
			"clipd.toml:9: camera[1].colour: unknown key"},
		{"unknown table", "[modle]\nbundle = \"x\"\n", "clipd.toml:1: modle: unknown key (did you mean model?)"},
		{"unknown key with a suggestion", camHead + "classify_evry = \"1s\"\n",
			"clipd.toml:5: camera[0].classify_evry: unknown key (did you mean classify_every?)"},
		{"transposed letters", "[socket]\nmdoe = \"0600\"\n", "clipd.toml:2: socket.mdoe: unknown key (did you mean mode?)"},
		{"unknown key in an inline camera", "camera = [{ name = \"a\", source = \"pattern\", labels = \"l\", lables = \"m\" }]\n",
			"clipd.toml:1: camera[0].lables: unknown key (did you mean labels?)"},
		{"wrong type", "[model]\n\nmax_batch = \"eight\"\n", "clipd.toml:3: model.max_batch: must be an integer, got a TOML string"},
		{"wrong type in camera", camHead + camHead + "width = 1.5\n", "clipd.toml:9: camera[1].width: must be an integer, got a TOML float"},
		{"bad backend", "[model]\nbackend = \"cuda\"\n",
			`clipd.toml:2: model.backend: must be one of auto, tensorrt, onnxruntime, got "cuda"`},
		{"bad capture priority", "[model]\ncapture_priority = \"low\"\n",
			`clipd.toml:2: model.capture_priority: must be one of auto, normal, idle, got "low"`},
		{"bad mode", "[socket]\nmode = \"rw\"\n", `clipd.toml:2: socket.mode: must be an octal permission string`},
		{"mode as number", "[socket]\nmode = 660\n", `clipd.toml:2: socket.mode: must be a string, got a TOML integer`},
		{"mode too big", "[socket]\nmode = \"1777\"\n", `clipd.toml:2: socket.mode: must be at most 0777`},
		{"bad level", "[log]\nlevel = \"loud\"\n", `clipd.toml:2: log.level: must be one of debug, info, warn, error, got "loud"`},
		{"duplicate name", camHead + camHead,
			`clipd.toml:6: camera[1].name: duplicate camera name "a" (also camera[0])`},
		{"same device", camHead + "[[camera]]\nname = \"b\"\nsource = \"/dev/video0\"\nlabels = \"l.txt\"\n",
			`clipd.toml:7: camera[1].source: device /dev/video0 is already used by camera[0]`},
		{"bad duration", camHead + "classify_every = \"200 ms\"\n",
			`clipd.toml:5: camera[0].classify_every: invalid duration "200 ms"`},
		{"numeric duration", camHead + "classify_every = 200\n",
			`clipd.toml:5: camera[0].classify_every: a number must be 0`},
		{"negative duration", camHead + "classify_every = \"-1s\"\n",
			`clipd.toml:5: camera[0].classify_every: must not be negative`},
		{"bad name", "[[camera]]\nname = \"Front Door\"\nsource = \"pattern\"\nlabels = \"l\"\n",
			`clipd.toml:2: camera[0].name: must match [a-z0-9_-]+`},
		{"missing labels", "\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\n",
			`clipd.toml:2: camera[0].labels: is required`},
		{"missing source", "[[camera]]\nname = \"a\"\nlabels = \"l\"\n",
			`clipd.toml:1: camera[0].source: is required`},
		{"bad scheme", "[[camera]]\nname = \"a\"\nsource = \"ftp://x/y\"\nlabels = \"l\"\n",
			`clipd.toml:3: camera[0].source: unsupported URL scheme "ftp"`},
		{"threshold", camHead + "threshold = 1.5\n", `clipd.toml:5: camera[0].threshold: must be between 0 and 1, got 1.5`},
		{"loop on a device", camHead + "loop = true\n", `clipd.toml:5: camera[0].loop: only applies to file sources`},
		{"loop not a bool", camHead + "loop = 1\n", `clipd.toml:5: camera[0].loop:`},
		{"gst quote", "[[camera]]\nname = \"a\"\nsource = 'gst:filesrc location=\"x ! decodebin'\nlabels = \"l\"\n",
			`clipd.toml:3: camera[0].source: GStreamer pipeline: unterminated " quote`},
		{"gst empty", "[[camera]]\nname = \"a\"\nsource = \"gst:\"\nlabels = \"l\"\n",
			`clipd.toml:3: camera[0].source: GStreamer pipeline: empty`},
		{"width alone", camHead + "width = 640\n", `clipd.toml:1: camera[0].height: is required when width is given (give both, or neither)`},
		{"height alone", camHead + "height = 480\n", `clipd.toml:1: camera[0].width: is required when height is given`},
		{"width out of range", camHead + "width = 0\nheight = 480\n", `clipd.toml:5: camera[0].width: must be between 1 and 8192, got 0`},
		{"odd width on the pattern camera", "[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"l\"\nwidth = 641\nheight = 480\n",
			`clipd.toml:5: camera[0].width: must be even, got 641`},
		{"mjpeg on the pattern camera", "[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"l\"\nformat = \"mjpeg\"\n",
			`clipd.toml:5: camera[0].format: pattern sources deliver rgb24 only, not mjpeg`},
		{"mjpeg on a GStreamer source", "[[camera]]\nname = \"a\"\nsource = \"gst:videotestsrc\"\nlabels = \"l\"\nformat = \"mjpeg\"\n",
			`clipd.toml:5: camera[0].format: gstreamer sources deliver nv12, yuyv or rgb24, not mjpeg`},
		{"rgb24 on a device", camHead + "format = \"rgb24\"\n",
			`clipd.toml:5: camera[0].format: v4l2 sources deliver mjpeg, yuyv or nv12, not rgb24`},
		{"unknown format", camHead + "format = \"h264\"\n",
			`clipd.toml:5: camera[0].format: must be one of auto, mjpeg, yuyv, nv12, rgb24, got "h264"`},
		{"pattern typo", "[[camera]]\nname = \"a\"\nsource = \"patern\"\nlabels = \"l\"\n",
			`clipd.toml:3: camera[0].source: "patern": did you mean the synthetic camera`},
		{"loop on a stream", "[[camera]]\nname = \"a\"\nsource = \"rtsp://cam/x\"\nlabels = \"l\"\nloop = true\n",
			`clipd.toml:5: camera[0].loop: only applies to file sources, not stream`},
		{"top_k", camHead + "top_k = 0\n", `clipd.toml:5: camera[0].top_k: must be between 1 and 1000, got 0`},
		{"syntax", "[model]\nbundle = \n", "clipd.toml:2: "},
		{"inline table", "model = { backend = \"x\" }\n", `clipd.toml:1: model.backend: must be one of`},
		{"camera array of inline tables", "camera = [{ name = \"a\", source = \"pattern\", labels = \"l\", fps = 999 }]\n",
			`clipd.toml:1: camera[0].fps: must be between 1 and 240, got 999`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "clipd.toml")
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n  %v\ndoes not contain\n  %s", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "clipd.toml" || e.Line == 0 {
				t.Fatalf("error is not a located *Error: %#v", err)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	doc := "[model]\nmax_batch = 0\n[log]\nformat = \"xml\"\n"
	_, err := Parse([]byte(doc), "c.toml")
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if list[0].Key != "model.max_batch" || list[0].Line != 2 || list[1].Key != "log.format" || list[1].Line != 4 {
		t.Fatalf("errors = %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadResolvesAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "labels", "home.labels"), "a cat\na dog\n")
	path := filepath.Join(dir, "clipd.toml")
	writeFile(t, path, "[model]\nbundle = \"../models/x\"\n[socket]\npath = \"run/s.sock\"\n"+
		"[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"labels/home.labels\"\n")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(dir), "models", "x"); cfg.Model.Bundle != want {
		t.Errorf("bundle = %q, want %q", cfg.Model.Bundle, want)
	}
	if want := filepath.Join(dir, "run", "s.sock"); cfg.Socket.Path != want {
		t.Errorf("socket = %q, want %q", cfg.Socket.Path, want)
	}
	if want := filepath.Join(dir, "labels", "home.labels"); cfg.Cameras[0].Labels != want {
		t.Errorf("labels = %q, want %q", cfg.Cameras[0].Labels, want)
	}
}

func TestLoadMissingLabels(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clipd.toml")
	writeFile(t, path, "[[camera]]\nname = \"a\"\nsource = \"pattern\"\n\nlabels = \"nope.txt\"\n")
	_, err := Load(path)
	want := path + ":5: camera[0].labels: label file " + filepath.Join(dir, "nope.txt") + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// An emptied config file (or one whose cameras were all deleted) must not
// pass: on SIGHUP it would stop every camera.
func TestLoadRefusesNoCameras(t *testing.T) {
	for _, doc := range []string{"", "[model]\nbundle = \"models/demo\"\n"} {
		path := filepath.Join(t.TempDir(), "clipd.toml")
		writeFile(t, path, doc)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+": no [[camera]] tables") {
			t.Errorf("%q: %v, want the no-camera error", doc, err)
		}
	}
}

func TestLoadRefusesWhatIsNotAConfigFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	syscall.Mkfifo(fifo, 0o644)
	for path, want := range map[string]string{fifo: "not a regular file (a FIFO)", "/dev/zero": "not a regular file", dir: "not a regular file (a directory)"} {
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v, want %q", path, err, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if err == nil || !strings.Contains(err.Error(), "absent.toml") {
		t.Fatalf("err = %v", err)
	}
}

// Two names for one device node (a by-id style symlink and the node) must
// be caught, which only the filesystem can tell.
func TestLoadSameDeviceThroughSymlink(t *testing.T) {
	linkDir, err := os.MkdirTemp("/dev/shm", "clipd-config-test-")
	if err != nil {
		t.Skipf("environment: need a writable directory under /dev for a device symlink: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(linkDir) })
	link := filepath.Join(linkDir, "usb-cam-video-index0")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "l.txt"), "x\n")
	path := filepath.Join(dir, "clipd.toml")
	writeFile(t, path, "[[camera]]\nname = \"a\"\nsource = \"/dev/null\"\nlabels = \"l.txt\"\n"+
		"[[camera]]\nname = \"b\"\nsource = \""+link+"\"\nlabels = \"l.txt\"\n")
	_, err = Load(path)
	want := path + ":7: camera[1].source: " + link + ` is the same device as /dev/null (camera "a")`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

func TestDiff(t *testing.T) {
	old := defaultResolved("/x")
	old.Cameras = []Camera{
		{Name: "keep", Source: "pattern", FPS: 30},
		{Name: "tweak", Source: "pattern", FPS: 30},
		{Name: "drop", Source: "pattern"},
	}
	updated := defaultResolved("/x")
	updated.Log.Level = "debug"
	updated.MQTT.Broker = "mqtt://broker"
	updated.HTTP.Listen = "127.0.0.1:9464"
	updated.History.Enabled = true
	updated.Cameras = []Camera{
		{Name: "new", Source: "pattern"},
		{Name: "tweak", Source: "pattern", FPS: 15},
		{Name: "keep", Source: "pattern", FPS: 30},
	}
	got := Diff(old, updated)
	want := Changes{
		Added: []string{"new"}, Removed: []string{"drop"}, Changed: []string{"tweak"}, Unchanged: []string{"keep"},
		LogChanged: true, HistoryChanged: true, MQTTChanged: true, HTTPChanged: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff:\n got %+v\nwant %+v", got, want)
	}
	if tables := got.Tables(); !slices.Equal(tables, []string{"[log]", "[history]", "[mqtt]", "[http]"}) {
		t.Errorf("Tables() = %q", tables)
	}
	snaps := defaultResolved("/x")
	snaps.Snapshots.MaxFiles++
	snaps.Cameras = old.Cameras
	if ch := Diff(old, snaps); !slices.Equal(ch.Tables(), []string{"[snapshots]"}) || ch.Empty() {
		t.Errorf("a [snapshots] change: %+v", ch)
	}
	if !Diff(old, old).Empty() || got.Empty() {
		t.Fatal("Empty() wrong")
	}
	if first := Diff(nil, old); len(first.Added) != 3 || !first.ModelChanged {
		t.Fatalf("Diff(nil, cfg) = %+v", first)
	}
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("clipd.example.toml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data, "/etc/clipd/clipd.toml"); err != nil {
			b.Fatal(err)
		}
	}
}

// Inspect keeps going where Load refuses: a bad value and a missing label
// file are both reported, the rest of the configuration is usable, and
// later problems can be located in the file.
func TestInspectReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clipd.toml")
	writeFile(t, path, "[model]\nbundle = \"models/x\"\n\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"nope.labels\"\nfps = 0\n"+
		"[[camera]]\nname = \"b\"\nsource = \"/dev/video7\"\nlabels = \"b.labels\"\n")
	writeFile(t, filepath.Join(dir, "b.labels"), "x\n")
	doc, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + ":8: camera[0].fps: must be between 1 and 240, got 0",
		path + ":7: camera[0].labels: label file " + filepath.Join(dir, "nope.labels") + ": no such file or directory",
	}
	if got := strings.Split(doc.Problems.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", doc.Problems, strings.Join(want, "\n"))
	}
	if !doc.Failed("camera[0]") || !doc.Failed("camera[0].fps") || doc.Failed("camera[1]") || doc.Failed("model.bundle") {
		t.Error("Failed does not match the problems")
	}
	if got := doc.Config.Cameras[1].Source; got != "/dev/video7" {
		t.Errorf("camera b's source %q", got)
	}
	if got := doc.At("model.bundle", "gone").Error(); got != path+":2: model.bundle: gone" {
		t.Errorf("At a written key: %s", got)
	}
	// A key left to its default is placed at its table's header.
	if got := doc.At("camera[1].fps", "x").Error(); got != path+":9: camera[1].fps: x" {
		t.Errorf("At a default key: %s", got)
	}
	if got := doc.At("socket.path", "x").Error(); got != path+": socket.path: x" {
		t.Errorf("At a key of a table not written: %s", got)
	}
	// Load refuses the same file with the same list.
	if _, err := Load(path); err == nil || err.Error() != doc.Problems.Error() {
		t.Errorf("Load: %v", err)
	}
	// What is not TOML of the right shape leaves nothing to inspect.
	writeFile(t, path, "[model]\nbundle = 3\n")
	if doc, err := Inspect(path); err == nil || doc != nil || !strings.Contains(err.Error(), ":2: model.bundle: must be a string") {
		t.Errorf("Inspect of a wrong type: %v, %v", doc, err)
	}
}

// The README's configuration table names every key (tables of their own,
// like a camera's subtables, are documented with their keys elsewhere).
func TestREADMEListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range knownKeys(nil) {
		for _, key := range knownKeys([]string{table}) {
			if table == "camera" && isTable(key) {
				continue
			}
			if !strings.Contains(string(readme), "`"+table+"."+key+"`") {
				t.Errorf("README.md's configuration table lacks %s.%s", table, key)
			}
		}
	}
}
