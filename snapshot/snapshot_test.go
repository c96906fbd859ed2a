package snapshot

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/syncbuf"
	"github.com/clipd/clipd/internal/testimage"
	"github.com/clipd/clipd/jpegturbo"
)

// scene is smooth RGB content, what a lossy round trip should keep.
func scene(w, h int) []byte {
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			p[0] = uint8(40 + x*170/w)
			p[1] = uint8(40 + y*170/h)
			p[2] = uint8(128 + 80*math.Sin(float64(x)/23)*math.Cos(float64(y)/17))
		}
	}
	return rgb
}

func rgbToYUV(r, g, b uint8) (y, cb, cr uint8) {
	R, G, B := float64(r), float64(g), float64(b)
	Y := 0.299*R + 0.587*G + 0.114*B
	c := func(v float64) uint8 { return uint8(math.Max(0, math.Min(255, math.Round(v)))) }
	return c(16 + 219*Y/255), c(128 + 224*(B-Y)/(1.772*255)), c(128 + 224*(R-Y)/(1.402*255))
}

// frames returns the scene as an RGB24 (padded rows), YUYV, NV12, complete
// MJPEG and webcam MJPEG (no Huffman tables, no EOI) frame.
func frames(t testing.TB, w, h int) map[string]*frame.Frame {
	rgb := scene(w, h)
	rs := w*3 + 9
	rgb24 := &frame.Frame{Format: frame.RGB24, Width: w, Height: h, Stride: rs, Data: make([]byte, rs*h), Seq: 1}
	yuyv := &frame.Frame{Format: frame.YUYV, Width: w, Height: h, Data: make([]byte, w*h*2), Seq: 2}
	ns := w + w%2
	nv12 := &frame.Frame{Format: frame.NV12, Width: w, Height: h, Stride: ns, Data: make([]byte, ns*(h+(h+1)/2)), Seq: 3}
	for y := 0; y < h; y++ {
		copy(rgb24.Data[y*rs:], rgb[y*w*3:(y+1)*w*3])
		for x := 0; x < w; x++ {
			p := rgb[(y*w+x)*3:]
			Y, cb, cr := rgbToYUV(p[0], p[1], p[2])
			yuyv.Data[(y*w+x)*2] = Y
			nv12.Data[y*ns+x] = Y
			if x%2 == 0 {
				yuyv.Data[(y*w+x)*2+1], yuyv.Data[(y*w+x)*2+3] = cb, cr
				if y%2 == 0 {
					nv12.Data[ns*h+y/2*ns+x], nv12.Data[ns*h+y/2*ns+x+1] = cb, cr
				}
			}
		}
	}
	jpg, err := jpegturbo.Encode(jpegturbo.Image{Width: w, Height: h, Channels: 3, Pix: rgb}, 90, nil)
	if err != nil {
		t.Fatal(err)
	}
	mjpeg := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: jpg, Seq: 4}
	webcam := &frame.Frame{Format: frame.MJPEG, Width: w, Height: h, Data: webcamJPEG(t, jpg), Seq: 5}
	return map[string]*frame.Frame{"rgb24": rgb24, "yuyv": yuyv, "nv12": nv12, "mjpeg": mjpeg, "mjpeg-webcam": webcam}
}

// webcamJPEG strips the DHT segments and the EOI, as UVC cameras send
// MJPEG.
func webcamJPEG(t testing.TB, jpg []byte) []byte {
	out, err := testimage.WebcamMJPEG(jpg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// frameRGB is the frame as packed RGB: converted as preprocessing does, or
// decoded.
func frameRGB(t testing.TB, f *frame.Frame) []byte {
	if f.Format == frame.MJPEG {
		jpg, err := jpegturbo.RepairMJPEG(nil, f.Data)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpegturbo.Decode(jpg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return img.Pix
	}
	out := make([]byte, f.Width*f.Height*3)
	for y := 0; y < f.Height; y++ {
		copy(out[y*f.Width*3:], f.RowRGB(out[y*f.Width*3:(y+1)*f.Width*3], y, 0, f.Width)[:f.Width*3])
	}
	return out
}

func decode(t testing.TB, jpg []byte) jpegturbo.Image {
	t.Helper()
	img, err := jpegturbo.Decode(jpg, nil)
	if err != nil {
		t.Fatalf("snapshot does not decode: %v", err)
	}
	// And a second, independent decoder reads it too.
	if _, err := jpeg.Decode(bytes.NewReader(jpg)); err != nil {
		t.Fatalf("Go's image/jpeg cannot read the snapshot: %v", err)
	}
	return img
}

func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	return 10 * math.Log10(255*255*float64(len(a))/se)
}

func TestEncodeEveryFormat(t *testing.T) {
	w, h := 322, 181 // odd height; NV12 chroma rounding
	for name, f := range frames(t, w, h) {
		jpg, err := Encode(f, nil, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img := decode(t, jpg)
		if img.Width != w || img.Height != h || img.Channels != 3 {
			t.Fatalf("%s: snapshot is %dx%dx%d", name, img.Width, img.Height, img.Channels)
		}
		if p := psnr(img.Pix, frameRGB(t, f)); p < 33 {
			t.Errorf("%s: snapshot is far from the frame's pixels (PSNR %.1f dB)", name, p)
		}
		switch name {
		case "mjpeg":
			if !bytes.Equal(jpg, f.Data) {
				t.Error("a complete MJPEG frame was not saved byte for byte as it came")
			}
			if &jpg[0] == &f.Data[0] {
				t.Error("the snapshot aliases the frame's data")
			}
		case "mjpeg-webcam":
			want, _ := jpegturbo.RepairMJPEG(nil, f.Data)
			if !bytes.Equal(jpg, want) {
				t.Error("a webcam MJPEG frame was re-encoded instead of having only its tables and EOI added")
			}
		}
	}
}

// TestOutlinePixels checks the drawing exactly, before any JPEG.
func TestOutlinePixels(t *testing.T) {
	w, h := 40, 30
	rgb := make([]byte, w*h*3)
	b := frame.Box{X1: 5, Y1: 7, X2: 31, Y2: 20}
	drawOutline(rgb, w, b, 3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			inBox := x >= b.X1 && x < b.X2 && y >= b.Y1 && y < b.Y2
			inner := x >= b.X1+3 && x < b.X2-3 && y >= b.Y1+3 && y < b.Y2-3
			want := [3]byte{}
			if inBox && !inner {
				want = BoxColor
			}
			if got := [3]byte(rgb[(y*w+x)*3 : (y*w+x)*3+3]); got != want {
				t.Fatalf("pixel %d,%d is %v, want %v", x, y, got, want)
			}
		}
	}
	// A box thinner than two bands is filled, not overrun.
	rgb = make([]byte, w*h*3)
	drawOutline(rgb, w, frame.Box{X1: 0, Y1: 0, X2: 3, Y2: 30}, 3)
	if [3]byte(rgb[3*3:3*3+3]) != ([3]byte{}) || [3]byte(rgb[2*3:2*3+3]) != BoxColor {
		t.Error("a 3-pixel-wide box was not exactly filled")
	}
}

// TestBoxDrawnInSnapshot decodes snapshots of every format and finds the
// outline where the box is: the bands just inside its edges are the box's
// colour, the frame a few pixels away from them is the frame.
func TestBoxDrawnInSnapshot(t *testing.T) {
	w, h := 640, 480
	box := frame.Box{X1: 101, Y1: 61, X2: 501, Y2: 341}
	th := outlineWidth(w, h)
	if th != 3 {
		t.Fatalf("outline of a 640x480 frame is %d pixels, want 3", th)
	}
	for name, f := range frames(t, w, h) {
		jpg, err := Encode(f, &box, 90)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img := decode(t, jpg)
		orig := frameRGB(t, f)
		px := func(buf []byte, x, y int) [3]int {
			p := buf[(y*w+x)*3:]
			return [3]int{int(p[0]), int(p[1]), int(p[2])}
		}
		midX, midY := (box.X1+box.X2)/2, (box.Y1+box.Y2)/2
		// The middle of each band, at several places along it.
		var onLine [][2]int
		for _, k := range []int{0, 1, 2, 3, 4} {
			x := box.X1 + th + k*(box.Dx()-2*th)/4
			y := box.Y1 + th + k*(box.Dy()-2*th)/4
			onLine = append(onLine, [2]int{min(x, box.X2-1-th), box.Y1 + th/2}, [2]int{min(x, box.X2-1-th), box.Y2 - 1 - th/2},
				[2]int{box.X1 + th/2, min(y, box.Y2-1-th)}, [2]int{box.X2 - 1 - th/2, min(y, box.Y2-1-th)})
		}
		for _, p := range onLine {
			c := px(img.Pix, p[0], p[1])
			if c[0] < 190 || c[1] > 80 || c[2] < 190 {
				t.Errorf("%s: pixel %d,%d on the outline is %v, not the box colour %v", name, p[0], p[1], c, BoxColor)
			}
		}
		// Off the line: outside the box, inside it beyond the band, and
		// the centre, are the frame's pixels (within JPEG's error).
		const away = 6
		offLine := [][2]int{
			{midX, box.Y1 - away}, {midX, box.Y2 - 1 + away}, {box.X1 - away, midY}, {box.X2 - 1 + away, midY},
			{midX, box.Y1 + th - 1 + away}, {box.X1 + th - 1 + away, midY}, {midX, midY}, {10, 10},
		}
		for _, p := range offLine {
			got, want := px(img.Pix, p[0], p[1]), px(orig, p[0], p[1])
			for c := range 3 {
				if d := got[c] - want[c]; d < -20 || d > 20 {
					t.Errorf("%s: pixel %d,%d off the outline is %v, the frame has %v", name, p[0], p[1], got, want)
					break
				}
			}
		}
	}
}

func TestBadFramesAreErrors(t *testing.T) {
	fr := frames(t, 64, 48)
	mj := fr["mjpeg"]
	cases := []struct {
		name string
		f    *frame.Frame
		box  *frame.Box
		q    int
		want string
	}{
		{"nil", nil, nil, 0, "nil frame"},
		{"truncated YUYV", &frame.Frame{Format: frame.YUYV, Width: 64, Height: 48, Data: make([]byte, 100)}, nil, 0, "truncated YUYV"},
		{"truncated NV12", &frame.Frame{Format: frame.NV12, Width: 64, Height: 48, Data: make([]byte, 64*48)}, nil, 0, "truncated NV12"},
		{"zero size RGB", &frame.Frame{Format: frame.RGB24}, nil, 0, "bad RGB image size"},
		{"unknown format", &frame.Frame{Format: 77, Width: 4, Height: 4}, nil, 0, "unsupported pixel format"},
		{"MJPEG garbage", &frame.Frame{Format: frame.MJPEG, Width: 64, Height: 48, Data: []byte("not a jpeg")}, nil, 0, "SOI"},
		{"MJPEG garbage with box", &frame.Frame{Format: frame.MJPEG, Width: 64, Height: 48, Data: []byte{0xFF, 0xD8, 1, 2, 3}}, &frame.Box{X2: 20, Y2: 20}, 0, "jpegturbo"},
		{"MJPEG of another size", &frame.Frame{Format: frame.MJPEG, Width: 640, Height: 48, Data: mj.Data}, nil, 0, "64x48, not the frame's size"},
		{"MJPEG truncated, box", &frame.Frame{Format: frame.MJPEG, Width: 64, Height: 48, Data: mj.Data[:len(mj.Data)*9/10]}, &frame.Box{X2: 20, Y2: 20}, 0, "corrupt data"},
		{"box beyond the frame", fr["yuyv"], &frame.Box{X1: 0, Y1: 0, X2: 65, Y2: 48}, 0, "x2 65 is beyond the 64x48 frame's width"},
		{"inverted box", fr["mjpeg"], &frame.Box{X1: 30, Y1: 0, X2: 20, Y2: 48}, 0, "inverted"},
		{"quality", fr["rgb24"], nil, 101, "quality 101 is outside 1..100"},
	}
	for _, c := range cases {
		_, err := Encode(c.f, c.box, c.q)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func newWriter(t *testing.T, cfg Config) *Writer {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "snapshots")
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// snapshotFiles lists the directory's snapshot files.
func snapshotFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// at returns a copy of f captured at t with sequence number seq.
func at(f *frame.Frame, t time.Time, seq uint64) *frame.Frame {
	g := *f
	g.Time, g.Seq = t, seq
	return &g
}

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 890e6, time.UTC)

func TestWriterRotatesByCount(t *testing.T) {
	w := newWriter(t, Config{MaxFiles: 3})
	f := frames(t, 64, 48)["yuyv"]
	var paths []string
	for i := range 5 {
		p, err := w.Save("front", "gate", at(f, t0.Add(time.Duration(i)*time.Second), uint64(i+1)), &frame.Box{X1: 1, Y1: 1, X2: 33, Y2: 30})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if want := filepath.Join(w.cfg.Dir, "front.gate-20250304T050607.890Z-1.jpg"); paths[0] != want {
		t.Errorf("first path %s, want %s", paths[0], want)
	}
	w.Close() // writes what is queued
	st := w.Stats()
	if st.Written != 5 || st.Deleted != 2 || st.Files != 3 || st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("stats %+v, want 5 written, 2 deleted, 3 files, none queued", st)
	}
	for i, p := range paths {
		_, err := os.Stat(p)
		if i < 2 && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("snapshot %d (%s) was not deleted: %v", i, p, err)
		}
		if i >= 2 {
			if err != nil {
				t.Errorf("snapshot %d: %v", i, err)
				continue
			}
			data, _ := os.ReadFile(p)
			decode(t, data)
		}
	}
	if names := snapshotFiles(t, w.cfg.Dir); len(names) != 3 {
		t.Errorf("directory holds %v, want the 3 newest and nothing else", names)
	}
	if _, err := w.Save("front", "", f, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
}

func TestWriterRotatesByBytes(t *testing.T) {
	f := frames(t, 96, 64)["rgb24"]
	one, err := Encode(f, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Room for two and a half snapshots of this frame.
	limit := int64(len(one))*5/2 + 1
	w := newWriter(t, Config{MaxBytes: limit})
	var paths []string
	for i := range 6 {
		p, err := w.Save("cam", "", at(f, t0, uint64(10+i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	w.Close()
	st := w.Stats()
	if st.Files != 2 || st.Bytes != 2*int64(len(one)) || st.Deleted != 4 {
		t.Errorf("stats %+v: want 2 files of %d bytes kept, 4 deleted", st, len(one))
	}
	var total int64
	for _, name := range snapshotFiles(t, w.cfg.Dir) {
		info, _ := os.Stat(filepath.Join(w.cfg.Dir, name))
		total += info.Size()
	}
	if total > limit {
		t.Errorf("directory holds %d bytes, limit %d", total, limit)
	}
	for _, p := range paths[4:] {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a newest snapshot is missing: %v", err)
		}
	}
}

func TestMJPEGPassthroughFile(t *testing.T) {
	fr := frames(t, 160, 120)
	w := newWriter(t, Config{})
	complete, err := w.Save("door", "", fr["mjpeg"], nil)
	if err != nil {
		t.Fatal(err)
	}
	webcam, err := w.Save("door", "", fr["mjpeg-webcam"], nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, err := os.ReadFile(complete)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fr["mjpeg"].Data) {
		t.Error("the saved MJPEG frame is not byte for byte the frame")
	}
	got, err = os.ReadFile(webcam)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := jpegturbo.RepairMJPEG(nil, fr["mjpeg-webcam"].Data)
	if !bytes.Equal(got, want) {
		t.Error("the saved webcam frame is not the frame with its tables and EOI added")
	}
	if _, _, err := image.Decode(bytes.NewReader(got)); err != nil {
		t.Errorf("the saved webcam frame is not a JPEG other readers open: %v", err)
	}
}

func TestQueueFullDrops(t *testing.T) {
	f := frames(t, 64, 48)["yuyv"]
	size := int64(len(f.Data))

	// A queue smaller than one frame drops every snapshot.
	w := newWriter(t, Config{QueueBytes: size - 1})
	if _, err := w.Save("a", "", f, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("frame larger than the queue: %v", err)
	}
	if st := w.Stats(); st.Dropped != 1 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}

	// Room for two frames; the writer is held before its first write, so
	// the third frame finds the queue full whatever the scheduling.
	dir := filepath.Join(t.TempDir(), "s")
	release := make(chan struct{})
	w2, err := New(Config{Dir: dir, QueueBytes: 2 * size})
	if err != nil {
		t.Fatal(err)
	}
	w2.beforeWrite = func() { <-release }
	defer w2.Close()
	for i := range 3 {
		_, err := w2.Save("a", "", at(f, t0, uint64(i+1)), nil)
		if i < 2 && err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, ErrQueueFull) {
			t.Fatalf("third snapshot into a full queue: %v", err)
		}
	}
	if st := w2.Stats(); st.Dropped != 1 || st.Queued != 2 || st.QueuedBytes != 2*size {
		t.Errorf("stats %+v, want 1 dropped and 2 frames queued", st)
	}
	close(release)
	w2.Close()
	if st := w2.Stats(); st.Written != 2 || st.Queued != 0 || st.QueuedBytes != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

func TestBadFramesInWriterAreCounted(t *testing.T) {
	w := newWriter(t, Config{})
	bad := &frame.Frame{Format: frame.MJPEG, Width: 8, Height: 8, Data: []byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9}, Seq: 1}
	p, err := w.Save("cam", "", bad, &frame.Box{X2: 4, Y2: 4})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if st := w.Stats(); st.Failed != 1 || st.Written != 0 || st.Files != 0 {
		t.Errorf("stats %+v, want 1 failed", st)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed snapshot left %s: %v", p, err)
	}
	if names := snapshotFiles(t, w.cfg.Dir); len(names) != 0 {
		t.Errorf("directory holds %v after a failed snapshot", names)
	}
}

func TestNamesAreSafeAndUnique(t *testing.T) {
	w := newWriter(t, Config{})
	f := at(frames(t, 32, 32)["rgb24"], t0, 9)
	for _, c := range [][2]string{{"", ""}, {"../etc", ""}, {"Front", ""}, {"a/b", ""}, {"cam", "../x"}, {"cam", "a b"}, {strings.Repeat("a", 65), ""}} {
		if _, err := w.Save(c[0], c[1], f, nil); err == nil || !strings.Contains(err.Error(), "is not [a-z0-9_-]") {
			t.Errorf("camera %q region %q: err = %v", c[0], c[1], err)
		}
	}
	seen := map[string]bool{}
	for range 3 {
		p, err := w.Save("cam", "step", f, nil) // the same frame three times
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("path %s given twice", p)
		}
		seen[p] = true
		if filepath.Dir(p) != w.cfg.Dir || !filePattern.MatchString(filepath.Base(p)) {
			t.Errorf("path %s is not a snapshot name in %s", p, w.cfg.Dir)
		}
	}
	w.Close()
	if st := w.Stats(); st.Written != 3 || st.Files != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "snapshots")
	w := newWriter(t, Config{Dir: dir})
	p, err := w.Save("cam", "", frames(t, 32, 32)["nv12"], nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// The umask may only take bits away.
	if di.Mode().Perm()&^0o750 != 0 || fi.Mode().Perm()&^0o640 != 0 {
		t.Errorf("directory %v, file %v; want at most 0750 and 0640", di.Mode().Perm(), fi.Mode().Perm())
	}
}

// TestPlantedLinksAreNotFollowed: symlinks put where the writer will write
// are never written through, and the files they point to never change.
func TestPlantedLinksAreNotFollowed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snapshots")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := at(frames(t, 32, 32)["rgb24"], t0, 1)
	final := "cam-20250304T050607.890Z-1.jpg"
	// At the name Save would give, and at the temporary name of the next.
	for _, name := range []string{final, tmpPrefix + "cam-20250304T050607.890Z-1-2.jpg"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	w := newWriter(t, Config{Dir: dir})
	p, err := w.Save("cam", "", f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) == final {
		t.Fatalf("Save gave the name a symlink holds: %s", p)
	}
	// The race Save cannot see: a link planted after the name was given.
	if err := w.writeFile(final, []byte("data")); err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("writing over a planted symlink: err = %v", err)
	}
	w.Close()
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Fatalf("the symlink's target was written: %q", got)
	}
	if st, err := os.Lstat(filepath.Join(dir, final)); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the planted symlink was replaced: %v, %v", st, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	decode(t, data)
}

// TestIndexesExistingSnapshots: a new Writer counts the snapshots already
// in the directory, oldest by time first, deletes beyond its limits and
// leaves everything else alone.
// oldSnapshot begins like a JPEG, which is all the index looks at.
const oldSnapshot = "\xff\xd8\xff\xe0 old snapshot"

func TestIndexesExistingSnapshots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snapshots")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	old := []string{"b-20240101T000000.000Z-1.jpg", "a.r-20240101T000001.000Z-2.jpg", "c-20240101T000002.000Z-3-2.jpg"}
	for i, name := range old {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(oldSnapshot), 0o640); err != nil {
			t.Fatal(err)
		}
		mod := t0.Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, []byte("mine"), 0o640); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target.jpg")
	if err := os.WriteFile(target, []byte("target"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "z-20200101T000000.000Z-1.jpg")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, tmpPrefix+"b-20240101T000000.000Z-9.jpg")
	if err := os.WriteFile(leftover, []byte("half"), 0o640); err != nil {
		t.Fatal(err)
	}

	w := newWriter(t, Config{Dir: dir, MaxFiles: 2})
	if st := w.Stats(); st.Files != 2 || st.Deleted != 1 || st.Bytes != 2*int64(len(oldSnapshot)) {
		t.Errorf("stats %+v, want 2 snapshots indexed, 1 deleted", st)
	}
	if _, err := os.Stat(filepath.Join(dir, old[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the oldest snapshot was kept: %v", err)
	}
	for _, p := range []string{filepath.Join(dir, old[1]), filepath.Join(dir, old[2]), other, target} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("a symlink named like a snapshot was removed: %v", err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a temporary file left by a crash was kept: %v", err)
	}
	// The next snapshot pushes out the oldest of the two.
	if _, err := w.Save("new", "", frames(t, 32, 32)["rgb24"], nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := os.Stat(filepath.Join(dir, old[1])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the oldest remaining snapshot was kept: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no directory"},
		{Config{Dir: file}, "not a directory"},
		{Config{Dir: t.TempDir(), MaxFiles: -1}, "max_files -1"},
		{Config{Dir: t.TempDir(), MaxBytes: -1}, "max_bytes -1"},
		{Config{Dir: t.TempDir(), Quality: 101}, "quality 101"},
		{Config{Dir: t.TempDir(), QueueBytes: -5}, "queue bytes -5"},
	}
	for _, c := range cases {
		w, err := New(c.cfg)
		if err == nil {
			w.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
}

// OnWritten hands each snapshot's bytes on once the file is on disk, from
// the writer's goroutine, so that MQTT need not encode it again.
func TestOnWrittenGetsTheFileBytes(t *testing.T) {
	type written struct {
		camera, region, path string
		jpeg                 []byte
	}
	got := make(chan written, 4)
	w := newWriter(t, Config{OnWritten: func(camera, region, path string, jpeg []byte) {
		got <- written{camera, region, path, append([]byte(nil), jpeg...)}
	}})
	f := frames(t, 64, 48)["rgb24"]
	path, err := w.Save("front", "gate", at(f, t0, 1), &frame.Box{X1: 0, Y1: 0, X2: 32, Y2: 32})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case g := <-got:
		disk, err := os.ReadFile(path)
		if err != nil || g.camera != "front" || g.region != "gate" || g.path != path || !bytes.Equal(g.jpeg, disk) {
			t.Fatalf("OnWritten(%q, %q, %q, %d bytes); file %d bytes, %v", g.camera, g.region, g.path, len(g.jpeg), len(disk), err)
		}
	default:
		t.Fatal("OnWritten was not called")
	}
}

// Thumbnails: at most maxSide on the longer side, the box's part of the
// frame, every format, and each pixel the mean of its square.
func TestThumbnail(t *testing.T) {
	w, h := 322, 181
	for name, f := range frames(t, w, h) {
		full := frameRGB(t, f)
		for _, tc := range []struct {
			box          *frame.Box
			wantW, wantH int
		}{
			{nil, 53, 30}, // factor 6: 322/64 rounded up
			{&frame.Box{X1: 10, Y1: 20, X2: 138, Y2: 84}, 64, 32}, // 128x64 → factor 2
			{&frame.Box{X1: 0, Y1: 0, X2: 40, Y2: 30}, 40, 30},    // small enough already
		} {
			jpg, err := Thumbnail(f, tc.box, 64, 90)
			if err != nil {
				t.Fatalf("%s %v: %v", name, tc.box, err)
			}
			img := decode(t, jpg)
			if img.Width != tc.wantW || img.Height != tc.wantH {
				t.Errorf("%s %v: %dx%d, want %dx%d", name, tc.box, img.Width, img.Height, tc.wantW, tc.wantH)
				continue
			}
			// Compare with the mean of the frame's pixels, computed here.
			b := frame.Full(w, h)
			if tc.box != nil {
				b = *tc.box
			}
			factor := (max(b.Dx(), b.Dy()) + 63) / 64
			want := make([]byte, img.Width*img.Height*3)
			for y := range img.Height {
				for x := range img.Width {
					for c := range 3 {
						sum := 0
						for dy := range factor {
							for dx := range factor {
								sum += int(full[((b.Y1+y*factor+dy)*w+b.X1+x*factor+dx)*3+c])
							}
						}
						want[(y*img.Width+x)*3+c] = byte((sum + factor*factor/2) / (factor * factor))
					}
				}
			}
			if p := psnr(img.Pix, want); p < 30 {
				t.Errorf("%s %v: thumbnail far from the averaged frame (PSNR %.1f dB)", name, tc.box, p)
			}
		}
	}
	if _, err := Thumbnail(frames(t, w, h)["rgb24"], &frame.Box{X1: 300, Y1: 0, X2: 400, Y2: 10}, 64, 90); err == nil {
		t.Error("a box outside the frame was accepted")
	}
}

// What a power cut can leave of a snapshot on a filesystem that does not
// order data before names (a 0-byte or partly written file under a valid
// name) is deleted when the directory is indexed, not counted and never
// served; real snapshots and other files stay.
func TestIndexDeletesSnapshotsThatHoldNoJPEG(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snapshots")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	jpg, err := Encode(frames(t, 32, 32)["rgb24"], nil, 80)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"a-20240101T000000.000Z-1.jpg": jpg,
		"a-20240101T000001.000Z-2.jpg": nil,                  // the name without the data
		"a-20240101T000002.000Z-3.jpg": make([]byte, 4096),   // blocks allocated, never written
		"a-20240101T000003.000Z-4.jpg": {0xff},               // cut inside the marker
		"notes.txt":                    []byte("not a JPEG"), // not ours
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncbuf.Buffer{}
	w := newWriter(t, Config{Dir: dir, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if st := w.Stats(); st.Files != 1 || st.Bytes != int64(len(jpg)) {
		t.Errorf("stats %+v, want the one JPEG indexed", st)
	}
	if got := snapshotFiles(t, dir); !slices.Equal(got, []string{"a-20240101T000000.000Z-1.jpg", "notes.txt"}) {
		t.Errorf("directory after indexing: %q", got)
	}
	if strings.Count(logs.String(), "holds no JPEG") != 3 {
		t.Errorf("log:\n%s", logs)
	}
	if data, err := w.Read("a-20240101T000000.000Z-1.jpg"); err != nil || !bytes.Equal(data, jpg) {
		t.Errorf("Read of the JPEG: %d bytes, %v", len(data), err)
	}
	// One that appears later (planted) is not served either.
	planted := "a-20240101T000009.000Z-9.jpg"
	if err := os.WriteFile(filepath.Join(dir, planted), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Read(planted); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read of an empty snapshot file: %v, want ErrNotFound", err)
	}
}

// A box thinner than the scale factor (a tall thin region at the frame's
// right edge, a wide flat one at its bottom) is averaged over the box
// alone: reading factor columns or rows from its edge would leave the
// frame, a panic in the goroutine that classifies.
func TestThumbnailThinBoxesAtEdges(t *testing.T) {
	w, h := 322, 181
	for name, f := range frames(t, w, h) {
		full := frameRGB(t, f)
		for _, tc := range []struct {
			box          frame.Box
			wantW, wantH int
		}{
			{frame.Box{X1: w - 1, Y1: 0, X2: w, Y2: h}, 1, 60},       // factor 3, 1 column wide
			{frame.Box{X1: w - 2, Y1: 0, X2: w, Y2: h}, 1, 60},       // 2 columns
			{frame.Box{X1: 0, Y1: h - 1, X2: w, Y2: h}, 53, 1},       // factor 6, 1 row high
			{frame.Box{X1: 0, Y1: h - 5, X2: w, Y2: h}, 53, 1},       // 5 rows
			{frame.Box{X1: w - 1, Y1: h - 1, X2: w, Y2: h}, 1, 1},    // the last pixel
			{frame.Box{X1: w - 3, Y1: h - 130, X2: w, Y2: h}, 1, 43}, // factor 3, 3 columns
		} {
			jpg, err := Thumbnail(f, &tc.box, 64, 95)
			if err != nil {
				t.Fatalf("%s %v: %v", name, tc.box, err)
			}
			img := decode(t, jpg)
			if img.Width != tc.wantW || img.Height != tc.wantH {
				t.Errorf("%s %v: %dx%d, want %dx%d", name, tc.box, img.Width, img.Height, tc.wantW, tc.wantH)
				continue
			}
			// Each output pixel is the mean of its cell of the box, the
			// cell cut to the box.
			b := tc.box
			factor := (max(b.Dx(), b.Dy()) + 63) / 64
			fx, fy := min(factor, b.Dx()), min(factor, b.Dy())
			want := make([]byte, img.Width*img.Height*3)
			for y := range img.Height {
				for x := range img.Width {
					for c := range 3 {
						sum := 0
						for dy := range fy {
							for dx := range fx {
								sum += int(full[((b.Y1+y*fy+dy)*w+b.X1+x*fx+dx)*3+c])
							}
						}
						want[(y*img.Width+x)*3+c] = byte((sum + fx*fy/2) / (fx * fy))
					}
				}
			}
			if p := psnr(img.Pix, want); p < 30 {
				t.Errorf("%s %v: thumbnail far from the box's averaged pixels (PSNR %.1f dB)", name, tc.box, p)
			}
		}
		if _, err := Thumbnail(f, &frame.Box{X1: w, Y1: 0, X2: w, Y2: h}, 64, 95); err == nil {
			t.Errorf("%s: an empty box at the edge was accepted", name)
		}
	}
}
