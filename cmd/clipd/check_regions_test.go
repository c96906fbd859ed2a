package main

import (
	"reflect"
	"testing"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/frame"
)

// check says, per camera, what the whole frame and each region cover.
func TestCoverageLinesOfRegions(t *testing.T) {
	half := frame.Rect{0, 0, 0.5, 1}
	cam := config.Camera{Name: "drive", Source: "pattern", Width: 1280, Height: 720, Regions: []config.Region{
		{Name: "left", Box: &frame.Box{X1: 0, Y1: 0, X2: 720, Y2: 720}},
		{Name: "half", Rect: &half},
	}}
	got := coverageLines(cam, 224)
	want := []string{
		"drive: 1280x720 → centre 720x720 classified (56 % of the frame)",
		"drive/left: 720x720 at 0,0 → all of it classified (56 % of the frame)",
		"drive/half: 640x720 at 0,0 → centre 640x640 classified (44 % of the frame)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("coverage lines\n%q\nwant\n%q", got, want)
	}
	cam.RegionsOnly = true
	if got := coverageLines(cam, 224); len(got) != 2 {
		t.Errorf("regions only: %q", got)
	}
}
