package daemon

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/server"
)

// A client's ad-hoc labels are encoded for its request and forgotten:
// asking again encodes them again, while a prompt of the labels file in
// use is never encoded for a client.
func TestAdHocLabelsAreNotKept(t *testing.T) {
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n") })
	c := h.dial()
	resultOf(t, c) // the file's prompts are encoded
	var img bytes.Buffer
	png.Encode(&img, image.NewRGBA(image.Rect(0, 0, 64, 64)))
	classify := func(labels ...string) int64 {
		t.Helper()
		before := h.enc.textCalls.Load()
		if _, err := c.Command(server.Command{Cmd: "classify", ImageB64: base64.StdEncoding.EncodeToString(img.Bytes()), Labels: labels}); err != nil {
			t.Fatalf("classify %q: %v", labels, err)
		}
		return h.enc.textCalls.Load() - before
	}
	if n := classify("dog", "cat"); n != 0 {
		t.Errorf("the labels file's own prompts were encoded again (%d calls)", n)
	}
	for i := range 2 {
		if n := classify("wolf", "fox"); n == 0 {
			t.Errorf("classify %d: new ad-hoc labels were not encoded: kept from an earlier request", i+1)
		}
	}
}

// What clients are told about a labels file says once which version
// stays, and none for a failure of the watch itself, which concerns no
// version.
func TestLabelsErrorsSayWhatStays(t *testing.T) {
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n") })
	c := h.dial()
	resultOf(t, c)
	path := filepath.Join(h.dir, "a.labels")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	m := next(t, c, "error")
	var rep server.ErrorReport
	if err := m.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if want := rep.File + ": removed (keeping labels version 1)"; rep.File == "" || rep.Message != want {
		t.Errorf("removal: %q, want %q", rep.Message, want)
	}

	var published []server.Event
	hub := newLabelsHub(nil, slog.New(slog.DiscardHandler), func(ev server.Event) { published = append(published, ev) })
	f := &labelsFile{path: "/etc/clipd/home.labels", users: map[targetName]int{{camera: "front"}: 1}}
	hub.event(f, labels.Event{Kind: labels.Failed, Err: errors.New("labels: file watch: fsnotify: queue or buffer overflow")})
	want := "labels: file watch: fsnotify: queue or buffer overflow; reading /etc/clipd/home.labels again (the labels in use stay)"
	if len(published) != 1 || published[0].(*server.ErrorReport).Message != want {
		t.Errorf("a watch error: %+v, want %q", published, want)
	}
	if f.failing != "" {
		t.Errorf("a watch error marked the file as failing: %q", f.failing)
	}
}
