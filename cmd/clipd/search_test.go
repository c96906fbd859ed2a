package main

import (
	"slices"
	"testing"
)

// The first --camera of a label search names the label set; every further
// one restricts the frames searched (none were dropped, as they once were).
func TestSearchCommandLabelCameras(t *testing.T) {
	req, err := searchCommand(nil, "", "car", []string{"drive/gate", "yard", "shed/"}, "2h", "", 5, false)
	if err != nil {
		t.Fatal(err)
	}
	if req.Camera != "drive" || req.Region != "gate" || !slices.Equal(req.Cameras, []string{"yard", "shed/"}) {
		t.Fatalf("label search: camera %q region %q cameras %q", req.Camera, req.Region, req.Cameras)
	}
	req, err = searchCommand(nil, "", "car", []string{"drive"}, "", "", 0, false)
	if err != nil || req.Camera != "drive" || req.Region != "" || req.Cameras != nil {
		t.Fatalf("label search with one camera: %+v %v", req, err)
	}
	if _, err := searchCommand(nil, "", "car", nil, "", "", 0, false); err == nil {
		t.Fatal("--label without --camera accepted")
	}
	req, err = searchCommand([]string{"a", "red", "car"}, "", "", []string{"drive", "yard"}, "", "", 0, true)
	if err != nil || req.Text != "a red car" || req.Camera != "" || !slices.Equal(req.Cameras, []string{"drive", "yard"}) || !req.Frames {
		t.Fatalf("text search: %+v %v", req, err)
	}
}
