// Package metrics exports clipd's state in Prometheus' text format
// (docs/http.md lists every metric). Counters and gauges are read at
// scrape time from the same snapshot the socket's status command replies
// with, so /metrics and `clipd status` never disagree; what status cannot
// give (a histogram of stage durations, state changes, label reloads) the
// daemon reports as it happens through the observation methods.
//
// A Metrics has no goroutine of its own: scrapes run on the HTTP
// listener's, and the observation methods are safe for concurrent use
// from any pipeline goroutine and cost a few atomic adds each.
package metrics

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/labels"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
)

// Snapshot is what one scrape reads: the daemon's status reply and the
// status of the optional components, nil when they are off.
type Snapshot struct {
	Status server.Status
	// CameraUp says, per camera name, whether its source delivers frames:
	// the daemon sets it by the rule of MQTT's P/CAMERA/status (running is
	// up; starting, retrying and ended are down). A camera missing from it
	// has no clipd_camera_up series: unknown is not down.
	CameraUp  map[string]bool
	MQTT      *mqtt.Status
	History   *history.Status
	Snapshots *snapshot.Stats
}

// StageBuckets are the bounds of clipd_stage_duration_seconds: from
// half a millisecond (a score) to ten seconds (a CPU encode of a large
// model on a loaded box).
var StageBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// maxLabelValue bounds the label values the daemon passes in, so that a
// bug cannot turn a metric into an unbounded one.
const maxLabelValue = 128

// Metrics is clipd's Prometheus registry.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	stages  *prometheus.HistogramVec
	changes *prometheus.CounterVec
	labels  *prometheus.CounterVec
	reloads *prometheus.CounterVec
	statusC *statusCollector
}

// Options configure New.
type Options struct {
	// Snapshot is called once per scrape; it must be safe for concurrent
	// use and should not block for long (a scrape waits for it).
	Snapshot func() Snapshot
	// Log receives errors of scrapes (a client that went away); nil
	// discards them.
	Log *slog.Logger
}

// New builds the registry. It fails only on a missing Snapshot.
func New(opts Options) (*Metrics, error) {
	if opts.Snapshot == nil {
		return nil, errors.New("metrics: no Snapshot function")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clipd_stage_duration_seconds",
			Help:    "Time each classified frame spent in a pipeline stage (capture, preprocess, queue, encode, score, total).",
			Buckets: StageBuckets,
		}, []string{"camera", "stage"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clipd_state_changes_total",
			Help: "State changes (events) of a target; region is empty for the camera's whole frame.",
		}, []string{"camera", "region"}),
		labels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clipd_label_reloads_total",
			Help: "Loads of a camera's labels file by result: loaded (swapped in, the first load included), failed (previous set kept), removed (file gone, previous set kept).",
		}, []string{"camera", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clipd_config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result: ok, or failed when some part could not be applied.",
		}, []string{"result"}),
		statusC: newStatusCollector(opts.Snapshot),
	}
	for _, c := range []prometheus.Collector{
		m.stages, m.changes, m.labels, m.reloads, m.statusC,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	// A reload that has never failed reads 0, not absent.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogAdapter{log},
		ErrorHandling: promhttp.ContinueOnError,
		// Each scrape reads the status; a flood of them must not pile up.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return m, nil
}

type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	a.log.Warn("metrics scrape", "err", v)
}

// Handler serves the registry in the Prometheus text (or protobuf, when
// asked) format, for GET /metrics.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Gatherer is the registry, for tests and for other exporters.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// ObserveFrame records one classified frame's stage durations, as the
// daemon puts them in a result's latency_ms (milliseconds by stage name).
// Negative durations (a camera clock ahead of the host's) count as zero;
// values that are not numbers are left out.
func (m *Metrics) ObserveFrame(camera string, latencyMS map[string]float64) {
	if !okLabel(camera) {
		return
	}
	for stage, ms := range latencyMS {
		if !okLabel(stage) || math.IsNaN(ms) || math.IsInf(ms, 0) {
			continue
		}
		m.stages.WithLabelValues(camera, stage).Observe(max(ms, 0) / 1000)
	}
}

// StateChanged counts one event.
func (m *Metrics) StateChanged(ev state.Event) {
	if !okLabel(ev.Camera) || !okLabel(ev.Region) {
		return
	}
	m.changes.WithLabelValues(ev.Camera, ev.Region).Inc()
}

// AddTargets makes a camera's state-change series exist at zero before
// its first event, so that rate() sees the first one; region "" is the
// whole frame.
func (m *Metrics) AddTargets(camera string, regions ...string) {
	if !okLabel(camera) {
		return
	}
	for _, r := range regions {
		if okLabel(r) {
			m.changes.WithLabelValues(camera, r)
		}
	}
}

// LabelsEvent counts one outcome of a camera's labels watcher.
func (m *Metrics) LabelsEvent(camera string, kind labels.EventKind) {
	var result string
	switch kind {
	case labels.Loaded, labels.Failed, labels.Removed:
		result = kind.String()
	default:
		return
	}
	if !okLabel(camera) {
		return
	}
	m.labels.WithLabelValues(camera, result).Inc()
}

// ConfigReloaded counts one SIGHUP: ok when every part of the new
// configuration was applied.
func (m *Metrics) ConfigReloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// RemoveCamera drops the observed series of a camera a reload removed
// (those read from the status go with it by themselves).
func (m *Metrics) RemoveCamera(camera string) {
	match := prometheus.Labels{"camera": camera}
	m.stages.DeletePartialMatch(match)
	m.changes.DeletePartialMatch(match)
	m.labels.DeletePartialMatch(match)
}

func okLabel(s string) bool { return len(s) <= maxLabelValue }

// statusCollector turns a Snapshot into metrics at scrape time.
type statusCollector struct {
	snapshot func() Snapshot

	// Socket clients come and go, each with its own drop count; the
	// counter adds the last count seen of every client gone to those of
	// the clients connected now, so that it never decreases.
	mu          sync.Mutex
	clientDrops map[uint64]uint64
	retired     uint64
}

func newStatusCollector(f func() Snapshot) *statusCollector {
	return &statusCollector{snapshot: f, clientDrops: map[uint64]uint64{}}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descBuildInfo = desc("clipd_build_info", "Always 1; the labels name clipd's version and the encoder backend in use.", "version", "backend")

	descCaptured    = desc("clipd_frames_captured_total", "Good frames a camera's source delivered (status captured).", "camera")
	descClassified  = desc("clipd_frames_classified_total", "Frames encoded and scored (status classified).", "camera")
	descDropped     = desc("clipd_frames_dropped_total", "Frames not classified, by reason: overtaken (a newer frame replaced it; status dropped), classify_every (not due; status skipped), corrupt (unusable data; status corrupt), non_finite (the model gave no finite embedding; status non_finite).", "camera", "reason")
	descBelow       = desc("clipd_frames_below_threshold_total", "Classified frames whose top score was below the camera's threshold, so not published (status below_threshold).", "camera")
	descRestarts    = desc("clipd_camera_restarts_total", "Reopenings of a camera's source after a failure, a stall or an exit (status restarts).", "camera")
	descUp          = desc("clipd_camera_up", "1 while a camera's source delivers frames, else 0.", "camera")
	descLabelCount  = desc("clipd_labels", "Labels in a camera's current label set.", "camera")
	descLabelsVer   = desc("clipd_labels_version", "Version of a camera's current label set (it grows with every successful reload).", "camera")
	descClients     = desc("clipd_socket_clients", "Clients connected to the unix socket.")
	descClientDrops = desc("clipd_socket_dropped_messages_total", "Messages dropped for socket clients that did not read fast enough.")

	descMQTTConnected = desc("clipd_mqtt_connected", "1 while connected to the MQTT broker, else 0; absent when MQTT is off.")
	descMQTTDropped   = desc("clipd_mqtt_dropped_messages_total", "MQTT events and results dropped: the queue was full while the broker was away, or the payload was over its size limit.")
	descMQTTPublished = desc("clipd_mqtt_published_messages_total", "MQTT messages the broker accepted (PUBACK at QoS 1).")
	descMQTTQueued    = desc("clipd_mqtt_queued_messages", "MQTT messages waiting to be sent.")

	descHistRecords = desc("clipd_history_records", "Embeddings kept in the camera memory.")
	descHistThumbs  = desc("clipd_history_thumbnails", "Thumbnails kept in the camera memory.")
	descHistBytes   = desc("clipd_history_bytes", "Bytes of the camera memory's segment files (embeddings and thumbnails).")
	descHistMax     = desc("clipd_history_max_bytes", "The camera memory's max_bytes; the oldest segments go beyond it.")
	descHistPaused  = desc("clipd_history_paused", "1 while the camera memory is paused because writes fail (a full disk), else 0.")
	descHistPauses  = desc("clipd_history_pauses_total", "Times the camera memory paused.")
	descHistStored  = desc("clipd_history_stored_records_total", "Records written to the camera memory.")
	descHistDropped = desc("clipd_history_dropped_records_total", "Records lost before the camera memory stored them, by reason: queue_full, paused, invalid.", "reason")
	descHistQueued  = desc("clipd_history_queued_bytes", "Bytes of records waiting for the camera memory's writer.")
	descHistOldest  = desc("clipd_history_oldest_record_timestamp_seconds", "Capture time of the oldest record kept, in Unix seconds.")
	descSnapWritten = desc("clipd_snapshots_written_total", "Snapshot JPEGs written.")
	descSnapDropped = desc("clipd_snapshots_dropped_total", "Snapshots dropped because the writer's queue was full.")
	descSnapFailed  = desc("clipd_snapshots_failed_total", "Snapshots that could not be encoded or written.")
	descSnapFiles   = desc("clipd_snapshot_files", "Snapshot files in the snapshot directory.")
	descSnapBytes   = desc("clipd_snapshot_bytes", "Bytes of the snapshot files.")
	descGPUTemp     = desc("clipd_gpu_temperature_celsius", "GPU temperature; absent when the hardware does not report it.", "gpu", "name")
	descGPUUtil     = desc("clipd_gpu_utilization_ratio", "GPU load, 0 to 1; absent when the hardware does not report it.", "gpu", "name")
	descGPUMemUsed  = desc("clipd_gpu_memory_used_bytes", "GPU memory in use (on Jetson boards, the shared RAM in use); absent when not reported.", "gpu", "name")
	descGPUMemTotal = desc("clipd_gpu_memory_total_bytes", "GPU memory in all; absent when not reported.", "gpu", "name")
	descGPUPower    = desc("clipd_gpu_power_watts", "GPU power draw (on Orin, the GPU and SoC rail); absent when not reported.", "gpu", "name")
	allStatusDescs  = []*prometheus.Desc{descBuildInfo, descCaptured, descClassified, descDropped, descBelow, descRestarts, descUp, descLabelCount, descLabelsVer, descClients, descClientDrops, descMQTTConnected, descMQTTDropped, descMQTTPublished, descMQTTQueued, descHistRecords, descHistThumbs, descHistBytes, descHistMax, descHistPaused, descHistPauses, descHistStored, descHistDropped, descHistQueued, descHistOldest, descSnapWritten, descSnapDropped, descSnapFailed, descSnapFiles, descSnapBytes, descGPUTemp, descGPUUtil, descGPUMemUsed, descGPUMemTotal, descGPUPower}
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allStatusDescs {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	// One scrape at a time reads the status, so that the client drop
	// counter sees snapshots in order.
	c.mu.Lock()
	snap := c.snapshot()
	st := &snap.Status
	clientDrops := c.clientDropTotal(st.Clients)
	c.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(descBuildInfo, 1, st.Version, st.Backend)
	for i := range st.Cameras {
		cam := &st.Cameras[i]
		n := cam.Name
		counter(descCaptured, cam.Captured, n)
		counter(descClassified, cam.Classified, n)
		counter(descDropped, cam.Dropped, n, "overtaken")
		counter(descDropped, cam.Skipped, n, "classify_every")
		counter(descDropped, cam.Corrupt, n, "corrupt")
		counter(descDropped, cam.NonFinite, n, "non_finite")
		counter(descBelow, cam.BelowThresh, n)
		counter(descRestarts, cam.Restarts, n)
		if up, ok := snap.CameraUp[n]; ok {
			gauge(descUp, boolValue(up), n)
		}
		gauge(descLabelCount, float64(cam.Labels), n)
		gauge(descLabelsVer, float64(cam.LabelsVersion), n)
	}
	gauge(descClients, float64(len(st.Clients)))
	counter(descClientDrops, clientDrops)

	if q := snap.MQTT; q != nil {
		gauge(descMQTTConnected, boolValue(q.Connected))
		counter(descMQTTDropped, q.Dropped)
		counter(descMQTTPublished, q.Published)
		gauge(descMQTTQueued, float64(q.Queued))
	}
	if h := snap.History; h != nil {
		gauge(descHistRecords, float64(h.Records))
		gauge(descHistThumbs, float64(h.Thumbnails))
		gauge(descHistBytes, float64(h.Bytes))
		gauge(descHistMax, float64(h.MaxBytes))
		gauge(descHistPaused, boolValue(h.Paused))
		counter(descHistPauses, h.Pauses)
		counter(descHistStored, h.Stored)
		counter(descHistDropped, h.Dropped, "queue_full")
		counter(descHistDropped, h.DroppedPaused, "paused")
		counter(descHistDropped, h.Invalid, "invalid")
		gauge(descHistQueued, float64(h.QueuedBytes))
		if !h.Oldest.IsZero() {
			gauge(descHistOldest, float64(h.Oldest.UnixNano())/1e9)
		}
	}
	if s := snap.Snapshots; s != nil {
		counter(descSnapWritten, s.Written)
		counter(descSnapDropped, s.Dropped)
		counter(descSnapFailed, s.Failed)
		gauge(descSnapFiles, float64(s.Files))
		gauge(descSnapBytes, float64(s.Bytes))
	}
	for _, g := range st.GPU.GPUs {
		idx := strconv.Itoa(g.Index)
		if g.TemperatureC != nil {
			gauge(descGPUTemp, *g.TemperatureC, idx, g.Name)
		}
		if g.UtilizationPct != nil {
			gauge(descGPUUtil, *g.UtilizationPct/100, idx, g.Name)
		}
		if g.MemoryUsedBytes != nil {
			gauge(descGPUMemUsed, float64(*g.MemoryUsedBytes), idx, g.Name)
		}
		if g.MemoryTotalBytes != nil {
			gauge(descGPUMemTotal, float64(*g.MemoryTotalBytes), idx, g.Name)
		}
		if g.PowerW != nil {
			gauge(descGPUPower, *g.PowerW, idx, g.Name)
		}
	}
}

// clientDropTotal is the socket's drop counter: the drops of connected
// clients plus the last count seen of each client since gone. Drops of a
// client between the last scrape and its disconnect are not seen. The
// caller holds c.mu.
func (c *statusCollector) clientDropTotal(clients []server.ClientInfo) uint64 {
	now := make(map[uint64]uint64, len(clients))
	var sum uint64
	for _, cl := range clients {
		// A client's count never goes back; max keeps the counter
		// monotonic whatever a snapshot says.
		d := max(cl.Dropped, c.clientDrops[cl.ID])
		now[cl.ID] = d
		sum += d
	}
	for id, d := range c.clientDrops {
		if _, ok := now[id]; !ok {
			c.retired += d
		}
	}
	c.clientDrops = now
	return c.retired + sum
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
