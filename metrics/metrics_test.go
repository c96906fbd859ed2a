package metrics

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/telemetry"
)

func ptr[T any](v T) *T { return &v }

// sampleSnapshot has every part filled, with distinct values so that a
// metric read from the wrong field shows.
func sampleSnapshot() Snapshot {
	return Snapshot{
		Status: server.Status{
			Version: "v1.2.3-4-gabc", Backend: "onnxruntime",
			Cameras: []server.CameraStatus{
				{Name: "drive", Captured: 1001, Classified: 203, Dropped: 17, Skipped: 781, Corrupt: 3, BelowThresh: 41, Restarts: 2, NonFinite: 1, Labels: 8, LabelsVersion: 5},
				{Name: "yard", Captured: 55, Classified: 54, Dropped: 1, Labels: 3, LabelsVersion: 1},
			},
			Clients: []server.ClientInfo{{ID: 1, Dropped: 7}, {ID: 2, Dropped: 0}},
			GPU: telemetry.Snapshot{Source: telemetry.SourceNVML, GPUs: []telemetry.GPU{
				{Index: 0, Name: "Orin", TemperatureC: ptr(51.5), UtilizationPct: ptr(37.0), MemoryUsedBytes: ptr(uint64(3 << 30)), MemoryTotalBytes: ptr(uint64(8 << 30)), PowerW: ptr(6.25)},
				// A second device that reports nothing but its name.
				{Index: 1, Name: "other"},
			}},
		},
		CameraUp: map[string]bool{"drive": true, "yard": false},
		MQTT:     &mqtt.Status{Connected: true, Queued: 4, Dropped: 12, Published: 3456},
		History: &history.Status{
			Records: 86400, Thumbnails: 17280, Bytes: 123456789, MaxBytes: 2 << 30,
			Paused: true, Pauses: 2, Stored: 90000, Dropped: 11, DroppedPaused: 22, Invalid: 33, QueuedBytes: 4096,
			Oldest: time.Date(2026, 3, 1, 12, 0, 0, 500e6, time.UTC),
		},
		Snapshots: &snapshot.Stats{Written: 9, Dropped: 1, Failed: 2, Files: 8, Bytes: 654321},
	}
}

func newTest(t *testing.T, snap func() Snapshot) (*Metrics, *httptest.Server) {
	t.Helper()
	m, err := New(Options{Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return m, srv
}

// scrape fetches /metrics over HTTP as Prometheus would and parses it.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	// The text format, as promtool reads it.
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams, body
}

// value finds the sample of name whose labels are exactly labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
		t.Fatalf("%s%v is not a counter or gauge", name, labels)
	}
	return 0, false
}

func TestScrapeAgreesWithStatus(t *testing.T) {
	snap := sampleSnapshot()
	_, srv := newTest(t, func() Snapshot { return snap })
	fams, body := scrape(t, srv.URL)

	type want struct {
		name   string
		labels []string
		v      float64
	}
	cam := snap.Status.Cameras[0]
	h := snap.History
	wants := []want{
		{"clipd_build_info", []string{"version", "v1.2.3-4-gabc", "backend", "onnxruntime"}, 1},
		{"clipd_frames_captured_total", []string{"camera", "drive"}, float64(cam.Captured)},
		{"clipd_frames_classified_total", []string{"camera", "drive"}, float64(cam.Classified)},
		{"clipd_frames_dropped_total", []string{"camera", "drive", "reason", "overtaken"}, float64(cam.Dropped)},
		{"clipd_frames_dropped_total", []string{"camera", "drive", "reason", "classify_every"}, float64(cam.Skipped)},
		{"clipd_frames_dropped_total", []string{"camera", "drive", "reason", "corrupt"}, float64(cam.Corrupt)},
		{"clipd_frames_dropped_total", []string{"camera", "drive", "reason", "non_finite"}, float64(cam.NonFinite)},
		{"clipd_frames_below_threshold_total", []string{"camera", "drive"}, float64(cam.BelowThresh)},
		{"clipd_camera_restarts_total", []string{"camera", "drive"}, float64(cam.Restarts)},
		{"clipd_camera_up", []string{"camera", "drive"}, 1},
		{"clipd_camera_up", []string{"camera", "yard"}, 0},
		{"clipd_labels", []string{"camera", "drive"}, 8},
		{"clipd_labels_version", []string{"camera", "drive"}, 5},
		{"clipd_frames_captured_total", []string{"camera", "yard"}, 55},
		{"clipd_socket_clients", nil, 2},
		{"clipd_socket_dropped_messages_total", nil, 7},
		{"clipd_mqtt_connected", nil, 1},
		{"clipd_mqtt_dropped_messages_total", nil, 12},
		{"clipd_mqtt_published_messages_total", nil, 3456},
		{"clipd_mqtt_queued_messages", nil, 4},
		{"clipd_history_records", nil, float64(h.Records)},
		{"clipd_history_thumbnails", nil, float64(h.Thumbnails)},
		{"clipd_history_bytes", nil, float64(h.Bytes)},
		{"clipd_history_max_bytes", nil, float64(h.MaxBytes)},
		{"clipd_history_paused", nil, 1},
		{"clipd_history_pauses_total", nil, 2},
		{"clipd_history_stored_records_total", nil, float64(h.Stored)},
		{"clipd_history_dropped_records_total", []string{"reason", "queue_full"}, 11},
		{"clipd_history_dropped_records_total", []string{"reason", "paused"}, 22},
		{"clipd_history_dropped_records_total", []string{"reason", "invalid"}, 33},
		{"clipd_history_queued_bytes", nil, 4096},
		{"clipd_history_oldest_record_timestamp_seconds", nil, float64(h.Oldest.UnixNano()) / 1e9},
		{"clipd_snapshots_written_total", nil, 9},
		{"clipd_snapshots_dropped_total", nil, 1},
		{"clipd_snapshots_failed_total", nil, 2},
		{"clipd_snapshot_files", nil, 8},
		{"clipd_snapshot_bytes", nil, 654321},
		{"clipd_gpu_temperature_celsius", []string{"gpu", "0", "name", "Orin"}, 51.5},
		{"clipd_gpu_utilization_ratio", []string{"gpu", "0", "name", "Orin"}, 0.37},
		{"clipd_gpu_memory_used_bytes", []string{"gpu", "0", "name", "Orin"}, 3 << 30},
		{"clipd_gpu_memory_total_bytes", []string{"gpu", "0", "name", "Orin"}, 8 << 30},
		{"clipd_gpu_power_watts", []string{"gpu", "0", "name", "Orin"}, 6.25},
		{"clipd_config_reloads_total", []string{"result", "ok"}, 0},
		{"clipd_config_reloads_total", []string{"result", "failed"}, 0},
	}
	for _, w := range wants {
		got, ok := value(t, fams, w.name, w.labels...)
		if !ok {
			t.Errorf("%s%v missing", w.name, w.labels)
			continue
		}
		if math.Abs(got-w.v) > 1e-9*math.Max(1, math.Abs(w.v)) {
			t.Errorf("%s%v = %v, status says %v", w.name, w.labels, got, w.v)
		}
	}
	// The second GPU reports nothing: no series, not zeros.
	for _, name := range []string{"clipd_gpu_temperature_celsius", "clipd_gpu_utilization_ratio", "clipd_gpu_memory_used_bytes", "clipd_gpu_memory_total_bytes", "clipd_gpu_power_watts"} {
		if _, ok := value(t, fams, name, "gpu", "1", "name", "other"); ok {
			t.Errorf("%s has a series for a GPU that does not report it", name)
		}
	}
	// The standard process and Go runtime metrics come along.
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestAbsentPartsHaveNoSeries(t *testing.T) {
	// MQTT, history and snapshots off, no GPU, no camera up state.
	snap := Snapshot{Status: server.Status{Version: "dev", Backend: "onnxruntime",
		Cameras: []server.CameraStatus{{Name: "cam"}},
		GPU:     telemetry.Snapshot{NVML: "absent: libnvidia-ml.so.1 not found"}}}
	_, srv := newTest(t, func() Snapshot { return snap })
	fams, body := scrape(t, srv.URL)
	for name := range fams {
		for _, prefix := range []string{"clipd_mqtt_", "clipd_history_", "clipd_snapshot", "clipd_gpu_", "clipd_camera_up"} {
			if strings.HasPrefix(name, prefix) {
				t.Errorf("%s present with its part off:\n%s", name, body)
			}
		}
	}
	if v, ok := value(t, fams, "clipd_frames_captured_total", "camera", "cam"); !ok || v != 0 {
		t.Errorf("clipd_frames_captured_total{camera=cam} = %v, %v; want 0", v, ok)
	}
}

// TestScrapeFollowsStatus checks that every scrape reads the status anew.
func TestScrapeFollowsStatus(t *testing.T) {
	var mu sync.Mutex
	snap := sampleSnapshot()
	_, srv := newTest(t, func() Snapshot { mu.Lock(); defer mu.Unlock(); return snap })
	fams, _ := scrape(t, srv.URL)
	if v, _ := value(t, fams, "clipd_frames_captured_total", "camera", "drive"); v != 1001 {
		t.Fatalf("captured %v", v)
	}
	mu.Lock()
	snap.Status.Cameras[0].Captured = 2002
	snap.Status.Cameras = snap.Status.Cameras[:1]
	mu.Unlock()
	fams, _ = scrape(t, srv.URL)
	if v, _ := value(t, fams, "clipd_frames_captured_total", "camera", "drive"); v != 2002 {
		t.Errorf("captured %v after the status changed, want 2002", v)
	}
	if _, ok := value(t, fams, "clipd_frames_captured_total", "camera", "yard"); ok {
		t.Error("a camera gone from the status is still exported")
	}
}

func TestSocketDropsNeverDecrease(t *testing.T) {
	var clients []server.ClientInfo
	m, err := New(Options{Snapshot: func() Snapshot { return Snapshot{Status: server.Status{Clients: clients}} }})
	if err != nil {
		t.Fatal(err)
	}
	read := func() float64 {
		fams, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "clipd_socket_dropped_messages_total" {
				return f.Metric[0].Counter.GetValue()
			}
		}
		t.Fatal("no clipd_socket_dropped_messages_total")
		return 0
	}
	steps := []struct {
		clients []server.ClientInfo
		want    float64
	}{
		{[]server.ClientInfo{{ID: 1, Dropped: 5}, {ID: 2, Dropped: 3}}, 8},
		{[]server.ClientInfo{{ID: 2, Dropped: 4}}, 9},                       // 1 left with 5
		{[]server.ClientInfo{{ID: 2, Dropped: 4}, {ID: 3, Dropped: 1}}, 10}, // 3 joined
		{nil, 10}, // everyone left
		{[]server.ClientInfo{{ID: 4, Dropped: 0}}, 10},
	}
	for i, s := range steps {
		clients = s.clients
		if got := read(); got != s.want {
			t.Errorf("step %d: %v, want %v", i, got, s.want)
		}
	}
}

func TestObservations(t *testing.T) {
	m, srv := newTest(t, func() Snapshot { return Snapshot{} })
	m.ObserveFrame("drive", map[string]float64{"encode": 12.5, "total": 30, "capture": -2, "bad": math.NaN()})
	m.ObserveFrame("drive", map[string]float64{"encode": 7.5, "total": 20})
	m.ObserveFrame("yard", map[string]float64{"total": 1})
	m.AddTargets("drive", "", "gate")
	m.StateChanged(state.Event{Camera: "drive", Region: "gate", Label: "a car"})
	m.StateChanged(state.Event{Camera: "drive", Region: "gate", Label: "none"})
	m.StateChanged(state.Event{Camera: "yard", Label: "a dog"})
	m.LabelsEvent("drive", labels.Loaded)
	m.LabelsEvent("drive", labels.Loaded)
	m.LabelsEvent("drive", labels.Failed)
	m.LabelsEvent("drive", labels.Removed)
	m.LabelsEvent("drive", labels.EventKind(99))
	m.ConfigReloaded(true)
	m.ConfigReloaded(false)
	m.ConfigReloaded(false)

	fams, body := scrape(t, srv.URL)
	hist := func(camera, stage string) *dto.Histogram {
		for _, mm := range fams["clipd_stage_duration_seconds"].GetMetric() {
			var c, s string
			for _, lp := range mm.Label {
				switch lp.GetName() {
				case "camera":
					c = lp.GetValue()
				case "stage":
					s = lp.GetValue()
				}
			}
			if c == camera && s == stage {
				return mm.Histogram
			}
		}
		return nil
	}
	enc := hist("drive", "encode")
	if enc == nil || enc.GetSampleCount() != 2 || math.Abs(enc.GetSampleSum()-0.020) > 1e-12 {
		t.Errorf("encode histogram %v, want 2 samples summing to 0.020 s", enc)
	}
	// 12.5 ms and 7.5 ms: one in (5ms, 10ms], both ≤ 25 ms.
	for _, b := range enc.GetBucket() {
		var want uint64
		switch {
		case b.GetUpperBound() >= 0.025:
			want = 2
		case b.GetUpperBound() >= 0.01:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("encode bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if c := hist("drive", "capture"); c == nil || c.GetSampleCount() != 1 || c.GetSampleSum() != 0 {
		t.Errorf("a negative duration: %v, want one sample of 0", c)
	}
	if hist("drive", "bad") != nil {
		t.Error("a NaN duration was observed")
	}
	if y := hist("yard", "total"); y == nil || y.GetSampleCount() != 1 {
		t.Errorf("yard total: %v", y)
	}
	for _, w := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"clipd_state_changes_total", []string{"camera", "drive", "region", "gate"}, 2},
		{"clipd_state_changes_total", []string{"camera", "drive", "region", ""}, 0},
		{"clipd_state_changes_total", []string{"camera", "yard", "region", ""}, 1},
		{"clipd_label_reloads_total", []string{"camera", "drive", "result", "loaded"}, 2},
		{"clipd_label_reloads_total", []string{"camera", "drive", "result", "failed"}, 1},
		{"clipd_label_reloads_total", []string{"camera", "drive", "result", "removed"}, 1},
		{"clipd_config_reloads_total", []string{"result", "ok"}, 1},
		{"clipd_config_reloads_total", []string{"result", "failed"}, 2},
	} {
		if got, ok := value(t, fams, w.name, w.labels...); !ok || got != w.v {
			t.Errorf("%s%v = %v (present %v), want %v\n%s", w.name, w.labels, got, ok, w.v, body)
		}
	}
	if n := len(fams["clipd_label_reloads_total"].GetMetric()); n != 3 {
		t.Errorf("%d label reload series, want 3 (an unknown kind is not counted)", n)
	}

	m.RemoveCamera("drive")
	fams, _ = scrape(t, srv.URL)
	for _, name := range []string{"clipd_stage_duration_seconds", "clipd_state_changes_total", "clipd_label_reloads_total"} {
		for _, mm := range fams[name].GetMetric() {
			for _, lp := range mm.Label {
				if lp.GetName() == "camera" && lp.GetValue() == "drive" {
					t.Errorf("%s still has camera drive after RemoveCamera", name)
				}
			}
		}
	}
	if hist("yard", "total") == nil {
		t.Error("RemoveCamera(drive) removed yard's series")
	}
}

// TestPromlint runs client_golang's linter over everything exported,
// observed series included.
func TestPromlint(t *testing.T) {
	m, err := New(Options{Snapshot: sampleSnapshot})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveFrame("drive", map[string]float64{"encode": 3})
	m.StateChanged(state.Event{Camera: "drive"})
	m.LabelsEvent("drive", labels.Loaded)
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestPromtool checks a real scrape with Prometheus' own promtool (Debian
// package prometheus), first making sure it flags a bad exposition, so
// that a silent promtool cannot pass the test.
func TestPromtool(t *testing.T) {
	tool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; make deps)")
	}
	check := func(exposition []byte) (string, error) {
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	bad := []byte("# HELP clipd_frames counted\n# TYPE clipd_frames counter\nclipd_frames 3\n")
	if out, err := check(bad); err == nil {
		t.Fatalf("promtool accepted a counter without _total; its check is not working: %s", out)
	}

	m, srv := newTest(t, sampleSnapshot)
	m.ObserveFrame("drive", map[string]float64{"encode": 3, "total": 9})
	m.StateChanged(state.Event{Camera: "drive", Region: "gate"})
	m.LabelsEvent("drive", labels.Loaded)
	m.ConfigReloaded(true)
	_, body := scrape(t, srv.URL)
	for _, name := range []string{"clipd_stage_duration_seconds_bucket", "clipd_state_changes_total", "clipd_gpu_power_watts"} {
		if !bytes.Contains(body, []byte(name)) {
			t.Fatalf("scrape lacks %s:\n%s", name, body)
		}
	}
	if out, err := check(body); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestConcurrentScrapesAndObservations runs scrapes beside the pipeline's
// calls; with -race it checks the locking.
func TestConcurrentScrapesAndObservations(t *testing.T) {
	m, srv := newTest(t, sampleSnapshot)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				m.ObserveFrame("drive", map[string]float64{"total": float64(j)})
				m.StateChanged(state.Event{Camera: "drive", Region: []string{"", "gate"}[i%2]})
			}
		}()
	}
	for range 5 {
		scrape(t, srv.URL)
	}
	wg.Wait()
	fams, _ := scrape(t, srv.URL)
	var n uint64
	for _, mm := range fams["clipd_stage_duration_seconds"].GetMetric() {
		n += mm.Histogram.GetSampleCount()
	}
	if n != 800 {
		t.Errorf("%d observations, want 800", n)
	}
}

func TestNewNeedsSnapshot(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a Snapshot function succeeded")
	}
}
