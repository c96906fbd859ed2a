package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/jpegturbo"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/preprocess"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/synth"
)

// The test backend is the daemon's side of the listener built from the
// real components: synthetic scenes encoded by libjpeg-turbo as the
// cameras' frames, real state trackers, a real snapshot.Writer, and a
// real history.Store filled with the demo model's embeddings of those
// scenes and their JPEG thumbnails. Only what ties them together (which
// the daemon does) is written here.

// The demo model is opened once for the package's tests.
var demo struct {
	once  sync.Once
	model *model.Model
	err   error
	// mu guards pre, which is not safe for concurrent use.
	mu  sync.Mutex
	pre *preprocess.Preprocessor
}

func demoModel(t testing.TB) *model.Model {
	t.Helper()
	root, _ := filepath.Abs("..")
	lib := os.Getenv("CLIPD_ONNXRUNTIME_LIB")
	if lib == "" {
		lib = filepath.Join(root, "build", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("ONNX Runtime library missing (make deps): %v", err)
	}
	demo.once.Do(func() {
		demo.model, demo.err = model.Open(filepath.Join(root, "models", "demo"), model.Options{
			Backend: engine.BackendONNXRuntime, ONNXRuntimeLib: lib, Threads: runtime.GOMAXPROCS(0)})
		if demo.err == nil {
			demo.pre = demo.model.NewPreprocessor()
		}
	})
	if demo.err != nil {
		t.Fatal(demo.err)
	}
	return demo.model
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demo.model != nil {
		demo.pre.Close()
		demo.model.Close()
	}
	os.Exit(code)
}

const demoModelHash = "demo-test"

// A scene run: seqs from first, one a second, of one colour's shapes.
type run struct {
	camera string
	color  string
	first  uint64
	n      int
	start  time.Time
}

// The drive camera has a region; yard has only its whole frame.
var (
	driveBox = frame.Box{X1: 160, Y1: 60, X2: 300, Y2: 220}
	// The scenes the history holds; searchTest checks episodes against
	// them. Runs are minutes apart, so each is one episode.
	testRuns = func() []run {
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		return []run{
			{"drive", "red", 1, 12, base},
			{"drive", "blue", 101, 12, base.Add(5 * time.Minute)},
			{"drive", "green", 201, 12, base.Add(10 * time.Minute)},
			{"yard", "yellow", 1, 12, base.Add(15 * time.Minute)},
		}
	}()
)

func scene(color string, seq uint64, w, h int) []byte {
	rgb, _ := synth.Render(seq*7919+uint64(len(color)), synth.Options{
		Width: w, Height: h, MinShapes: 1, MaxShapes: 1,
		Only: []synth.Pair{{Color: color, Kind: "circle"}, {Color: color, Kind: "square"}},
	})
	return rgb
}

func rgbFrame(rgb []byte, w, h int, seq uint64, at time.Time) *frame.Frame {
	return &frame.Frame{Format: frame.RGB24, Width: w, Height: h, Data: rgb, Seq: seq, Time: at}
}

type testBackend struct {
	t         testing.TB
	snapshots *snapshot.Writer
	store     *history.Store // nil: history off

	mu      sync.Mutex
	healthy bool
	reason  string
	frames  map[string][]byte
	cameras []Camera
	events  []state.Event
	// calls records what reached the backend, for the hostile-input tests.
	calls []string
	// thumbnailErr, when set, is what Thumbnail fails with.
	thumbnailErr error
	// searchHook, when set, runs inside Search (to hold a request).
	searchHook func(ctx context.Context)
	// searchErr, when set, is what Search fails with.
	searchErr error
}

// newTestBackend builds the cameras, their states and events (with real
// snapshots) and, with withHistory, the camera memory.
func newTestBackend(t testing.TB, withHistory bool) *testBackend {
	t.Helper()
	b := &testBackend{t: t, healthy: true, frames: map[string][]byte{}}
	var err error
	b.snapshots, err = snapshot.New(snapshot.Config{Dir: filepath.Join(t.TempDir(), "snapshots")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.snapshots.Close() })

	now := time.Now()
	sizes := map[string][2]int{"drive": {320, 240}, "yard": {224, 224}}
	for name, colour := range map[string]string{"drive": "red", "yard": "yellow"} {
		sz := sizes[name]
		jpg, err := snapshot.Encode(rgbFrame(scene(colour, 999, sz[0], sz[1]), sz[0], sz[1], 999, now), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.frames[name] = jpg
	}

	// States come from real trackers fed a few frames; their events get
	// snapshots written by the real writer.
	type target struct {
		camera, region string
		box            *frame.Box
		label          string
	}
	var states = map[string]state.Current{}
	for _, tg := range []target{
		{"drive", "", nil, "a red circle"},
		{"drive", "gate", &driveBox, "a blue square"},
		{"yard", "", nil, "a yellow square"},
	} {
		tr, err := state.NewTracker(tg.camera, tg.region, 0)
		if err != nil {
			t.Fatal(err)
		}
		at := now.Add(-90 * time.Second)
		for i := range 3 {
			ev, changed := tr.Observe(state.Observation{Time: at.Add(time.Duration(i) * time.Second), Label: tg.label, Score: 0.9, Threshold: 0.5, LabelsVersion: 1})
			if !changed {
				continue
			}
			sz := sizes[tg.camera]
			f := rgbFrame(scene("red", uint64(500+i), sz[0], sz[1]), sz[0], sz[1], uint64(500+i), ev.Time)
			if ev.Snapshot, err = b.snapshots.Save(tg.camera, tg.region, f, tg.box); err != nil {
				t.Fatal(err)
			}
			b.events = append([]state.Event{ev}, b.events...)
		}
		states[tg.camera+"/"+tg.region] = tr.Current()
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.snapshots.Stats().Written < uint64(len(b.events)) {
		if time.Now().After(deadline) {
			t.Fatalf("snapshots not written: %+v", b.snapshots.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.cameras = []Camera{
		{Name: "drive", Width: 320, Height: 240, Targets: []Target{
			{Region: "", State: states["drive/"]},
			{Region: "gate", Box: &driveBox, State: states["drive/gate"]},
		}},
		{Name: "yard", Width: 224, Height: 224, Targets: []Target{{Region: "", State: states["yard/"]}}},
	}
	if withHistory {
		b.fillHistory(t)
	}
	return b
}

// fillHistory stores the demo model's embedding of every scene of
// testRuns, with JPEG thumbnails as Wants asks for them.
func (b *testBackend) fillHistory(t testing.TB) {
	m := demoModel(t)
	store, err := history.Open(history.Config{Dir: filepath.Join(t.TempDir(), "history")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const side = 224
	for _, r := range testRuns {
		tensor := make([]float32, r.n*demo.pre.TensorLen())
		rgbs := make([][]byte, r.n)
		for i := range r.n {
			rgbs[i] = scene(r.color, r.first+uint64(i), side, side)
			if err := demo.pre.RGB(rgbs[i], side, side, side*3, tensor[i*demo.pre.TensorLen():(i+1)*demo.pre.TensorLen()]); err != nil {
				t.Fatal(err)
			}
		}
		embs, err := m.EncodeImages(tensor, r.n)
		if err != nil {
			t.Fatal(err)
		}
		tg := history.Target{Camera: r.camera}
		for i := range r.n {
			at := r.start.Add(time.Duration(i) * time.Second)
			rec := history.Record{Target: tg, Time: at, Seq: r.first + uint64(i), Model: demoModelHash,
				Embedding: embs[i], LabelsVersion: 1, TopLabel: "a " + r.color + " shape"}
			if store.Wants(tg, at, false).Thumbnail {
				if rec.Thumbnail, err = jpegturbo.Encode(jpegturbo.Image{Width: side, Height: side, Channels: 3, Pix: rgbs[i]}, 80, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := store.Add(rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := store.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := store.Status(); st.Records != 48 || st.Thumbnails == 0 {
		t.Fatalf("history holds %d records and %d thumbnails, want 48 and some", st.Records, st.Thumbnails)
	}
	b.store = store
}

func (b *testBackend) record(call string) {
	b.mu.Lock()
	b.calls = append(b.calls, call)
	b.mu.Unlock()
}

func (b *testBackend) recorded() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (b *testBackend) setHealth(ok bool, reason string) {
	b.mu.Lock()
	b.healthy, b.reason = ok, reason
	b.mu.Unlock()
}

func (b *testBackend) Status() server.Status {
	st := server.Status{Version: "v9.9.9-test", Backend: "onnxruntime", UptimeS: 3723,
		Cameras: []server.CameraStatus{{Name: "drive", FPS: 4.5, Captured: 100, Classified: 90}, {Name: "yard", FPS: 1, LastError: "source\nrestarted"}}}
	return st
}

func (b *testBackend) Health() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.healthy, b.reason
}

func (b *testBackend) Cameras() []Camera {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Camera(nil), b.cameras...)
}

func (b *testBackend) LatestFrame(camera string) ([]byte, time.Time, error) {
	b.record("frame " + camera)
	b.mu.Lock()
	defer b.mu.Unlock()
	jpg, ok := b.frames[camera]
	if !ok {
		return nil, time.Time{}, fmt.Errorf("camera %q: %w", camera, ErrNotFound)
	}
	return jpg, time.Now(), nil
}

func (b *testBackend) Events(n int) []state.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]state.Event(nil), b.events[:min(n, len(b.events))]...)
}

func (b *testBackend) Search(ctx context.Context, req server.SearchRequest) (*history.Result, error) {
	b.record("search")
	if b.searchHook != nil {
		b.searchHook(ctx)
	}
	if b.searchErr != nil {
		return nil, b.searchErr
	}
	if b.store == nil {
		return nil, fmt.Errorf("%w: history is off ([history] enabled = false)", ErrUnavailable)
	}
	q, err := req.Query(time.Now())
	if err != nil {
		return nil, err
	}
	q.Model = demoModelHash
	m := demo.model
	switch {
	case req.Text != "":
		embs, err := m.EncodePrompts(ctx, []string{req.Text})
		if err != nil {
			return nil, err
		}
		q.Embedding = embs[0]
	case req.ImageB64 != "":
		data, err := base64.StdEncoding.DecodeString(req.ImageB64)
		if err != nil {
			return nil, fmt.Errorf("%w: image_b64 is not base64", server.ErrBadSearch)
		}
		tensor := make([]float32, demo.pre.TensorLen())
		demo.mu.Lock()
		err = demo.pre.Image(data, tensor)
		demo.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%w: image_b64: %v", server.ErrBadSearch, err)
		}
		embs, err := m.EncodeImages(tensor, 1)
		if err != nil {
			return nil, err
		}
		q.Embedding = embs[0]
	default:
		return nil, fmt.Errorf("%w: the test backend searches text and images only", server.ErrBadSearch)
	}
	return b.store.Search(ctx, q)
}

func (b *testBackend) Thumbnail(ctx context.Context, id int64) ([]byte, error) {
	b.record(fmt.Sprintf("thumbnail %d", id))
	if b.thumbnailErr != nil {
		return nil, b.thumbnailErr
	}
	if b.store == nil {
		return nil, ErrNotFound
	}
	jpg, _, ok, err := b.store.Thumbnail(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return jpg, nil
}

func (b *testBackend) Snapshot(name string) ([]byte, error) {
	b.record("snapshot " + name)
	return b.snapshots.Read(name)
}

// runOf returns the run a result's camera and seq belong to.
func runOf(camera string, seq uint64) (run, error) {
	for _, r := range testRuns {
		if r.camera == camera && seq >= r.first && seq < r.first+uint64(r.n) {
			return r, nil
		}
	}
	return run{}, errors.New("no run")
}
