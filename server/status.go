package server

import (
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/telemetry"
)

// The replies to "status" and "classify", documented in docs/socket.md.

// Status is the reply to {"cmd":"status"}.
type Status struct {
	Version string             `json:"version"`
	Model   string             `json:"model"`
	Backend string             `json:"backend"`
	UptimeS float64            `json:"uptime_s"`
	Cameras []CameraStatus     `json:"cameras"`
	Clients []ClientInfo       `json:"clients"`
	GPU     telemetry.Snapshot `json:"gpu"`
	// Reload is the outcome of the last SIGHUP, absent before the first.
	Reload *ReloadStatus `json:"reload,omitempty"`
	// Process is what the daemon costs now.
	Process ProcessStatus `json:"process"`
	// The outputs, each absent when off.
	Snapshots *snapshot.Stats `json:"snapshots,omitempty"`
	MQTT      *mqtt.Status    `json:"mqtt,omitempty"`
	History   *history.Status `json:"history,omitempty"`
	// Events is how many state changes each target has had, by
	// "camera" or "camera/region".
	Events map[string]uint64 `json:"events,omitempty"`
}

// ProcessStatus is the daemon's own footprint.
type ProcessStatus struct {
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"`
	RSSBytes   uint64 `json:"rss_bytes"`
	FDs        int    `json:"fds"`
}

// ReloadStatus says what the last reload did.
type ReloadStatus struct {
	Time string `json:"time"`
	OK   bool   `json:"ok"`
	// Errors lists what could not be applied; the cameras concerned kept
	// running with their previous settings and are retried at the next
	// reload.
	Errors []string `json:"errors,omitempty"`
}

// CameraStatus is one camera in the status reply.
type CameraStatus struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	// State is CameraStarting, CameraRunning, CameraRetrying or
	// CameraEnded.
	State  string `json:"state"`
	Format string `json:"format,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	// CaptureFPS is the rate frames come from the source and
	// ClassifiedPerS the rate they are classified, over the last 5 s.
	CaptureFPS     float64 `json:"capture_fps"`
	ClassifiedPerS float64 `json:"classified_per_s"`
	// FPS is ClassifiedPerS under its old name, kept for one release.
	//
	// Deprecated: use ClassifiedPerS (or CaptureFPS, the source's rate).
	FPS         float64 `json:"fps"`
	Captured    uint64  `json:"captured"`
	Classified  uint64  `json:"classified"`
	Dropped     uint64  `json:"dropped"`
	Skipped     uint64  `json:"skipped"`
	Corrupt     uint64  `json:"corrupt"`
	BelowThresh uint64  `json:"below_threshold"`
	Restarts    uint64  `json:"restarts"`
	// NonFinite counts frames whose embedding or scores were not finite
	// numbers (a broken model): reported as errors, never as results.
	NonFinite uint64 `json:"non_finite"`
	LastError string `json:"last_error,omitempty"`
	// LastErrorTime is when LastError happened (RFC 3339).
	LastErrorTime string `json:"last_error_time,omitempty"`
	LabelsFile    string `json:"labels_file"`
	LabelsVersion uint64 `json:"labels_version"`
	Labels        int    `json:"labels"`
	// LabelsError says why the labels file as it is on disk now is not in
	// use ("home.labels:7: duplicate label ..."), while the previous
	// version is; absent when the file in use is the one on disk.
	LabelsError string                    `json:"labels_error,omitempty"`
	LatencyMS   map[string]LatencySummary `json:"latency_ms,omitempty"`
	// PreprocessPriority is the CPU priority the camera's preprocessing
	// runs at, as the kernel reports it: "idle" or "normal" ([model]
	// capture_priority; normal after it was starved at idle).
	PreprocessPriority string `json:"preprocess_priority,omitempty"`
	// WholeFrame is false when only the regions are classified (the
	// labels fields above are then empty).
	WholeFrame bool           `json:"whole_frame"`
	Regions    []RegionStatus `json:"regions,omitempty"`
	// FrameState is the whole frame's state (package state: the label
	// that holds, since when); absent until one is established.
	FrameState *state.Current `json:"frame_state,omitempty"`
}

// RegionStatus is one region of a camera.
type RegionStatus struct {
	Name string `json:"name"`
	// Box is the region in pixels of the frames classified last
	// (x1, y1, x2, y2); absent before the first frame.
	Box           *[4]int `json:"box,omitempty"`
	LabelsFile    string  `json:"labels_file"`
	LabelsVersion uint64  `json:"labels_version"`
	Labels        int     `json:"labels"`
	// LabelsError is as the camera's, for the region's own labels file.
	LabelsError string `json:"labels_error,omitempty"`
	Classified  uint64 `json:"classified"`
	BelowThresh uint64 `json:"below_threshold"`
	// LatencyMS is capture to result of the region's results.
	LatencyMS *LatencySummary `json:"latency_ms,omitempty"`
	// Error says why the region is not classified in the current frames
	// (a pixel box beyond a stream's own size).
	Error string `json:"error,omitempty"`
	// State is the region's state and since when; absent until one is
	// established.
	State *state.Current `json:"state,omitempty"`
}

// LatencySummary is over the last frames of one stage.
type LatencySummary struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// ClassifyReply is the reply to {"cmd":"classify"}.
type ClassifyReply struct {
	Top           []engine.Match `json:"top"`
	LabelsVersion uint64         `json:"labels_version,omitempty"`
	LatencyMS     float64        `json:"latency_ms"`
}
