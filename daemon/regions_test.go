package daemon

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipd/clipd/server"
)

// twoRegions is a camera on 64x64 frames with its whole frame and two
// regions, the left one with labels of its own.
func twoRegions(extraLeft string) string {
	return cameraTOML("front", "pattern", "a.labels", "") + `
[[camera.region]]
name = "left"
box = [0, 0, 32, 64]
labels = "left.labels"
top_k = 1
` + extraLeft + `
[[camera.region]]
name = "right"
rect = [0.5, 0, 1, 1]
`
}

func regionsHarness(t *testing.T, cameras string) *harness {
	return newHarness(t, cameras, func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\nowl\n")
		writeFile(t, filepath.Join(h.dir, "left.labels"), "open\nclosed\n")
	})
}

// collect reads results until every one of want has been seen, returning
// them by target.
func collect(t *testing.T, c *server.Client, want ...string) map[string]*server.Result {
	t.Helper()
	got := map[string]*server.Result{}
	for len(got) < len(want) {
		r := resultOf(t, c)
		name := r.Camera
		if r.Region != "" {
			name += "/" + r.Region
		}
		if !slices.Contains(want, name) {
			t.Fatalf("result for %s, want only %v", name, want)
		}
		got[name] = r
	}
	return got
}

func TestRegionsEachGetTheirOwnResults(t *testing.T) {
	defer verifyNoLeaks(t)
	h := regionsHarness(t, twoRegions(""))
	c := h.dial()
	got := collect(t, c, "front", "front/left", "front/right")
	if l := got["front/left"]; len(l.Top) != 1 || (l.Top[0].Label != "open" && l.Top[0].Label != "closed") {
		t.Errorf("left region result %+v: want its own labels, top 1", l.Top)
	}
	if r := got["front/right"]; len(r.Top) != 3 {
		t.Errorf("right region result %+v: want the camera's labels and top_k", r.Top)
	}
	// One frame's targets come from the same frame.
	st := status(t, c)
	cam := st.Cameras[0]
	if len(cam.Regions) != 2 || cam.Regions[0].Name != "left" || *cam.Regions[0].Box != [4]int{0, 0, 32, 64} ||
		*cam.Regions[1].Box != [4]int{32, 0, 64, 64} || cam.Regions[0].LabelsVersion != 1 || cam.Regions[0].Classified == 0 {
		t.Errorf("status regions %+v", cam.Regions)
	}

	// Subscriptions: one region, or the whole frame only.
	left := h.dial()
	if err := left.Subscribe([]string{"front/left"}); err != nil {
		t.Fatal(err)
	}
	collect(t, left, "front/left")
	collect(t, left, "front/left")
	whole := h.dial()
	if err := whole.Subscribe([]string{"front/"}); err != nil {
		t.Fatal(err)
	}
	collect(t, whole, "front")
	collect(t, whole, "front")
	h.stop()
}

// Editing one region's labels file reloads that region only: the others
// keep their labels version.
func TestRegionLabelsEditReloadsOnlyThatRegion(t *testing.T) {
	defer verifyNoLeaks(t)
	h := regionsHarness(t, twoRegions(""))
	c := h.dial()
	collect(t, c, "front", "front/left", "front/right")
	writeFile(t, filepath.Join(h.dir, "left.labels"), "open\nclosed\najar\n")
	m := next(t, c, "labels")
	var upd server.LabelsUpdate
	m.Decode(&upd)
	if upd.Camera != "front" || upd.Region != "left" || upd.Version != 2 {
		t.Fatalf("labels update %s, want front/left v2 only", m.Raw)
	}
	for {
		got := collect(t, c, "front", "front/left", "front/right")
		if got["front/left"].LabelsVersion == 2 {
			if got["front"].LabelsVersion != 1 || got["front/right"].LabelsVersion != 1 {
				t.Errorf("versions after the left edit: front %d, right %d; want 1", got["front"].LabelsVersion, got["front/right"].LabelsVersion)
			}
			break
		}
	}
	h.stop()
}

// Changing a region in the config restarts the camera's classification
// without reopening its source, and labels files that stay in use keep
// their version.
func TestRegionChangeKeepsSourceAndLabelVersions(t *testing.T) {
	defer verifyNoLeaks(t)
	h := regionsHarness(t, twoRegions(""))
	c := h.dial()
	collect(t, c, "front", "front/left", "front/right")
	writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\nowl\nemu\n") // version 2
	for resultOf(t, c).LabelsVersion != 2 {
	}
	h.writeConfig(twoRegions("threshold = 0.0\n") + "\n[[camera.region]]\nname = \"top\"\nbox = [0, 0, 64, 20]\n")
	h.hup()
	got := collect(t, c, "front", "front/left", "front/right", "front/top")
	if got["front"].LabelsVersion != 2 || got["front/top"].LabelsVersion != 2 {
		t.Errorf("versions after the reload: front %d, top %d; want 2 (the file's watcher was kept)", got["front"].LabelsVersion, got["front/top"].LabelsVersion)
	}
	if n := h.sources.count(); n != 1 {
		t.Errorf("%d sources opened: a region change must not reopen the source", n)
	}
	h.stop()
}

// A pixel box beyond the frames a source delivers leaves that region out,
// says so, and the others go on.
func TestRegionBeyondTheFrameIsLeftOut(t *testing.T) {
	defer verifyNoLeaks(t)
	// A file source: its size is unknown until frames arrive, so the box is
	// checked then (the fake source delivers 64x64).
	cams := cameraTOML("front", "clip.mp4", "a.labels", "") + "\n[[camera.region]]\nname = \"far\"\nbox = [100, 0, 200, 64]\n"
	h := newHarness(t, cams, func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		writeFile(t, filepath.Join(h.dir, "clip.mp4"), "not read: the sources are scripted")
	})
	c := h.dial()
	collect(t, c, "front")
	// The error report went out with the first frame, perhaps before this
	// client connected; status keeps it.
	if r := status(t, c).Cameras[0].Regions[0]; r.Classified != 0 || !strings.Contains(r.Error, "beyond the 64x64 frame's width") {
		t.Errorf("region beyond the frame: %+v", r)
	}
	h.stop()
}

// An embedding that cannot be scored costs only its own target: the
// frame's other targets go on getting results, the error names the
// region, and status counts the frames.
func TestOneUnscoredTargetKeepsTheOthersResults(t *testing.T) {
	defer verifyNoLeaks(t)
	h := regionsHarness(t, twoRegions(""))
	c := h.dial()
	collect(t, c, "front", "front/left", "front/right")
	// Each frame is one encoder call, its targets in order: right last.
	h.enc.nanLast.Store(true)
	m := waitErrorContaining(t, c, "of front/right not scored", "NaN")
	var er server.ErrorReport
	if err := m.Decode(&er); err != nil || er.Camera != "front" || er.Region != "right" {
		t.Errorf("error %s does not name camera and region (%v)", m.Raw, err)
	}
	seen := map[string]bool{}
	for !seen[""] || !seen["left"] {
		seen[resultOf(t, c).Region] = true
	}
	if st := status(t, c).Cameras[0]; st.NonFinite == 0 {
		t.Errorf("non_finite %d", st.NonFinite)
	}
	h.stop()
}
