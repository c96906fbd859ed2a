package daemon

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"path/filepath"
	"testing"

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
