package daemon

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/server"
)

// BenchmarkPipelineMJPEG720p measures the whole daemon on a random-weight
// ViT-B/32 with the default [model] settings: a 1280x720 MJPEG file played
// at its native 30 frames/s by the ffmpeg source, through preprocessing,
// the encoder and scoring, to a client on the unix socket. It reports the
// result rate next to the rate of the encoder alone at the same batch size
// (1, one camera) and settings, the latency from capture to the client and
// per stage, and the daemon's CPU, RSS and Go heap. The file's JPEG images
// pass through ffmpeg undecoded unless the sub-benchmark has ffmpeg decode
// them; ffmpeg runs in its own process: its CPU is ffmpeg_cpu_% (over the
// daemon's run), not in cpu_%. encoder_alone_cpu_% is the encoder's alone:
// on a CPU backend, what is left of the cores is all the rest of the
// pipeline has before it slows the encoder.
//
// Each op is pipelineRounds rounds of the daemon followed by the encoder
// alone (the daemon stopped), so that both see the same load on a shared
// machine; figures are medians over the rounds, with the ratio's range.
//
// Memory: the prompt cache is warm before the first round, as for a
// daemon restarted on labels it has seen, so the text encoder is not
// loaded (model.Options.TextOnDemand), as in a daemon whose text encoder
// has gone idle. rss_MB is the process's (the daemon and the benchmark,
// which holds nothing else) at the end of each daemon window, median over
// the rounds. After the first round's window the labels file gets a new
// label: labels_reload_ms is from the write to the client's "labels"
// event (the text session opened, the prompt encoded) and
// rss_text_loaded_MB the RSS just after, with the text session open.
//
// On a CPU backend the encoder and the rest of the pipeline share the
// cores: with every core given to ONNX Runtime (threads=0, the default)
// capture and preprocessing take their CPU from the encoder; with
// threads=1 a core is left for them, which shows what the pipeline itself
// costs when the encoder runs elsewhere (a GPU).
func BenchmarkPipelineMJPEG720p(b *testing.B) {
	def := config.Default().Model
	setup := newPipelineSetup(b)
	for _, c := range []struct {
		name string
		set  pipelineSettings
	}{
		// auto passes the file's JPEG images through ffmpeg undecoded.
		{"passthrough", pipelineSettings{threads: def.Threads, spinning: def.Spinning, format: "auto"}},
		// The same with ffmpeg decoding every image to RGB24, as for a
		// stream that is not MJPEG or must be scaled.
		{"ffmpeg-decodes", pipelineSettings{threads: def.Threads, spinning: def.Spinning, format: "rgb24"}},
		{"passthrough/threads=1", pipelineSettings{threads: 1, spinning: def.Spinning, format: "auto"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var rounds []pipelineRound
				for i := range pipelineRounds {
					rounds = append(rounds, setup.round(b, c.set, i == 0))
				}
				reportRounds(b, "", rounds)
				b.ReportMetric(float64(rounds[0].labelsReload.Milliseconds()), "labels_reload_ms")
				b.ReportMetric(float64(rounds[0].rssTextLoaded)/(1<<20), "rss_text_loaded_MB")
			}
		})
	}
}

// BenchmarkPipelineRegions is the pipeline with a camera's whole frame and
// two regions (the left and right 720x720 squares of the 1280x720 frame),
// all three preprocessed from one decode and encoded in one batch: the
// results of all three a second against the encoder's images a second at
// batch 3. With one core left for capture (threads=1), as for a GPU, and
// with both cores to ONNX Runtime.
func BenchmarkPipelineRegions(b *testing.B) {
	def := config.Default().Model
	setup := newPipelineSetup(b)
	regions := func(c *config.Config) {
		c.Cameras[0].Regions = []config.Region{
			{Name: "left", Box: &frame.Box{X1: 0, Y1: 0, X2: 720, Y2: 720}, Labels: setup.labels, TopK: 3},
			{Name: "right", Box: &frame.Box{X1: 560, Y1: 0, X2: 1280, Y2: 720}, Labels: setup.labels, TopK: 3},
		}
	}
	for _, c := range []struct {
		name string
		set  pipelineSettings
	}{
		{"threads=1", pipelineSettings{threads: 1, spinning: def.Spinning, format: "auto", tune: regions, batch: 3}},
		{"threads=all", pipelineSettings{threads: def.Threads, spinning: def.Spinning, format: "auto", tune: regions, batch: 3}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var rounds []pipelineRound
				for range pipelineRounds {
					rounds = append(rounds, setup.round(b, c.set, false))
				}
				reportRounds(b, "", rounds)
			}
		})
	}
}

// BenchmarkPipelineOutputs measures what the outputs cost the pipeline:
// round by round, the plain pipeline, then with a state change (an event,
// a snapshot written) at every change of the top label (state_hold 0s,
// threshold 0, so many events a second), then with the camera memory
// storing at its default rate. Each is reported with its rate as a share
// of the plain pipeline's in the same round.
func BenchmarkPipelineOutputs(b *testing.B) {
	def := config.Default().Model
	setup := newPipelineSetup(b)
	plain := pipelineSettings{threads: def.Threads, spinning: def.Spinning, format: "auto"}
	events, memory := plain, plain
	events.tune = func(c *config.Config) { c.Cameras[0].StateHold = 0 }
	memory.tune = func(c *config.Config) {
		c.History = config.Default().History
		c.History.Enabled, c.History.Dir = true, filepath.Join(setup.dir, "history")
	}
	named := []struct {
		name string
		set  pipelineSettings
	}{{"plain", plain}, {"events", events}, {"history", memory}}
	for b.Loop() {
		rounds := make([][]pipelineRound, len(named))
		for range pipelineRounds {
			for i, n := range named {
				rounds[i] = append(rounds[i], setup.round(b, n.set, false))
			}
		}
		for i, n := range named {
			reportRounds(b, n.name+":", rounds[i])
			share := make([]float64, len(rounds[i]))
			for j := range share {
				share[j] = 100 * rounds[i][j].rate / rounds[0][j].rate
			}
			b.ReportMetric(median(share), n.name+":%_of_plain")
		}
		ev := make([]float64, len(rounds[1]))
		for j, r := range rounds[1] {
			ev[j] = r.events
		}
		b.ReportMetric(median(ev), "events:events/s")
	}
}

// BenchmarkPipelineSettings compares ONNX Runtime settings on the same
// pipeline as BenchmarkPipelineMJPEG720p, both sources: each round runs
// every setting once, in turn, so that a change of load on a shared
// machine falls on all of them alike. The metrics are named by setting:
// spin=0/1 (session.intra_op.allow_spinning), t=threads (0: every core),
// prio=capture_priority (auto: idle on ONNX Runtime).
func BenchmarkPipelineSettings(b *testing.B) {
	setup := newPipelineSetup(b)
	settings := []pipelineSettings{
		{threads: 0}, {threads: 0, priority: "normal"}, {threads: 0, spinning: true}, {threads: 1},
	}
	for _, format := range []struct{ name, format string }{{"passthrough", "auto"}, {"ffmpeg-decodes", "rgb24"}} {
		b.Run(format.name, func(b *testing.B) {
			for b.Loop() {
				rounds := make([][]pipelineRound, len(settings))
				for range pipelineRounds {
					for i, set := range settings {
						set.format = format.format
						rounds[i] = append(rounds[i], setup.round(b, set, false))
					}
				}
				for i, set := range settings {
					prio := cmp.Or(set.priority, config.CapturePriorityAuto)
					reportRounds(b, fmt.Sprintf("spin=%d,t=%d,prio=%s:", map[bool]int{false: 0, true: 1}[set.spinning], set.threads, prio), rounds[i])
				}
			}
		})
	}
}

const (
	pipelineRounds = 3
	// pipelineWindow is how long each round's daemon delivers results,
	// encoderWindow how long the encoder alone runs after it.
	pipelineWindow = 10 * time.Second
	encoderWindow  = 5 * time.Second
)

// pipelineSettings are the [model] keys and the camera format a round
// runs with.
type pipelineSettings struct {
	threads  int
	spinning bool
	format   string
	// priority is [model] capture_priority; "" leaves the default.
	priority string
	// tune, if set, changes the round's config (regions, events,
	// history); batch is the images per encoder call of the encoder
	// alone, the frame's targets (0: 1).
	tune  func(*config.Config)
	batch int
}

// pipelineSetup is what every round shares: the bundle, a 10 s MJPEG
// file, a labels file and a prompt cache that holds its prompts.
type pipelineSetup struct {
	bundle, dir, video, labels string
}

func newPipelineSetup(b *testing.B) *pipelineSetup {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("ffmpeg is not installed")
	}
	s := &pipelineSetup{bundle: testmodel.RandomBundle(b, "ViT-B/32")}
	var err error
	if s.dir, err = os.MkdirTemp("", "cb"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(s.dir) })
	s.video = filepath.Join(s.dir, "720p.avi")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "10",
		"-c:v", "mjpeg", "-q:v", "4", s.video).CombinedOutput(); err != nil {
		b.Fatalf("making the test video: %v\n%s", err, out)
	}
	s.labels = filepath.Join(s.dir, "l.labels")
	if err := os.WriteFile(s.labels, []byte(benchLabels), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := model.Open(s.bundle, model.Options{Backend: engine.BackendONNXRuntime})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	cache, err := m.OpenPromptCache(s.dir, 0)
	if err != nil {
		b.Fatal(err)
	}
	e, err := labels.OpenEmbedder(labels.EmbedderConfig{Encoder: m, Store: cache})
	if err != nil {
		b.Fatal(err)
	}
	set, err := labels.Load(s.labels)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Embed(context.Background(), set); err != nil {
		b.Fatal(err)
	}
	return s
}

const benchLabels = "dog\ncat\ncar\nperson\nempty street\n"

// pipelineRound is one daemon window and the encoder-alone window after it.
type pipelineRound struct {
	rate, encoderRate float64
	p50, p99          float64            // capture to client, ms
	stages            map[string]float64 // p50 of each stage, ms
	cpu               float64            // % of one core
	// helperCPU is ffmpeg's over the daemon's run, encoderCPU the
	// encoder's alone (% of one core).
	helperCPU, encoderCPU float64
	rss, goHeap           int64
	events                float64 // state changes a second
	// After a labels edit (round's edit): from the write to the event,
	// and the RSS then.
	labelsReload  time.Duration
	rssTextLoaded int64
}

// round runs the daemon for pipelineWindow, then, if edit, adds a label,
// then runs the encoder alone.
func (s *pipelineSetup) round(b *testing.B, set pipelineSettings, edit bool) pipelineRound {
	conf := config.Default()
	conf.Model.Bundle, conf.Model.Backend = s.bundle, engine.BackendONNXRuntime
	conf.Model.Threads, conf.Model.Spinning = set.threads, set.spinning
	if set.priority != "" {
		conf.Model.CapturePriority = set.priority
	}
	conf.Model.StateDir = s.dir
	conf.Snapshots.Dir = filepath.Join(s.dir, "snapshots")
	conf.Socket.Path = filepath.Join(s.dir, "s.sock")
	conf.Cameras = []config.Camera{{Name: "cam", Source: s.video, Loop: true, Format: set.format, Width: 1280, Height: 720,
		FPS: 30, Labels: s.labels, TopK: 3}}
	if set.tune != nil {
		set.tune(conf)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	helperCPU0, daemonStart := helperCPUTime(), time.Now()
	go func() { done <- Run(ctx, Options{Config: conf, Version: "bench", Log: discardLogger()}) }()
	var c *server.Client
	for start := time.Now(); c == nil; {
		var err error
		if c, err = server.Dial(conf.Socket.Path); err != nil {
			if time.Since(start) > time.Minute {
				b.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer c.Close()
	// Warm up: let ffmpeg start and the encoder settle.
	for i := 0; i < 5; i++ {
		nextResult(b, c)
	}
	var latencies []float64
	stages := map[string][]float64{}
	cpu0, start := cpuTime(), time.Now()
	for time.Since(start) < pipelineWindow {
		r := nextResult(b, c)
		latencies = append(latencies, float64(time.Since(r.Time).Microseconds())/1000)
		for stage, ms := range r.LatencyMS {
			stages[stage] = append(stages[stage], ms)
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	var events uint64
	if reply, err := c.Command(server.Command{Cmd: "status"}); err == nil {
		var st server.Status
		if jsonUnmarshal(reply.Data, &st) == nil {
			for _, n := range st.Events {
				events += n
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := pipelineRound{
		rate:   float64(len(latencies)) / elapsed.Seconds(),
		cpu:    100 * cpu.Seconds() / elapsed.Seconds(),
		rss:    rssBytes(),
		goHeap: int64(ms.HeapInuse),
		stages: map[string]float64{},
		events: float64(events) / time.Since(start).Seconds(),
	}
	if edit {
		r.labelsReload = editLabels(b, c, s.labels)
		r.rssTextLoaded = rssBytes()
		defer func() {
			if err := os.WriteFile(s.labels, []byte(benchLabels), 0o644); err != nil {
				b.Fatal(err)
			}
		}()
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	r.helperCPU = 100 * (helperCPUTime() - helperCPU0).Seconds() / time.Since(daemonStart).Seconds()
	// What the daemon freed goes back now, so that the next round's RSS
	// is its own.
	debug.FreeOSMemory()
	// The encoder alone runs after the daemon has stopped, so that the RSS
	// above holds only the daemon.
	r.encoderRate, r.encoderCPU = encoderAlone(b, s.bundle, set, encoderWindow)
	slices.Sort(latencies)
	r.p50, r.p99 = latencies[len(latencies)/2], latencies[len(latencies)*99/100]
	for stage, v := range stages {
		r.stages[stage] = median(v)
	}
	return r
}

// reportRounds reports the medians of rounds, each metric prefixed.
func reportRounds(b *testing.B, prefix string, rounds []pipelineRound) {
	pick := func(f func(pipelineRound) float64) []float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		return v
	}
	ratios := pick(func(r pipelineRound) float64 { return 100 * r.rate / r.encoderRate })
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.rate })), prefix+"pipeline_frames/s")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.encoderRate })), prefix+"encoder_frames/s")
	b.ReportMetric(median(ratios), prefix+"pipeline_%_of_encoder")
	b.ReportMetric(slices.Min(ratios), prefix+"pipeline_%_min")
	b.ReportMetric(slices.Max(ratios), prefix+"pipeline_%_max")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.p50 })), prefix+"p50_ms")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.p99 })), prefix+"p99_ms")
	for _, stage := range []string{"preprocess", "queue", "encode"} {
		b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.stages[stage] })), prefix+stage+"_p50_ms")
	}
	b.ReportMetric(1000/median(pick(func(r pipelineRound) float64 { return r.encoderRate })), prefix+"encode_alone_ms")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.cpu })), prefix+"cpu_%")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.helperCPU })), prefix+"ffmpeg_cpu_%")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return r.encoderCPU })), prefix+"encoder_alone_cpu_%")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return float64(r.rss) / (1 << 20) })), prefix+"rss_MB")
	b.ReportMetric(median(pick(func(r pipelineRound) float64 { return float64(r.goHeap) / (1 << 20) })), prefix+"go_heap_MB")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// encoderAlone is the rate of batch-1 image encoding with nothing else
// running, on the same bundle, backend and settings, and the CPU it takes
// (% of one core).
func encoderAlone(b *testing.B, bundle string, set pipelineSettings, window time.Duration) (rate, cpu float64) {
	m, err := model.Open(bundle, model.Options{Backend: engine.BackendONNXRuntime, Threads: set.threads, Spinning: set.spinning,
		TextOnDemand: true})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pre := m.NewPreprocessor()
	defer pre.Close()
	batch := max(set.batch, 1)
	tensor := make([]float32, batch*pre.TensorLen())
	for i := range tensor {
		tensor[i] = float32(i%255)/255 - 0.5
	}
	m.EncodeImages(tensor, batch)
	n, start, cpu0 := 0, time.Now(), cpuTime()
	for time.Since(start) < window {
		if _, err := m.EncodeImages(tensor, batch); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	elapsed := time.Since(start).Seconds()
	return float64(n) / elapsed, 100 * (cpuTime() - cpu0).Seconds() / elapsed
}

// editLabels adds a label no run has seen to the labels file and returns
// the time until the daemon has published the new set.
func editLabels(b *testing.B, c *server.Client, file string) time.Duration {
	edited := fmt.Sprintf("%sa label added at %d\n", benchLabels, time.Now().UnixNano())
	start := time.Now()
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		b.Fatal(err)
	}
	for {
		m, err := c.Next()
		if err != nil {
			b.Fatal(err)
		}
		if m.Type == "labels" {
			return time.Since(start)
		}
	}
}

func nextResult(b *testing.B, c *server.Client) *server.Result {
	for {
		m, err := c.Next()
		if err != nil {
			b.Fatal(err)
		}
		if m.Type == "result" {
			var r server.Result
			if err := m.Decode(&r); err != nil {
				b.Fatal(err)
			}
			return &r
		}
	}
}

func cpuTime() time.Duration { return rusage(syscall.RUSAGE_SELF) }

// helperCPUTime is the CPU time of this process's children that have
// been waited for (the cameras' ffmpeg, once the daemon has stopped).
func helperCPUTime() time.Duration { return rusage(syscall.RUSAGE_CHILDREN) }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is the resident set of this process (VmRSS).
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
