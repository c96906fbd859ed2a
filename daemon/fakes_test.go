package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/bundle"
	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/syncbuf"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/server"
)

// These tests run the daemon in-process with scripted sources and a
// scripted encoder behind the real demo bundle (its tokenizer and
// preprocessing), the real labels watcher, the real socket and the real
// config loader, so that reload, restart and failure paths are fast to
// exercise. The end-to-end tests in cmd/clipd run the real binary on the
// real encoder.

// guard bounds waits that only a bug would exceed.
const guard = 15 * time.Second

// fakeSource delivers a 64x64 RGB frame every few milliseconds, except
// while its source string is down (sources.setDown), when it delivers
// nothing and reports the failure in Stats, as a source being reopened
// does, or once ended (sources.end), when it reports io.EOF.
type fakeSource struct {
	cfg    capture.Config
	owner  *sources
	closed chan struct{}
	once   sync.Once
	seq    atomic.Uint64
	// scene, when set, is the picture shown (the same every frame, so the
	// same label); otherwise every frame differs.
	scene *atomic.Int64
}

func (s *fakeSource) Next(ctx context.Context) (*frame.Frame, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, capture.ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
		down, ended := s.owner.condition(s.cfg.Source)
		if ended {
			return nil, io.EOF
		}
		if down.err == "" {
			break
		}
	}
	n := s.seq.Add(1)
	data := make([]byte, 64*64*3)
	pattern := n
	if s.scene != nil {
		pattern = uint64(s.scene.Load())
	}
	for i := range data {
		data[i] = byte(pattern + uint64(i%7))
	}
	return &frame.Frame{Format: frame.RGB24, Width: 64, Height: 64, Data: data, Seq: n, Time: time.Now()}, nil
}

func (s *fakeSource) Stats() capture.Stats {
	st := capture.Stats{Captured: s.seq.Load(), Format: frame.RGB24, Width: 64, Height: 64}
	s.owner.mu.Lock()
	defer s.owner.mu.Unlock()
	if f := s.owner.lastFailure[s.cfg.Source]; f.err != "" {
		st.LastError, st.LastErrorTime = f.err, f.at
	}
	return st
}

func (s *fakeSource) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// sources opens fakeSources and remembers them; an entry in fail makes
// opening that source string fail.
type sources struct {
	mu     sync.Mutex
	opened []*fakeSource
	fail   map[string]error
	// scene, when set, makes every source show that fixed picture.
	scene *atomic.Int64
	// down and lastFailure are by source string; ended lists sources that
	// have played to their end.
	down, lastFailure map[string]failure
	ended             map[string]bool
}

type failure struct {
	err string
	at  time.Time
}

// setDown makes the sources of source deliver nothing and report err; ""
// brings them back.
func (s *sources) setDown(source, err string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down == nil {
		s.down, s.lastFailure = map[string]failure{}, map[string]failure{}
	}
	s.down[source] = failure{err, time.Now()}
	if err != "" {
		s.lastFailure[source] = failure{err, time.Now()}
	}
}

// end makes the sources of source end, as a file does.
func (s *sources) end(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		s.ended = map[string]bool{}
	}
	s.ended[source] = true
}

func (s *sources) condition(source string) (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down[source], s.ended[source]
}

func (s *sources) open(cfg capture.Config, _ *slog.Logger) (capture.Source, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail[cfg.Source]; err != nil {
		return nil, err
	}
	src := &fakeSource{cfg: cfg, owner: s, closed: make(chan struct{}), scene: s.scene}
	s.opened = append(s.opened, src)
	return src, nil
}

func (s *sources) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.opened)
}

func (s *sources) setFail(source string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail = map[string]error{}
	}
	s.fail[source] = err
}

// fakeEncoder gives deterministic unit-ish vectors: images by their mean
// pixel, prompts by their tokens. nan makes image embeddings NaN, nanLast
// only the last of each call; textDelay makes every text batch take that
// long, like a CPU encoding a large label set.
type fakeEncoder struct {
	size, dim int
	nan       atomic.Bool
	nanLast   atomic.Bool
	textDelay atomic.Int64
	textCalls atomic.Int64
	// textFails makes text calls fail, as an encoder can for a while.
	textFails atomic.Bool
	// While holding, image calls wait until hold is closed; imageCalls
	// counts the calls begun.
	holding    atomic.Bool
	hold       chan struct{}
	imageCalls atomic.Int64
}

func (e *fakeEncoder) ImageSize() int  { return e.size }
func (e *fakeEncoder) EmbedDim() int   { return e.dim }
func (e *fakeEncoder) Backend() string { return "fake" }
func (e *fakeEncoder) Close() error    { return nil }

func (e *fakeEncoder) EncodeImages(pixels []float32, n int) ([][]float32, error) {
	e.imageCalls.Add(1)
	if e.holding.Load() {
		<-e.hold
	}
	per := len(pixels) / n
	out := make([][]float32, n)
	for i := range out {
		var sum float64
		for _, v := range pixels[i*per : (i+1)*per] {
			sum += float64(v)
		}
		out[i] = vector(uint64(math.Float64bits(sum)), e.dim)
		if e.nan.Load() || (e.nanLast.Load() && i == n-1) {
			out[i][0] = float32(math.NaN())
		}
	}
	return out, nil
}

func (e *fakeEncoder) EncodeTexts(tokens [][]int32) ([][]float32, error) {
	e.textCalls.Add(1)
	time.Sleep(time.Duration(e.textDelay.Load()))
	if e.textFails.Load() {
		return nil, errors.New("text encoder out of memory")
	}
	out := make([][]float32, len(tokens))
	for i, t := range tokens {
		h := fnv.New64a()
		fmt.Fprint(h, t)
		out[i] = vector(h.Sum64(), e.dim)
	}
	return out, nil
}

func vector(seed uint64, dim int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// harness is one daemon run in-process.
type harness struct {
	t *testing.T
	// openSource opens the cameras' sources: the fake ones unless tune
	// sets another (capture.Open).
	openSource func(capture.Config, *slog.Logger) (capture.Source, error)
	// logs has the daemon's log.
	logs *syncbuf.Buffer
	// logLevel, when tune sets it, is the log's level and the daemon's
	// Options.LogLevel; otherwise the log is at debug, fixed.
	logLevel *slog.LevelVar
	// mqttRefresh is Options.MQTTStateRefresh.
	mqttRefresh time.Duration
	// modelKeys are more [model] keys (TOML lines); starved is
	// Options.Starved.
	modelKeys string
	starved   func(wall, cpu time.Duration) bool
	dir       string
	conf      string
	socket    string
	sources   *sources
	enc       *fakeEncoder
	reload    chan struct{}
	cancel    context.CancelFunc
	done      chan error
	stopped   bool
}

func demoBundle(t *testing.T) string {
	return filepath.Join(testmodel.RepoRoot(t), "models", "demo")
}

// cameraTOML is one camera table on the pattern source (which the fake
// sources stand in for).
func cameraTOML(name, source, labels, extra string) string {
	return fmt.Sprintf("[[camera]]\nname = %q\nsource = %q\nlabels = %q\nclassify_every = 0\n%s\n", name, source, labels, extra)
}

// newHarness starts a daemon on cameras (TOML; "" is one camera "front"
// with labels a.labels) after tune has prepared the directory.
func newHarness(t *testing.T, cameras string, tune func(*harness)) *harness {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "cdd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	h := &harness{t: t, dir: t.TempDir(), socket: filepath.Join(sockDir, "s.sock"), sources: &sources{},
		enc: &fakeEncoder{size: 64, dim: 64}, reload: make(chan struct{}, 1), done: make(chan error, 1), logs: &syncbuf.Buffer{}}
	h.openSource = h.sources.open
	h.conf = filepath.Join(h.dir, "clipd.toml")
	if tune != nil {
		tune(h)
	}
	if cameras == "" {
		cameras = cameraTOML("front", "pattern", "a.labels", "")
	}
	h.writeConfig(cameras)
	cfg, err := config.Load(h.conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	var level slog.Leveler = slog.LevelDebug
	if h.logLevel != nil {
		level = h.logLevel
	}
	logTo := io.MultiWriter(newTestWriter(t), h.logs)
	go func() {
		h.done <- Run(ctx, Options{
			ConfigPath: h.conf, Config: cfg, Version: "test", Reload: h.reload, StopTimeout: 3 * time.Second,
			Log:              slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level})),
			LogLevel:         h.logLevel,
			MQTTStateRefresh: h.mqttRefresh,
			Starved:          h.starved,
			OpenSource:       h.openSource,
			OpenEncoder:      func(*bundle.Bundle) (engine.Encoder, error) { return h.enc, nil },
		})
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

// testWriter sends the daemon's log to the test's, shown on failure.
// A shutdown abandoned at its deadline (TestFailedStartStopsWithinTheStopTimeout)
// goes on logging after the test has ended, when t.Log would panic: those
// lines are dropped here (h.logs still has them).
type testWriter struct {
	t     *testing.T
	state *testWriterState
}

type testWriterState struct {
	mu    sync.Mutex
	ended bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t, &testWriterState{}}
	t.Cleanup(func() {
		w.state.mu.Lock()
		w.state.ended = true
		w.state.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.state.mu.Lock()
	defer w.state.mu.Unlock()
	if !w.state.ended {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

func (h *harness) writeConfig(cameras string) {
	h.t.Helper()
	doc := fmt.Sprintf("[model]\nbundle = %q\nstate_dir = %q\n%s\n[socket]\npath = %q\n%s",
		demoBundle(h.t), filepath.Join(h.dir, "state"), h.modelKeys, h.socket, cameras)
	writeFile(h.t, h.conf, doc)
}

func (h *harness) hup() { h.reload <- struct{}{} }

// waitLogCount waits until the log has n lines containing s.
func (h *harness) waitLogCount(s string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(guard)
	for strings.Count(h.logs.String(), s) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("the log never had %d lines with %s:\n%s", n, s, h.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the daemon's context and returns how long Run took to
// return; it fails the test if Run returned an error or outlived guard.
func (h *harness) stop() time.Duration {
	if h.stopped {
		return 0
	}
	h.stopped = true
	start := time.Now()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(guard):
		h.t.Fatal("Run did not return after its context ended")
	}
	return time.Since(start)
}

// dial connects once the socket serves.
func (h *harness) dial() *server.Client {
	h.t.Helper()
	deadline := time.Now().Add(guard)
	for {
		c, err := server.Dial(h.socket)
		if err == nil {
			h.t.Cleanup(func() { c.Close() })
			return c
		}
		select {
		case err := <-h.done:
			h.t.Fatalf("daemon exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("socket %s never served: %v", h.socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// next returns the next message of one of types, skipping others.
func next(t *testing.T, c *server.Client, types ...string) server.Message {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(guard))
	defer c.SetReadDeadline(time.Time{})
	for {
		m, err := c.Next()
		if err != nil {
			t.Fatalf("waiting for %v from the daemon: %v", types, err)
		}
		for _, typ := range types {
			if m.Type == typ {
				return m
			}
		}
	}
}

func resultOf(t *testing.T, c *server.Client) *server.Result {
	t.Helper()
	var r server.Result
	m := next(t, c, "result")
	if err := m.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func status(t *testing.T, c *server.Client) server.Status {
	t.Helper()
	m, err := c.Command(server.Command{Cmd: "status"})
	if err != nil {
		t.Fatal(err)
	}
	var st server.Status
	if err := jsonUnmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
