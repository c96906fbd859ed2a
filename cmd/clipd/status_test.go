package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/telemetry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -run '%s' -update rewrites it after a deliberate change):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

func ptr[T any](v T) *T { return &v }

var statusNow = time.Date(2026, 11, 27, 9, 41, 7, 0, time.UTC)

func TestStatusRendering(t *testing.T) {
	latency := map[string]server.LatencySummary{
		"preprocess": {P50: 1.9, P99: 2.9}, "encode": {P50: 18.4, P99: 30.2}, "total": {P50: 21.3, P99: 48.6},
	}
	running := server.CameraStatus{
		Name: "demo", Source: "pattern?hold=10&shapes=1", State: server.CameraRunning, Format: "rgb24", Width: 480, Height: 480,
		CaptureFPS: 10, ClassifiedPerS: 2, FPS: 2, Captured: 480, Classified: 96, Skipped: 384,
		LabelsFile: "/etc/clipd/labels/demo.labels", LabelsVersion: 1, Labels: 8, LatencyMS: latency,
	}
	cases := map[string]server.Status{
		"running": {
			Version: "0.3.0", Model: "/etc/clipd/models/demo", Backend: "onnxruntime", UptimeS: 3725,
			Cameras: []server.CameraStatus{running},
			Clients: []server.ClientInfo{{ID: 1, Queued: 0}, {ID: 4, Cameras: []string{"demo"}, Queued: 3, QueuedBytes: 2048, Dropped: 12}},
			GPU:     telemetry.Snapshot{NVML: "absent: libnvidia-ml.so.1 not found"},
			Process: server.ProcessStatus{Goroutines: 57, HeapBytes: 38 << 20, RSSBytes: 412 << 20, FDs: 23},
		},
		"troubled": {
			Version: "0.3.0", Model: "/srv/models/ViT-B-32", Backend: "tensorrt", UptimeS: 42,
			Cameras: []server.CameraStatus{
				{
					Name: "door", Source: "rtsp://192.0.2.10:554/stream1", State: server.CameraRetrying, Restarts: 7,
					LastError: "ffmpeg: exit status 1: Connection refused", LastErrorTime: "2026-11-27T09:40:55Z",
					LabelsFile: "/etc/clipd/labels/cifar10.labels", LabelsVersion: 1, Labels: 10,
				},
				{
					Name: "front", Source: "/dev/v4l/by-id/usb-Logitech_C920-video-index0", State: server.CameraRunning,
					Format: "mjpeg", Width: 1280, Height: 720, CaptureFPS: 29.97, ClassifiedPerS: 5, FPS: 5,
					Captured: 1260, Classified: 210, Skipped: 1040, Dropped: 10, Corrupt: 2, BelowThresh: 31, Restarts: 1,
					LastError: "v4l2: no frame for 5s", LastErrorTime: "2026-11-27T09:39:01Z",
					LabelsFile: "/etc/clipd/labels/home.labels", LabelsVersion: 3, Labels: 7,
					LabelsError: `/etc/clipd/labels/home.labels:7: duplicate label "dog" (first defined on line 3)`,
					LatencyMS:   map[string]server.LatencySummary{"total": {P50: 6.25, P99: 9.5}},
				},
				{
					Name: "hall", Source: "/srv/clips/hall.mp4", State: server.CameraEnded, Format: "rgb24", Width: 640, Height: 360,
					Captured: 250, Classified: 50, Skipped: 200, NonFinite: 3,
					LabelsFile: "/etc/clipd/labels/home.labels", LabelsVersion: 3, Labels: 7, LatencyMS: latency,
				},
			},
			GPU: telemetry.Snapshot{Source: telemetry.SourceJetsonSysfs, NVML: "absent: libnvidia-ml.so.1 not found", Board: "NVIDIA Jetson Orin Nano Developer Kit",
				GPUs: []telemetry.GPU{{Index: 0, Name: "ga10b", Integrated: true, UtilizationPct: ptr(34.0), TemperatureC: ptr(51.2),
					MemoryUsedBytes: ptr(uint64(2254857830)), MemoryTotalBytes: ptr(uint64(7945588736)), PowerW: ptr(4.25)}}},
			Reload: &server.ReloadStatus{Time: "2026-11-27T09:40:30Z", OK: false,
				Errors: []string{`camera "door": labels: /etc/clipd/labels/door.labels: no such file or directory; it keeps running with its previous settings, and the next reload tries again`}},
			Process: server.ProcessStatus{Goroutines: 88, HeapBytes: 120 << 20, RSSBytes: 1610 << 20, FDs: 41},
		},
		"no cameras": {
			Version: "dev", Model: "/work/main/models/demo", Backend: "onnxruntime", UptimeS: 0.4,
			GPU: telemetry.Snapshot{Source: telemetry.SourceNVML, NVML: "ok",
				GPUs: []telemetry.GPU{{Index: 0, Name: "NVIDIA A2", UtilizationPct: ptr(0.0)}, {Index: 1, Name: "NVIDIA A2"}}},
			Reload: &server.ReloadStatus{Time: "2026-11-27T09:41:00Z", OK: true},
		},
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := renderStatus(&out, &st, statusNow); err != nil {
				t.Fatal(err)
			}
			golden(t, "status/"+strings.ReplaceAll(name, " ", "-")+".txt", out.Bytes())
			// The table is made for a terminal: its lines, unlike the
			// sources and errors it quotes, fit 80 columns.
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(line, "CAMERA") || strings.Contains(line, "/s  ") {
					if n := len([]rune(line)); n > 80 {
						t.Errorf("table line of %d columns: %q", n, line)
					}
				}
			}
		})
	}
}

// What the daemon sends decodes into the table's input unchanged: the
// status reply's fields are the ones rendered.
func TestStatusRenderingReadsTheWireForm(t *testing.T) {
	st := server.Status{Version: "v", Cameras: []server.CameraStatus{{Name: "a", State: server.CameraRetrying, CaptureFPS: 3, ClassifiedPerS: 1,
		LabelsError: "a.labels:2: bad", LastError: "gone", LastErrorTime: "2026-11-27T09:41:00Z"}}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"state":"retrying"`, `"capture_fps":3`, `"classified_per_s":1`, `"fps":0`, `"labels_error":"a.labels:2: bad"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("status JSON lacks %s: %s", key, data)
		}
	}
	var back server.Status
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	renderStatus(&out, &back, statusNow)
	for _, want := range []string{"a       retrying", "3.0/s", "1.0/s", "error   gone (7 s ago)", "the file on disk fails, v0 stays in use: a.labels:2: bad"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rendering lacks %q:\n%s", want, out.String())
		}
	}
}
