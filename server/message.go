package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/state"
)

// Hello is the first line every client receives.
type Hello struct {
	Version string   `json:"version"`
	Model   string   `json:"model"`
	Backend string   `json:"backend,omitempty"`
	Cameras []string `json:"cameras"`
}

// Event is something the pipeline publishes to subscribed clients: *Result,
// *LabelsUpdate, *ErrorReport or *CameraState.
type Event interface {
	eventType() string
	// eventTarget names what the event concerns: camera "" for every
	// camera; perTarget when it concerns one target of the camera (its
	// whole frame, region "", or one region), rather than the camera as a
	// whole (its source, a config error).
	eventTarget() (camera, region string, perTarget bool)
	// droppable events may be discarded for a client that cannot keep up;
	// the others (label changes, errors) are rare and worth keeping.
	droppable() bool
}

// Result is the classification of one frame, or of one region of it.
type Result struct {
	Camera string `json:"camera"`
	// Region is the region classified; absent for the whole frame.
	Region        string         `json:"region,omitempty"`
	Seq           uint64         `json:"seq"`
	Time          time.Time      `json:"time"`
	LabelsVersion uint64         `json:"labels_version"`
	Top           []engine.Match `json:"top"`
	// LatencyMS breaks the time from capture to result into stages, e.g.
	// "preprocess", "encode", "total".
	LatencyMS map[string]float64 `json:"latency_ms,omitempty"`
	// Truth is what the synthetic camera drew in the frame (synth.Truth);
	// absent for real cameras. Tests and demos compare it with Top.
	Truth any `json:"truth,omitempty"`
}

// LabelsUpdate announces the label set now used for a camera's whole
// frame, or for one region (Region).
type LabelsUpdate struct {
	Camera  string   `json:"camera,omitempty"`
	Region  string   `json:"region,omitempty"`
	File    string   `json:"file,omitempty"`
	Version uint64   `json:"version"`
	Labels  []string `json:"labels"`
}

// ErrorReport tells clients about a problem in the daemon, e.g. a labels
// file that failed to reload.
type ErrorReport struct {
	Camera string `json:"camera,omitempty"`
	// Region, when set, is the region the problem concerns (its labels).
	Region  string `json:"region,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// StateEvent is a change of a target's state (package state): the label
// that now holds, the one before, the snapshot of the frame that decided.
type StateEvent struct {
	state.Event
}

func (*StateEvent) eventType() string { return "event" }
func (e *StateEvent) eventTarget() (string, string, bool) {
	return e.Camera, e.Region, true
}
func (*StateEvent) droppable() bool { return false }

func (*Result) eventType() string                           { return "result" }
func (r *Result) eventTarget() (string, string, bool)       { return r.Camera, r.Region, true }
func (*Result) droppable() bool                             { return true }
func (*LabelsUpdate) eventType() string                     { return "labels" }
func (l *LabelsUpdate) eventTarget() (string, string, bool) { return l.Camera, l.Region, true }
func (*LabelsUpdate) droppable() bool                       { return false }
func (*ErrorReport) eventType() string                      { return "error" }
func (e *ErrorReport) eventTarget() (string, string, bool)  { return e.Camera, e.Region, e.Region != "" }
func (*ErrorReport) droppable() bool                        { return false }
func (*CameraState) eventType() string                      { return "camera" }
func (c *CameraState) eventTarget() (string, string, bool)  { return c.Camera, "", false }
func (*CameraState) droppable() bool                        { return false }

// Camera states, in CameraState and CameraStatus.
const (
	// CameraStarting: the source is opened and has not delivered a frame
	// yet, nor failed.
	CameraStarting = "starting"
	// CameraRunning: the source delivers frames.
	CameraRunning = "running"
	// CameraRetrying: the source failed (a device unplugged or missing, a
	// stream down) and is being reopened; no frame has come since.
	CameraRetrying = "retrying"
	// CameraEnded: a file source played to its end (loop = false).
	CameraEnded = "ended"
)

// CameraState announces that a camera's state changed (to running,
// retrying or ended), so that clients see a camera go down without asking
// for status.
type CameraState struct {
	Camera string `json:"camera"`
	State  string `json:"state"`
	// Error is why the source is retrying.
	Error string `json:"error,omitempty"`
}

// Command is one line a client sends. The same struct is used by Client to
// write commands and by the server to read them.
type Command struct {
	// ID is echoed in the reply; any JSON value.
	ID  json.RawMessage `json:"id,omitempty"`
	Cmd string          `json:"cmd"`
	// Cameras for "subscribe": "drive" (everything of that camera),
	// "drive/gate" (one region, and what concerns the camera as a whole),
	// "drive/" (the whole frame only, likewise); empty means all.
	Cameras []string `json:"cameras,omitempty"`
	// Image (a path readable by the daemon) or ImageB64 for "classify".
	Image    string `json:"image,omitempty"`
	ImageB64 string `json:"image_b64,omitempty"`
	// Camera selects that camera's label set; Labels gives ad-hoc labels.
	Camera string   `json:"camera,omitempty"`
	Labels []string `json:"labels,omitempty"`
	TopK   int      `json:"top_k,omitempty"`
	// Search, for "search": its fields beside the ones above (image,
	// image_b64, camera, cameras); see SearchRequest.
	Text     string   `json:"text,omitempty"`
	Label    string   `json:"label,omitempty"`
	Region   string   `json:"region,omitempty"`
	Since    string   `json:"since,omitempty"`
	Until    string   `json:"until,omitempty"`
	K        int      `json:"k,omitempty"`
	MinScore *float32 `json:"min_score,omitempty"`
	Frames   bool     `json:"frames,omitempty"`
}

// ClassifyRequest is a validated "classify" command: exactly one of
// ImagePath and ImageData is set, and at most one of Camera and Labels.
type ClassifyRequest struct {
	ImagePath string
	ImageData []byte
	Camera    string
	Labels    []string
	TopK      int
}

// Handler answers the commands that need the daemon.
type Handler interface {
	// Status returns what the "status" command replies with, as JSON data.
	Status() any
	// Classify runs one request. ctx ends when the client disconnects or
	// the server closes; Close waits for Classify to return.
	Classify(ctx context.Context, req ClassifyRequest) (any, error)
	// Snapshot returns the latest frame of a camera ("cam", or
	// "cam/region" to outline the region) as a SnapshotReply.
	Snapshot(ctx context.Context, target string) (any, error)
	// Search runs a validated search of the camera memory; an image the
	// request named is in ImageData.
	Search(ctx context.Context, req SearchRequest) (any, error)
}

// SnapshotReply is the reply to {"cmd":"snapshot"}.
type SnapshotReply struct {
	Camera string    `json:"camera"`
	Region string    `json:"region,omitempty"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	// JPEG is the picture; encoding/json writes it as standard base64.
	JPEG []byte `json:"jpeg_b64"`
}

// Message is one line received by a Client.
type Message struct {
	Type string `json:"type"`
	// ID echoes the command's id in "reply" and "error" lines.
	ID json.RawMessage `json:"id,omitempty"`
	// Cmd names the command a "reply" or command "error" answers.
	Cmd    string `json:"cmd,omitempty"`
	Camera string `json:"camera,omitempty"`
	// Message is the text of an "error".
	Message string `json:"message,omitempty"`
	// Count is the number of messages a "dropped" line reports lost.
	Count uint64 `json:"count,omitempty"`
	// Data is the payload of a "reply".
	Data json.RawMessage `json:"data,omitempty"`
	// Raw is the whole line, for Decode or printing.
	Raw json.RawMessage `json:"-"`
}

// Decode unmarshals the whole line into v, e.g. a *Result or *Hello.
func (m *Message) Decode(v any) error {
	return json.Unmarshal(m.Raw, v)
}

// reply and commandError are the server's answers to commands.
type reply struct {
	ID   json.RawMessage `json:"id,omitempty"`
	Cmd  string          `json:"cmd"`
	Data any             `json:"data"`
}

type commandError struct {
	ID      json.RawMessage `json:"id,omitempty"`
	Cmd     string          `json:"cmd,omitempty"`
	Message string          `json:"message"`
}

type droppedNotice struct {
	Count uint64 `json:"count"`
}

// encodeLine marshals v with a leading "type" field and a newline, the wire
// form of every server message. Marshalling once per Publish, not per
// client, keeps fan-out cheap.
func encodeLine(typ string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s message: %w", typ, err)
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("encoding %s message: not a JSON object", typ)
	}
	var b bytes.Buffer
	b.Grow(len(body) + len(typ) + 12)
	b.WriteString(`{"type":`)
	t, _ := json.Marshal(typ)
	b.Write(t)
	if len(body) > 2 {
		b.WriteByte(',')
	}
	b.Write(body[1:])
	b.WriteByte('\n')
	return b.Bytes(), nil
}
