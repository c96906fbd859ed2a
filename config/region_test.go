package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
)

const driveCamera = `[[camera]]
name = "drive"
source = "/dev/video0"
labels = "labels/home.labels"
threshold = 0.3
top_k = 4
`

func TestRegions(t *testing.T) {
	doc := driveCamera + `
[[camera.region]]
name = "gate"
rect = [0.62, 0.05, 0.98, 0.55]
labels = "labels/gate.labels"
threshold = 0.5
top_k = 2

[[camera.region]]
name = "step"
box = [560, 360, 880, 720]

[[camera]]
name = "yard"
source = "pattern"
labels = "l.txt"
whole_frame = false

[[camera.region]]
name = "left"
rect = [0, 0, 0.5, 1]
`
	cfg, err := Parse([]byte(doc), "/etc/clipd/clipd.toml")
	if err != nil {
		t.Fatal(err)
	}
	drive, yard := cfg.Cameras[0], cfg.Cameras[1]
	gate := frame.Rect{0.62, 0.05, 0.98, 0.55}
	want := []Region{
		{Name: "gate", Rect: &gate, Labels: "/etc/clipd/labels/gate.labels", Threshold: 0.5, TopK: 2, StateHold: time.Second},
		{Name: "step", Box: &frame.Box{X1: 560, Y1: 360, X2: 880, Y2: 720}, Labels: "/etc/clipd/labels/home.labels", Threshold: 0.3, TopK: 4, StateHold: time.Second},
	}
	if drive.RegionsOnly || !reflect.DeepEqual(drive.Regions, want) {
		t.Errorf("drive: whole frame %v, regions\n%+v\nwant\n%+v", !drive.RegionsOnly, drive.Regions, want)
	}
	if !yard.RegionsOnly || len(yard.Regions) != 1 || yard.Regions[0].Name != "left" {
		t.Errorf("yard: whole frame %v, regions %+v", !yard.RegionsOnly, yard.Regions)
	}
	// Frigate's convention: fractions round to the nearest pixel, halves
	// away from zero.
	if b, err := drive.Regions[0].BoxIn(1280, 720); err != nil || b != (frame.Box{X1: 794, Y1: 36, X2: 1254, Y2: 396}) {
		t.Errorf("gate in 1280x720: %v, %v", b, err)
	}
	if _, err := drive.Regions[1].BoxIn(640, 480); err == nil {
		t.Error("a pixel box beyond a 640x480 frame was accepted")
	}
}

func TestRegionErrors(t *testing.T) {
	reg := "\n[[camera.region]]\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"neither rect nor box", driveCamera + reg + "name = \"gate\"\n",
			`clipd.toml:8: camera[0].region[0].rect: is required`},
		{"both", driveCamera + reg + "name = \"gate\"\nrect = [0, 0, 0.5, 0.5]\nbox = [0, 0, 100, 100]\n",
			`clipd.toml:11: camera[0].region[0].box: give either rect`},
		{"no name", driveCamera + reg + "rect = [0, 0, 0.5, 0.5]\n",
			`clipd.toml:8: camera[0].region[0].name: is required`},
		{"bad name", driveCamera + reg + "name = \"The Gate\"\nrect = [0, 0, 0.5, 0.5]\n",
			`clipd.toml:9: camera[0].region[0].name: must match`},
		{"duplicate", driveCamera + reg + "name = \"a\"\nrect = [0, 0, 0.5, 0.5]\n" + reg + "name = \"a\"\nrect = [0.5, 0.5, 1, 1]\n",
			`clipd.toml:13: camera[0].region[1].name: duplicate region name "a"`},
		{"inverted rect", driveCamera + reg + "name = \"g\"\nrect = [0.8, 0.1, 0.2, 0.5]\n",
			`clipd.toml:10: camera[0].region[0].rect:`},
		{"rect out of range", driveCamera + reg + "name = \"g\"\nrect = [0, 0, 1.2, 0.5]\n",
			`clipd.toml:10: camera[0].region[0].rect:`},
		{"empty rect", driveCamera + reg + "name = \"g\"\nrect = [0.5, 0.5, 0.5, 0.9]\n",
			`clipd.toml:10: camera[0].region[0].rect:`},
		{"rect too small in pixels", driveCamera + reg + "name = \"g\"\nrect = [0.5, 0.5, 0.51, 0.9]\n",
			`clipd.toml:10: camera[0].region[0].rect:`},
		{"box too small", driveCamera + reg + "name = \"g\"\nbox = [0, 0, 15, 100]\n",
			`clipd.toml:10: camera[0].region[0].box:`},
		{"box outside the frame", driveCamera + reg + "name = \"g\"\nbox = [1000, 0, 1300, 100]\n",
			`clipd.toml:10: camera[0].region[0].box:`},
		{"box with fractions", driveCamera + reg + "name = \"g\"\nbox = [0, 0, 100.5, 100]\n",
			`clipd.toml:10: camera[0].region[0].box: must be 4 integers`},
		{"rect of three", driveCamera + reg + "name = \"g\"\nrect = [0, 0, 1]\n",
			`clipd.toml:10: camera[0].region[0].rect: must be 4 numbers [x1, y1, x2, y2], got 3`},
		{"rect of strings", driveCamera + reg + "name = \"g\"\nrect = [\"0\", 0, 1, 1]\n",
			`clipd.toml:10: camera[0].region[0].rect: must be 4 numbers`},
		{"region threshold", driveCamera + reg + "name = \"g\"\nrect = [0, 0, 1, 1]\nthreshold = 2.0\n",
			`clipd.toml:11: camera[0].region[0].threshold: must be between 0 and 1`},
		{"region top_k", driveCamera + reg + "name = \"g\"\nrect = [0, 0, 1, 1]\ntop_k = 0\n",
			`clipd.toml:11: camera[0].region[0].top_k: must be between 1 and 1000`},
		{"unknown region key", driveCamera + reg + "name = \"g\"\nrect = [0, 0, 1, 1]\ncolour = 1\n",
			`clipd.toml:11: camera[0].region[0].colour: unknown key`},
		{"whole_frame off without regions", driveCamera + "whole_frame = false\n",
			`clipd.toml:7: camera[0].whole_frame: is false, but the camera has no [[camera.region]]`},
		{"second camera's region", driveCamera + reg + "name = \"a\"\nrect = [0, 0, 1, 1]\n" + strings.NewReplacer(`"drive"`, `"back"`, "video0", "video1").Replace(driveCamera) + reg + "name = \"b\"\nrect = [0, 0, 1, 1]\n" + reg + "name = \"b\"\nrect = [0, 0, 1, 1]\n",
			`camera[1].region[1].name: duplicate region name "b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "clipd.toml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}

// A region's labels file is checked like the camera's.
func TestLoadChecksRegionLabels(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/l.txt", "dog\n")
	path := dir + "/clipd.toml"
	writeFile(t, path, "[[camera]]\nname = \"a\"\nsource = \"pattern\"\nlabels = \"l.txt\"\n[[camera.region]]\nname = \"r\"\nrect = [0, 0, 1, 1]\nlabels = \"gone.labels\"\n")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+":8: camera[0].region[0].labels: label file "+dir+"/gone.labels: no such file") {
		t.Fatalf("err = %v", err)
	}
}
