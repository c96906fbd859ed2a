package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/testimage"
)

// fakeStep is one scripted event of a fake camera session.
type fakeStep struct {
	waitErr error  // returned by WaitForFrame
	getErr  error  // returned by GetFrame
	data    []byte // the frame GetFrame hands out
}

func frameStep(data []byte) fakeStep { return fakeStep{data: data} }
func timeoutStep() fakeStep          { return fakeStep{waitErr: &webcam.Timeout{}} }
func eagainStep() fakeStep           { return fakeStep{getErr: unix.EAGAIN} }

// fakeCamera plays one script per successful open, like a camera that
// is unplugged and plugged back in between sessions. It models the
// driver's buffer ring: a released buffer is immediately overwritten, so
// a source that keeps the driver's bytes instead of copying them fails.
type fakeCamera struct {
	t *testing.T

	mu       sync.Mutex
	formats  map[webcam.PixelFormat]string
	sessions [][]fakeStep
	// openErrs is consumed one per open attempt before a session is used;
	// a nil entry lets the open succeed.
	openErrs []error
	// driver picks the format the driver "chooses" for a request.
	driver func(fourcc, w, h uint32) driverFormat
	// setErr fails SetImageFormat for these fourccs.
	setErr map[uint32]error
	fpsErr error
	// handedOut has the first byte of every frame GetFrame returned.
	handedOut []byte
	opens     int // successful opens
	tries     int // open attempts
	closes    int
	current   *fakeDevice
}

func newFakeCamera(t *testing.T, formats ...uint32) *fakeCamera {
	c := &fakeCamera{t: t, formats: map[webcam.PixelFormat]string{}, setErr: map[uint32]error{}}
	for _, f := range formats {
		c.formats[webcam.PixelFormat(f)] = "fake " + fourccString(f)
	}
	c.driver = func(fourcc, w, h uint32) driverFormat {
		return driverFormat{FourCC: fourcc, Width: w, Height: h}
	}
	return c
}

func (c *fakeCamera) open(path string) (device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tries++
	if len(c.openErrs) > 0 {
		err := c.openErrs[0]
		c.openErrs = c.openErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	if len(c.sessions) == 0 {
		return nil, unix.ENOENT
	}
	d := &fakeDevice{cam: c, session: c.opens, script: c.sessions[0]}
	for i := range d.buffers {
		d.buffers[i] = make([]byte, 1<<20)
	}
	c.sessions = c.sessions[1:]
	c.opens++
	c.current = d
	return d, nil
}

func (c *fakeCamera) counts() (tries, opens, closes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries, c.opens, c.closes
}

type fakeDevice struct {
	cam       *fakeCamera
	session   int
	script    []fakeStep
	buffers   [4][]byte
	next      uint32
	queued    [4]bool // true while the source holds the buffer
	streaming bool
	format    driverFormat
}

func (d *fakeDevice) SupportedFormats() map[webcam.PixelFormat]string { return d.cam.formats }

func (d *fakeDevice) SetImageFormat(fourcc, w, h uint32) error {
	if err := d.cam.setErr[fourcc]; err != nil {
		return err
	}
	d.format = d.cam.driver(fourcc, w, h)
	return nil
}

func (d *fakeDevice) ActualFormat() (driverFormat, error) { return d.format, nil }
func (d *fakeDevice) SetFramerate(float32) error          { return d.cam.fpsErr }

func (d *fakeDevice) StartStreaming() error {
	d.streaming = true
	return nil
}

func (d *fakeDevice) WaitForFrame(time.Duration) error {
	if !d.streaming {
		d.cam.t.Errorf("WaitForFrame before StartStreaming")
	}
	if len(d.script) == 0 {
		return unix.ENODEV // the script is over: the camera is unplugged
	}
	if err := d.script[0].waitErr; err != nil {
		d.script = d.script[1:]
		return err
	}
	return nil
}

func (d *fakeDevice) GetFrame() ([]byte, uint32, error) {
	step := d.script[0]
	d.script = d.script[1:]
	if step.getErr != nil {
		return nil, 0, step.getErr
	}
	i := d.next % uint32(len(d.buffers))
	d.next++
	if d.queued[i] {
		d.cam.t.Errorf("buffer %d handed out twice without ReleaseFrame", i)
	}
	d.queued[i] = true
	if len(step.data) > 0 {
		d.cam.mu.Lock()
		d.cam.handedOut = append(d.cam.handedOut, step.data[0])
		d.cam.mu.Unlock()
	}
	n := copy(d.buffers[i], step.data)
	return d.buffers[i][:n], i, nil
}

func (d *fakeDevice) ReleaseFrame(i uint32) error {
	if !d.queued[i] {
		d.cam.t.Errorf("ReleaseFrame(%d) of a buffer not handed out", i)
	}
	d.queued[i] = false
	// The driver fills the buffer again at once.
	for j := range d.buffers[i] {
		d.buffers[i][j] = 0xEE
	}
	return nil
}

func (d *fakeDevice) Close() error {
	for i, q := range d.queued {
		if q {
			d.cam.t.Errorf("device closed while buffer %d was still held", i)
		}
	}
	d.cam.mu.Lock()
	d.cam.closes++
	d.cam.mu.Unlock()
	return nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fastRetry makes reopen attempts quick so tests do not wait on backoff.
func fastRetry(cfg Config) Config {
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	return cfg
}

func openFake(t *testing.T, cam *fakeCamera, cfg Config) *v4l2Source {
	t.Helper()
	cfg.Source = "/dev/v4l/by-id/usb-fake-video-index0"
	cfg, err := fastRetry(cfg).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newV4L2Source(cfg, testLogger(t), cam.open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// yuyvFrame is a 4x2 YUYV frame whose bytes all equal tag, so a frame can
// be traced back to the step that produced it.
func yuyvFrame(tag byte) []byte { return bytes.Repeat([]byte{tag}, 4*2*2) }

// nextFrames takes frames until one with seq >= lastSeq arrives.
func nextFrames(t *testing.T, s Source, lastSeq uint64) []*frame.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*frame.Frame
	for {
		f, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d frames: %v (stats %+v)", len(got), err, s.Stats())
		}
		got = append(got, f)
		if f.Seq >= lastSeq {
			return got
		}
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestV4L2FramesAreCopiedOutInOrder(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.sessions = [][]fakeStep{{frameStep(yuyvFrame(1)), frameStep(yuyvFrame(2)), frameStep(yuyvFrame(3))}}
	s := openFake(t, cam, Config{Width: 4, Height: 2})
	got := nextFrames(t, s, 3)
	prev := uint64(0)
	for _, f := range got {
		if f.Seq <= prev {
			t.Errorf("seq %d after %d", f.Seq, prev)
		}
		prev = f.Seq
		want := yuyvFrame(byte(f.Seq))
		if !bytes.Equal(f.Data, want) {
			t.Errorf("frame %d data %v, want %v (driver buffer not copied before release?)", f.Seq, f.Data, want)
		}
		if f.Format != frame.YUYV || f.Width != 4 || f.Height != 2 || f.RowStride() != 8 {
			t.Errorf("frame %d is %v %dx%d stride %d, want yuyv 4x2 stride 8", f.Seq, f.Format, f.Width, f.Height, f.RowStride())
		}
		if f.Time.IsZero() {
			t.Errorf("frame %d has no capture time", f.Seq)
		}
	}
	st := s.Stats()
	if st.Captured != 3 || st.Captured != uint64(len(got))+st.Dropped {
		t.Errorf("stats %+v: want 3 captured = %d delivered + dropped", st, len(got))
	}
	if st.Format != frame.YUYV || st.Width != 4 || st.Height != 2 {
		t.Errorf("stats format %v %dx%d, want yuyv 4x2", st.Format, st.Width, st.Height)
	}
}

func TestV4L2SingleTimeoutsAndEAGAINDoNotReopen(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.sessions = [][]fakeStep{{
		frameStep(yuyvFrame(1)), timeoutStep(), eagainStep(), timeoutStep(), eagainStep(), frameStep(yuyvFrame(2)),
		timeoutStep(), timeoutStep(), frameStep(yuyvFrame(3)),
	}}
	// Three waits in a row without a frame mean a stall; two do not.
	s := openFake(t, cam, Config{Width: 4, Height: 2, StallTimeout: 3 * time.Second})
	got := nextFrames(t, s, 3)
	if last := got[len(got)-1]; !bytes.Equal(last.Data, yuyvFrame(3)) {
		t.Errorf("last frame data %v, want the third scripted frame", last.Data)
	}
	// All three frames came from the first open; the reopen attempts that
	// follow the end of the script are the only others.
	st := s.Stats()
	if st.Captured != 3 || st.Corrupt != 0 {
		t.Errorf("stats %+v: want 3 captured, none corrupt", st)
	}
	if _, opens, _ := cam.counts(); opens != 1 {
		t.Errorf("camera opened %d times, want 1", opens)
	}
}

func TestV4L2RepeatedTimeoutsReopen(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.sessions = [][]fakeStep{
		{frameStep(yuyvFrame(1)), timeoutStep(), timeoutStep(), timeoutStep(), frameStep(yuyvFrame(99))},
		// A long healthy second session, so LastError still tells why
		// the first one ended when the test looks.
		append([]fakeStep{frameStep(yuyvFrame(2))}, slices.Repeat([]fakeStep{timeoutStep(), frameStep(yuyvFrame(3))}, 10000)...),
	}
	s := openFake(t, cam, Config{Width: 4, Height: 2, StallTimeout: 3 * time.Second})
	nextFrames(t, s, 2)
	cam.mu.Lock()
	handedOut := slices.Clone(cam.handedOut)
	cam.mu.Unlock()
	if len(handedOut) < 2 || handedOut[0] != 1 || handedOut[1] != 2 {
		t.Errorf("frames dequeued %v, want 1 then 2: the stalled session must be abandoned before its late frame 99", handedOut)
	}
	st := s.Stats()
	if st.Restarts < 1 || !strings.Contains(st.LastError, "no frame") {
		t.Errorf("stats %+v: want a restart with a 'no frame' error", st)
	}
}

func TestV4L2DeviceLossReopensWithBackoff(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.sessions = [][]fakeStep{
		{frameStep(yuyvFrame(1)), {getErr: unix.ENODEV}},
		{frameStep(yuyvFrame(2))},
	}
	// After the loss the device is missing for three attempts.
	cam.openErrs = []error{nil, unix.ENOENT, unix.ENOENT, unix.ENOENT}
	s := openFake(t, cam, Config{Width: 4, Height: 2})
	got := nextFrames(t, s, 2)
	if last := got[len(got)-1]; last.Seq != 2 || !bytes.Equal(last.Data, yuyvFrame(2)) {
		t.Errorf("got seq %d data %v after reopen, want seq 2 (sequence continues) from the new session", last.Seq, last.Data)
	}
	tries, opens, _ := cam.counts()
	if opens != 2 || tries < 5 {
		t.Errorf("%d open attempts, %d successful; want at least 5 and 2", tries, opens)
	}
	if st := s.Stats(); st.Restarts < 4 {
		t.Errorf("stats %+v: want at least 4 restarts", st)
	}
	s.Close()
	if tries, opens, closes := cam.counts(); closes != opens {
		t.Errorf("%d devices opened but %d closed (%d attempts)", opens, closes, tries)
	}
}

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	b := newBackoff(250*time.Millisecond, 10*time.Second)
	var got []time.Duration
	for range 8 {
		got = append(got, b.delay())
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	b.reset()
	if d := b.delay(); d != 250*time.Millisecond {
		t.Errorf("after reset delay %v, want 250ms", d)
	}
}

// testJPEG encodes a small image with Go's encoder (which writes full
// Huffman tables and an EOI).
func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 5), 90, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withoutDHT removes the Huffman tables and the EOI, as UVC cameras send
// MJPEG.
func withoutDHT(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := testimage.WebcamMJPEG(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckMJPEG(t *testing.T) {
	good := testJPEG(t, 48, 32)
	sos := bytes.Index(good, []byte{0xFF, 0xDA})
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"complete", good, ""},
		{"no Huffman tables", withoutDHT(t, good), ""},
		{"no EOI", good[:len(good)-2], ""},
		{"empty", nil, "no SOI"},
		{"garbage", bytes.Repeat([]byte{0x12, 0x34}, 100), "no SOI"},
		{"cut in the headers", good[:sos-10], "runs past"},
		{"cut right after the scan header", good[:sos+14], "truncated"},
		{"EOI before scan", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xD9}, "EOI before any scan"},
		{"scan without SOF", []byte{0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x11, 0x22, 0x33}, "without a frame header"},
		{"zero length segment", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00, 0xFF, 0xD9}, "segment length 0"},
	}
	for _, c := range cases {
		w, h, err := checkMJPEG(c.data)
		if c.wantErr == "" {
			if err != nil || w != 48 || h != 32 {
				t.Errorf("%s: got %dx%d, %v; want 48x32, no error", c.name, w, h, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
}

func TestV4L2CorruptMJPEGIsDroppedAndCounted(t *testing.T) {
	good := testJPEG(t, 1280, 720)
	sos := bytes.Index(good, []byte{0xFF, 0xDA})
	cam := newFakeCamera(t, fourccMJPEG, fourccYUYV)
	cam.sessions = [][]fakeStep{{
		frameStep(withoutDHT(t, good)),
		frameStep(good[:sos-4]),                  // truncated in the headers
		frameStep(bytes.Repeat([]byte{0}, 5000)), // a zeroed buffer
		frameStep(good[:len(good)-2]),            // missing EOI: kept
		frameStep(good[:3]),                      // a few bytes only
		frameStep(good),
	}}
	s := openFake(t, cam, Config{Width: 1280, Height: 720})
	got := nextFrames(t, s, 3)
	for _, f := range got {
		if f.Format != frame.MJPEG || f.Width != 1280 || f.Height != 720 {
			t.Errorf("frame %d: %v %dx%d, want mjpeg 1280x720", f.Seq, f.Format, f.Width, f.Height)
		}
	}
	if last := got[len(got)-1]; !bytes.Equal(last.Data, good) {
		t.Errorf("third good frame is not the complete JPEG (%d bytes, want %d)", len(last.Data), len(good))
	}
	waitFor(t, "corrupt count", func() bool { return s.Stats().Corrupt == 3 })
	if st := s.Stats(); st.Captured != 3 {
		t.Errorf("stats %+v: want 3 captured, 3 corrupt", st)
	}
}

func TestV4L2ShortRawFrameIsCorrupt(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.sessions = [][]fakeStep{{frameStep(yuyvFrame(1)[:10]), frameStep(yuyvFrame(2))}}
	s := openFake(t, cam, Config{Width: 4, Height: 2})
	got := nextFrames(t, s, 1)
	if f := got[0]; f.Seq != 1 || !bytes.Equal(f.Data, yuyvFrame(2)) {
		t.Errorf("first delivered frame seq %d data %v, want the full second frame as seq 1", f.Seq, f.Data)
	}
	if st := s.Stats(); st.Corrupt != 1 {
		t.Errorf("stats %+v: want 1 corrupt", st)
	}
}

func TestV4L2Negotiation(t *testing.T) {
	padded := func(fourcc, w, h uint32) driverFormat {
		return driverFormat{FourCC: fourcc, Width: w, Height: h, BytesPerLine: w*2 + 64}
	}
	cases := []struct {
		name       string
		offered    []uint32
		format     frame.Format
		w, h       int
		driver     func(fourcc, w, h uint32) driverFormat
		setErr     map[uint32]error
		want       frame.Format
		wantW      int
		wantH      int
		wantStride int
		wantErr    string
	}{
		{name: "auto HD prefers MJPEG", offered: []uint32{fourccYUYV, fourccMJPEG}, w: 1280, h: 720, want: frame.MJPEG, wantW: 1280, wantH: 720},
		{name: "auto VGA prefers YUYV", offered: []uint32{fourccYUYV, fourccMJPEG}, w: 640, h: 480, want: frame.YUYV, wantW: 640, wantH: 480},
		{name: "auto default size is VGA", offered: []uint32{fourccYUYV, fourccMJPEG}, want: frame.YUYV, wantW: 640, wantH: 480},
		{name: "auto takes NV12 where offered", offered: []uint32{fourccYUYV, fourccMJPEG, fourccNV12}, w: 1920, h: 1080, want: frame.NV12, wantW: 1920, wantH: 1080},
		{name: "auto VGA falls back to MJPEG", offered: []uint32{fourccMJPEG}, w: 640, h: 480, want: frame.MJPEG, wantW: 640, wantH: 480},
		{name: "JPEG fourcc is MJPEG", offered: []uint32{fourccJPEG}, w: 1280, h: 720, want: frame.MJPEG, wantW: 1280, wantH: 720},
		{name: "auto HD falls back to YUYV", offered: []uint32{fourccYUYV}, w: 1280, h: 720, want: frame.YUYV, wantW: 1280, wantH: 720},
		{name: "explicit YUYV at HD", offered: []uint32{fourccYUYV, fourccMJPEG}, format: frame.YUYV, w: 1280, h: 720, want: frame.YUYV, wantW: 1280, wantH: 720},
		{
			name: "driver size is read back", offered: []uint32{fourccYUYV}, w: 1000, h: 700, want: frame.YUYV, wantW: 800, wantH: 600,
			driver: func(fourcc, w, h uint32) driverFormat { return driverFormat{FourCC: fourcc, Width: 800, Height: 600} },
		},
		{name: "padded rows give a stride", offered: []uint32{fourccYUYV}, w: 640, h: 480, driver: padded, want: frame.YUYV, wantW: 640, wantH: 480, wantStride: 640*2 + 64},
		{
			name: "MJPEG busy falls back", offered: []uint32{fourccYUYV, fourccMJPEG}, w: 1280, h: 720, want: frame.YUYV, wantW: 1280, wantH: 720,
			setErr: map[uint32]error{fourccMJPEG: unix.EBUSY},
		},
		{
			name: "auto accepts a substituted format", offered: []uint32{fourccYUYV, fourccNV12}, w: 640, h: 480, want: frame.YUYV, wantW: 640, wantH: 480,
			driver: func(fourcc, w, h uint32) driverFormat { return driverFormat{FourCC: fourccYUYV, Width: w, Height: h} },
		},
		{
			name: "explicit format substituted is an error", offered: []uint32{fourccYUYV, fourccNV12}, format: frame.NV12, w: 640, h: 480,
			driver:  func(fourcc, w, h uint32) driverFormat { return driverFormat{FourCC: fourccYUYV, Width: w, Height: h} },
			wantErr: "NV12: driver chose YUYV instead",
		},
		{name: "explicit format not offered", offered: []uint32{fourccMJPEG}, format: frame.YUYV, w: 640, h: 480, wantErr: "device offers [MJPG (fake MJPG)]"},
		{name: "nothing usable", offered: []uint32{'G' | 'R'<<8 | 'E'<<16 | 'Y'<<24}, w: 640, h: 480, wantErr: "no usable format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cam := newFakeCamera(t, c.offered...)
			if c.driver != nil {
				cam.driver = c.driver
			}
			if c.setErr != nil {
				cam.setErr = c.setErr
			}
			cam.sessions = [][]fakeStep{nil}
			dev, err := cam.open("/dev/video0")
			if err != nil {
				t.Fatal(err)
			}
			n, err := negotiate(dev, Config{Format: c.format, Width: c.w, Height: c.h})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.format != c.want || n.width != c.wantW || n.height != c.wantH || n.stride != c.wantStride {
				t.Errorf("negotiated %v %dx%d stride %d, want %v %dx%d stride %d", n.format, n.width, n.height, n.stride, c.want, c.wantW, c.wantH, c.wantStride)
			}
		})
	}
}

func TestV4L2UnsupportedFPSStillStreams(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	cam.fpsErr = unix.EINVAL
	cam.sessions = [][]fakeStep{{frameStep(yuyvFrame(1))}}
	s := openFake(t, cam, Config{Width: 4, Height: 2, FPS: 30})
	if got := nextFrames(t, s, 1); !bytes.Equal(got[0].Data, yuyvFrame(1)) {
		t.Errorf("frame data %v", got[0].Data)
	}
}

func TestV4L2CloseEndsNextAndClosesDevice(t *testing.T) {
	cam := newFakeCamera(t, fourccYUYV)
	var script []fakeStep
	for range 1000 {
		script = append(script, timeoutStep(), frameStep(yuyvFrame(7)))
	}
	cam.sessions = [][]fakeStep{script}
	s := openFake(t, cam, Config{Width: 4, Height: 2})
	nextFrames(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
	if _, opens, closes := cam.counts(); opens != closes {
		t.Errorf("%d opens, %d closes", opens, closes)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "source: must not be empty"},
		{Config{Source: "pattern", Width: 640}, "width: give width and height together"},
		{Config{Source: "pattern", Width: 641, Height: 480}, "must be even"},
		{Config{Source: "pattern", FPS: -1}, "fps"},
		{Config{Source: "pattern", FPS: 1 << 40}, "fps"},
		{Config{Source: "pattern", Width: 1 << 20, Height: 2}, "exceeds"},
		{Config{Source: "pattern", Format: frame.Format(42)}, "format"},
		{Config{Source: "pattern", RetryMin: time.Second, RetryMax: time.Millisecond}, "retry_max"},
		{Config{Source: "pattern?hold=0"}, "hold="},
		{Config{Source: "pattern?seed=x"}, "seed="},
		{Config{Source: "pattern?speed=2"}, `unknown parameter "speed"`},
		{Config{Source: "pattern", Format: frame.YUYV}, "format: pattern sources deliver rgb24 only, not yuyv"},
		{Config{Source: t.TempDir() + "/missing.mp4"}, "no such file"},
		{Config{Source: "clip.mp4", FFmpegPath: "/nonexistent/ffmpeg"}, "ffmpeg"},
		{Config{Source: "rtsp://x/y", Format: frame.Format(42)}, "format"},
		{Config{Source: "gst:videotestsrc", Format: frame.MJPEG, Width: 64, Height: 48}, "nv12, yuyv or rgb24"},
		{Config{Source: "gst:videotestsrc"}, "width: a GStreamer source needs width and height"},
		{Config{Source: "gst: ", Width: 64, Height: 48}, "empty"},
		{Config{Source: "gst:videotestsrc", Width: 64, Height: 48, GStreamerPath: "/nonexistent/gst-launch-1.0"}, "gstreamer1.0-tools"},
	}
	for _, c := range cases {
		s, err := Open(c.cfg, testLogger(t))
		if err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded, want error containing %q", c.cfg, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%+v): %v, want error containing %q", c.cfg, err, c.want)
		}
	}
}
