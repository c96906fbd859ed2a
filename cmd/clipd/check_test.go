package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/testmodel"
)

// checkCase is one config for the real `clipd check`. In config and want,
// %DIR% is the test directory, %CONF% the config file's path and %BUNDLE%
// the demo model.
type checkCase struct {
	name   string
	config string
	// files are written into the directory first (relative paths).
	files map[string]string
	// prepare runs after files are written (with the directory).
	prepare func(t *testing.T, dir string)
	// want are lines check must print, in this order; exactly these when
	// exact is set.
	want  []string
	exact bool
	ok    bool // exit status 0
}

const demoLabels = "dog\ncat\n"

func TestCheckReportsWhatRunRefuses(t *testing.T) {
	cases := []checkCase{
		{
			name: "every problem in one run",
			config: `[model]
bundle = "models/ViT-B-32"
[socket]
path = "%DIR%/file/clipd.sock"
[[camera]]
name = "front"
source = "clips/missing.mp4"
labels = "missing.labels"
[[camera]]
name = "back"
source = "patern"
labels = "ok.labels"
[[camera]]
name = "side"
source = "gst:videotestsrc"
format = "mjpeg"
width = 641
height = 480
labels = "dup.labels"
fps = 0
`,
			files: map[string]string{"file": "", "ok.labels": demoLabels, "dup.labels": "owl\nyak\nowl\n"},
			want: []string{
				"%CONF%:2: model.bundle: no model bundle at %DIR%/models/ViT-B-32",
				"  a bundle is a directory holding a CLIP model as ONNX",
				"tools/export-clip ViT-B-32.pt DIR --vocab bpe_simple_vocab_16e6.txt.gz`, or use an immich-layout export",
				"%CONF%:4: socket.path: socket path %DIR%/file/clipd.sock: %DIR%/file is not a directory",
				"%CONF%:7: camera[0].source: video file %DIR%/clips/missing.mp4: no such file or directory",
				"%CONF%:8: camera[0].labels: label file %DIR%/missing.labels: no such file or directory",
				`%CONF%:11: camera[1].source: "patern": did you mean the synthetic camera, "pattern"`,
				"%CONF%:16: camera[2].format: gstreamer sources deliver nv12, yuyv or rgb24, not mjpeg",
				"%CONF%:17: camera[2].width: must be even, got 641",
				"%CONF%:20: camera[2].fps: must be between 1 and 240, got 0",
				`%DIR%/dup.labels:3: duplicate label "owl" (first defined on line 1) (camera[2].labels)`,
				"clipd: %CONF%: 9 problems",
			},
			exact: true,
		},
		{
			name:   "unknown key",
			config: "[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\nclassify_evry = \"1s\"\n",
			files:  map[string]string{"ok.labels": demoLabels},
			want: []string{
				"%CONF%:5: camera[0].classify_evry: unknown key (did you mean classify_every?)",
				"clipd: %CONF%: 1 problem",
			},
			exact: true,
		},
		{
			name: "a missing device is a warning",
			config: `[model]
bundle = "%BUNDLE%"
[socket]
path = "%DIR%/run/clipd.sock"
[[camera]]
name = "front"
source = "/dev/video-clipd-test-absent"
labels = "ok.labels"
[[camera]]
name = "door"
source = "rtsp://192.0.2.10:554/stream1"
labels = "ok.labels"
[[camera]]
name = "demo"
source = "pattern"
width = 480
height = 480
labels = "ok.labels"
`,
			files: map[string]string{"ok.labels": demoLabels},
			want: []string{
				"%CONF%:7: camera[0].source: warning: device /dev/video-clipd-test-absent does not exist now; clipd waits for it",
				// The demo model's input is 64x64: at that size the
				// centre crop's edges fall between frame pixels, and it
				// reads a little more than the 720 columns of 224.
				"front: 1280x720 → centre 725x720 classified (57 % of the frame), if the device takes that size",
				"door: the stream's own size, not known until it plays → its centre square classified",
				"demo: 480x480 → all of it classified (100 % of the frame)",
				"%CONF%: OK (3 cameras, model %BUNDLE%; 1 warning)",
			},
			exact: true,
			ok:    true,
		},
		{
			// A region's own labels file is parsed by run's watcher, so
			// check parses it too.
			name:   "a region's own labels file",
			config: "[model]\nbundle = \"%BUNDLE%\"\n[socket]\npath = \"%DIR%/s.sock\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\n[[camera.region]]\nname = \"gate\"\nrect = [0, 0, 0.5, 0.5]\nlabels = \"gate.labels\"\n",
			files:  map[string]string{"ok.labels": demoLabels, "gate.labels": "car\nvan\ncar\n"},
			want: []string{
				`%DIR%/gate.labels:3: duplicate label "car" (first defined on line 1) (camera[0].region[0].labels)`,
				"clipd: %CONF%: 1 problem",
			},
		},
		{
			// Files the outputs read only at start: run would refuse
			// them, so check reads them with the same readers.
			name:   "a short web token and a CA file that holds no certificate",
			config: "[model]\nbundle = \"%BUNDLE%\"\n[socket]\npath = \"%DIR%/s.sock\"\n[mqtt]\nbroker = \"mqtts://127.0.0.1:8883\"\nca_file = \"ca.pem\"\n[http]\nlisten = \"0.0.0.0:9464\"\ntoken_file = \"token\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\n",
			files:  map[string]string{"ok.labels": demoLabels, "ca.pem": "not a certificate\n", "token": "short\n"},
			want: []string{
				"%CONF%:7: mqtt.ca_file: ",
				"%CONF%:10: http.token_file: %DIR%/token: the token must be at least 16 characters",
				"clipd: %CONF%: 2 problems",
			},
		},
		{
			name:   "socket path too long",
			config: "[socket]\npath = \"/tmp/" + strings.Repeat("d", 110) + "/s.sock\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\n[model]\nbundle = \"%BUNDLE%\"\n",
			files:  map[string]string{"ok.labels": demoLabels},
			want:   []string{"%CONF%:2: socket.path: socket path /tmp/ddd", "is 122 bytes; unix sockets allow at most 107", "clipd: %CONF%: 1 problem"},
		},
		{
			name:   "a socket group that does not exist",
			config: "[model]\nbundle = \"%BUNDLE%\"\n[socket]\npath = \"%DIR%/s.sock\"\ngroup = \"clipd-no-such-group\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\n",
			files:  map[string]string{"ok.labels": demoLabels},
			want:   []string{`%CONF%:5: socket.group: socket group "clipd-no-such-group"`, "clipd: %CONF%: 1 problem"},
		},
		{
			name:   "a model whose weights give NaN",
			config: "[model]\nbundle = \"bundle\"\n[socket]\npath = \"%DIR%/s.sock\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"ok.labels\"\n",
			files:  map[string]string{"ok.labels": demoLabels},
			prepare: func(t *testing.T, dir string) {
				copyDir(t, demoBundle(t), filepath.Join(dir, "bundle"))
				poisonWeights(t, filepath.Join(dir, "bundle", "visual", "model.onnx"))
			},
			want: []string{"%CONF%:2: model.bundle: %DIR%/bundle: the model is broken: the embedding of a probe image is unusable", "clipd: %CONF%: 1 problem"},
		},
		{
			name:   "a label file that is a directory, and a bundle without its text encoder",
			config: "[model]\nbundle = \"bundle\"\n[socket]\npath = \"%DIR%/s.sock\"\n[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"labels.d\"\n",
			prepare: func(t *testing.T, dir string) {
				os.Mkdir(filepath.Join(dir, "labels.d"), 0o755)
				copyDir(t, demoBundle(t), filepath.Join(dir, "bundle"))
				os.Remove(filepath.Join(dir, "bundle", "textual", "model.onnx"))
			},
			want: []string{
				"%CONF%:2: model.bundle: bundle %DIR%/bundle: textual/model.onnx: missing",
				"%CONF%:8: camera[0].labels: label file %DIR%/labels.d is a directory",
				"clipd: %CONF%: 2 problems",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			conf := filepath.Join(dir, "clipd.toml")
			expand := strings.NewReplacer("%DIR%", dir, "%CONF%", conf, "%BUNDLE%", demoBundle(t)).Replace
			writeFile(t, conf, expand(tc.config))
			out, err := exec.Command(clipdBinary(t), "check", "--config", conf).CombinedOutput()
			var exit *exec.ExitError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("clipd check failed: %v\n%s", err, out)
			case !tc.ok && !errors.As(err, &exit):
				t.Fatalf("clipd check accepted the config (%v):\n%s", err, out)
			}
			got := string(out)
			rest := got
			for _, w := range tc.want {
				w = expand(w)
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks (in this order) %q:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if tc.exact {
				if lines, want := strings.Count(got, "\n"), len(tc.want); lines != want {
					t.Errorf("%d lines, want %d:\n%s", lines, want, got)
				}
			}
		})
	}
}

// The example config passes as it stands in a fresh checkout, and where
// `make install` lays it out (/etc/clipd with labels/ and models/ beside
// it).
func TestCheckPassesTheExample(t *testing.T) {
	root := testmodel.RepoRoot(t)
	cmd := exec.Command(clipdBinary(t), "check", "--config", "config/clipd.example.toml")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "config/clipd.example.toml: OK (1 camera") {
		t.Errorf("check of the example in the repository: %v\n%s", err, out)
	}

	dest := t.TempDir()
	if out, err := exec.Command("make", "-s", "-C", root, "install-config", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make install-config: %v\n%s", err, out)
	}
	installed := filepath.Join(dest, "etc", "clipd", "clipd.toml")
	out, err = exec.Command(clipdBinary(t), "check", "--config", installed).CombinedOutput()
	if err != nil || !strings.Contains(string(out), installed+": OK (1 camera, model "+filepath.Join(dest, "etc", "clipd", "models", "demo")+")") {
		t.Errorf("check of the installed example: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "demo: 480x480 → all of it classified") {
		t.Errorf("the installed default is not the synthetic camera:\n%s", out)
	}

	// uninstall takes away the demo model and keeps the config and labels.
	if out, err := exec.Command("make", "-s", "-C", root, "uninstall", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dest, "etc", "clipd", "models", "demo")); err == nil {
		t.Error("uninstall left the demo model")
	}
	for _, kept := range []string{"clipd.toml", "labels/home.labels"} {
		if _, err := os.Stat(filepath.Join(dest, "etc", "clipd", kept)); err != nil {
			t.Errorf("uninstall removed /etc/clipd/%s: %v", kept, err)
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// poisonWeights sets every value of the first float initializer of an
// ONNX file to NaN (Debian's python3-onnx): a model that loads and runs,
// and whose every embedding is NaN, which only the probe catches.
func poisonWeights(t *testing.T, onnxPath string) {
	t.Helper()
	script := `
import sys, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
for i, init in enumerate(m.graph.initializer):
    a = numpy_helper.to_array(init)
    if a.dtype == np.float32 and a.size > 16:
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.full_like(a, np.nan), init.name))
        break
else:
    sys.exit("no float initializer")
onnx.save(m, sys.argv[1])
`
	out, err := exec.Command(testmodel.Python(), "-c", script, onnxPath).CombinedOutput()
	if err != nil {
		t.Fatalf("poisoning %s: %v\n%s", onnxPath, err, out)
	}
}
