package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/testmodel"
	"github.com/clipd/clipd/model"
	"github.com/clipd/clipd/server"
)

// BenchmarkPipelineMJPEG720p measures the whole daemon on a random-weight
// ViT-B/32: a 1280x720 MJPEG file played at its native 30 frames/s by the
// ffmpeg source, through preprocessing, the encoder and scoring, to a client
// on the unix socket. It reports the result rate next to the rate of the
// encoder alone at the same batch size (1, one camera), the latency from
// capture to the client, and the daemon's CPU and RSS. The file's JPEG
// images pass through ffmpeg undecoded unless the sub-benchmark has ffmpeg
// decode them; ffmpeg runs in its own process and is not in the CPU figure.
//
// On a CPU backend the encoder and the rest of the pipeline share the
// cores: with every core given to ONNX Runtime (threads=all) capture and
// preprocessing take their CPU from the encoder; with threads=1 a core is
// left for them, which shows what the pipeline itself costs when the
// encoder runs elsewhere (a GPU). rss_MB is only clean for the first
// sub-benchmark: the process keeps what earlier ones allocated.
func BenchmarkPipelineMJPEG720p(b *testing.B) {
	for _, c := range []struct {
		name    string
		threads int
		format  string
	}{
		// auto passes the file's JPEG images through ffmpeg undecoded.
		{"threads=all", 0, "auto"},
		// The same with ffmpeg decoding every image to RGB24, as for a
		// stream that is not MJPEG or must be scaled.
		{"threads=all/ffmpeg-decodes", 0, "rgb24"},
		{"threads=1", 1, "auto"},
	} {
		b.Run(c.name, func(b *testing.B) { benchmarkPipeline(b, c.threads, c.format) })
	}
}

func benchmarkPipeline(b *testing.B, threads int, format string) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("ffmpeg is not installed")
	}
	bundle := testmodel.RandomBundle(b, "ViT-B/32")
	dir, err := os.MkdirTemp("", "cb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	video := filepath.Join(dir, "720p.avi")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "10",
		"-c:v", "mjpeg", "-q:v", "4", video).CombinedOutput(); err != nil {
		b.Fatalf("making the test video: %v\n%s", err, out)
	}
	labelsFile := filepath.Join(dir, "l.labels")
	os.WriteFile(labelsFile, []byte("dog\ncat\ncar\nperson\nempty street\n"), 0o644)

	const window = 15 * time.Second
	conf := config.Default()
	conf.Model.Bundle, conf.Model.Backend, conf.Model.Threads = bundle, engine.BackendONNXRuntime, threads
	conf.Model.StateDir = dir
	conf.Snapshots.Dir = filepath.Join(dir, "snapshots")
	conf.Socket.Path = filepath.Join(dir, "s.sock")
	conf.Cameras = []config.Camera{{Name: "cam", Source: video, Loop: true, Format: format, Width: 1280, Height: 720,
		FPS: 30, Labels: labelsFile, TopK: 3}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Config: conf, Version: "bench", Log: discardLogger()}) }()
	var c *server.Client
	for start := time.Now(); c == nil; {
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
	cpu0, start := cpuTime(), time.Now()
	for time.Since(start) < window {
		r := nextResult(b, c)
		latencies = append(latencies, float64(time.Since(r.Time).Microseconds())/1000)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	rss := rssBytes()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	// The encoder alone runs after the daemon has stopped, so that the RSS
	// above holds only the daemon.
	encoderRate := encoderAlone(b, bundle, threads, window/2)
	rate := float64(len(latencies)) / elapsed.Seconds()
	slices.Sort(latencies)
	b.ReportMetric(rate, "pipeline_frames/s")
	b.ReportMetric(encoderRate, "encoder_frames/s")
	b.ReportMetric(100*rate/encoderRate, "pipeline_%_of_encoder")
	b.ReportMetric(latencies[len(latencies)/2], "p50_ms")
	b.ReportMetric(latencies[len(latencies)*99/100], "p99_ms")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "cpu_%")
	b.ReportMetric(float64(rss)/(1<<20), "rss_MB")
}

// encoderAlone is the rate of batch-1 image encoding with nothing else
// running, on the same bundle and backend.
func encoderAlone(b *testing.B, bundle string, threads int, window time.Duration) float64 {
	m, err := model.Open(bundle, model.Options{Backend: engine.BackendONNXRuntime, Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pre := m.NewPreprocessor()
	defer pre.Close()
	tensor := make([]float32, pre.TensorLen())
	for i := range tensor {
		tensor[i] = float32(i%255)/255 - 0.5
	}
	m.EncodeImages(tensor, 1)
	n, start := 0, time.Now()
	for time.Since(start) < window {
		if _, err := m.EncodeImages(tensor, 1); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
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

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
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
