package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/synth"
)

func shapeTruth(kind, color string, x float64) synth.Truth {
	return synth.Truth{Shapes: []synth.Shape{{Kind: kind, Color: color, X: x, Y: 0.5}}, Width: 480, Height: 480}
}

func top(labels ...string) []engine.Match {
	var m []engine.Match
	for i, l := range labels {
		m = append(m, engine.Match{Label: l, Score: float32(1) / float32(i+2)})
	}
	return m
}

// make run's lines: one a classification, within 80 columns; a scene
// classified again says so instead of looking like a repeated line.
func TestEventLines(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 41, 7, 120e6, time.UTC)
	stamp := at.Local().Format("15:04:05.000")
	var out bytes.Buffer
	p := newEventPrinter(&out)
	p.now = func() time.Time { return at }
	lat := map[string]float64{"total": 12.4}
	for _, r := range []*server.Result{
		{Camera: "demo", Seq: 1, Time: at, Top: top("blue", "red"), LatencyMS: lat, Truth: shapeTruth("circle", "blue", 0.2)},
		{Camera: "demo", Seq: 6, Time: at, Top: top("blue", "red"), LatencyMS: lat, Truth: shapeTruth("circle", "blue", 0.2)},
		// The same colour and shape elsewhere is another scene.
		{Camera: "demo", Seq: 11, Time: at, Top: top("blue", "red"), LatencyMS: lat, Truth: shapeTruth("circle", "blue", 0.7)},
		{Camera: "other", Seq: 3, Time: at, Top: top("cat"), Truth: shapeTruth("circle", "blue", 0.7)},
		// A region's result and scenes are its own.
		{Camera: "demo", Region: "left", Seq: 11, Time: at, Top: top("blue"), Truth: shapeTruth("circle", "blue", 0.7)},
	} {
		p.print(r)
	}
	p.print(&server.CameraState{Camera: "front", State: server.CameraRetrying, Error: "open /dev/video9: no such file or directory"})
	p.print(&server.StateEvent{Event: state.Event{Camera: "drive", Region: "gate", Label: "gate open", Previous: "gate closed", Score: 0.83,
		Time: at, Snapshot: "/var/lib/clipd/snapshots/drive.gate-20261127T094107.120Z-7.jpg"}})
	p.print(&server.StateEvent{Event: state.Event{Camera: "drive", Label: "car", Score: 0.9, Time: at}})
	want := []string{
		stamp + " demo #1 blue 0.50, red 0.33 (12 ms) truth: blue circle",
		stamp + " demo #6 blue 0.50, red 0.33 (12 ms) same scene as #1",
		stamp + " demo #11 blue 0.50, red 0.33 (12 ms) truth: blue circle",
		stamp + " other #3 cat 0.50 truth: blue circle",
		stamp + " demo/left #11 blue 0.50 truth: blue circle",
		stamp + " camera front retrying: open /dev/video9: no such file or directory",
		// Fits 80 columns: the snapshot's name gives way.
		stamp + " drive/gate event: gate closed → gate open 0.83  drive.gate-2026112…",
		stamp + " drive event: (start) → car 0.90",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEventLinesFit80Columns(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 41, 7, 0, time.UTC)
	var out bytes.Buffer
	p := newEventPrinter(&out)
	p.now = func() time.Time { return at }
	many := synth.Truth{Width: 640, Height: 480}
	for _, c := range []string{"red", "green", "blue", "yellow", "purple"} {
		many.Shapes = append(many.Shapes, synth.Shape{Kind: "triangle", Color: c})
	}
	longError := "reload: camera \"garden\": labels: /etc/clipd/labels/garden.labels:17: duplicate label \"a photo of a very long and descriptive label\" (first defined on line 3); it keeps running with its previous settings, and the next reload tries again"
	events := []server.Event{
		&server.Result{Camera: "demo", Seq: 123456, Time: at, Top: top("purple", "yellow", "orange", "green", "white"), LatencyMS: map[string]float64{"total": 1234}, Truth: many},
		&server.Result{Camera: strings.Repeat("x", 64), Seq: 1, Time: at, Top: top(strings.Repeat("an extremely long label ", 6))},
		&server.Result{Camera: "front", Seq: 9, Time: at, Top: top("person", "car", "dog", "cat", "package", "bicycle", "empty street")},
		&server.LabelsUpdate{Camera: "front", Version: 4, Labels: strings.Fields("person car dog cat package bicycle tree bird horse sheep cow elephant bear zebra giraffe")},
		&server.ErrorReport{Camera: "garden", File: "/etc/clipd/clipd.toml", Message: longError},
	}
	for _, ev := range events {
		p.print(ev)
	}
	text := out.String()
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if n := len([]rune(line)); n > lineWidth {
			t.Errorf("%d columns: %q", n, line)
		}
	}
	// Labels give way from the end, the best one stays; a long error is
	// wrapped, not cut.
	for _, want := range []string{"#123456 purple 0.50, yellow 0.33, … (1234 ms) truth: red tria…", "front #9 person 0.50, car 0.33, ", "labels v4: person, car, "} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if got := strings.Join(strings.Fields(text[strings.Index(text, "error garden"):]), " "); !strings.Contains(got, strings.Join(strings.Fields(longError), " ")) {
		t.Errorf("the error lost words:\n%s", text)
	}
}
