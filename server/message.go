package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/clipd/clipd/engine"
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
	// eventCamera is "" for events that concern every camera.
	eventCamera() string
	// droppable events may be discarded for a client that cannot keep up;
	// the others (label changes, errors) are rare and worth keeping.
	droppable() bool
}

// Result is the classification of one frame.
type Result struct {
	Camera        string         `json:"camera"`
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

// LabelsUpdate announces the label set now used for a camera.
type LabelsUpdate struct {
	Camera  string   `json:"camera,omitempty"`
	File    string   `json:"file,omitempty"`
	Version uint64   `json:"version"`
	Labels  []string `json:"labels"`
}

// ErrorReport tells clients about a problem in the daemon, e.g. a labels
// file that failed to reload.
type ErrorReport struct {
	Camera  string `json:"camera,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

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

func (*Result) eventType() string           { return "result" }
func (r *Result) eventCamera() string       { return r.Camera }
func (*Result) droppable() bool             { return true }
func (*LabelsUpdate) eventType() string     { return "labels" }
func (l *LabelsUpdate) eventCamera() string { return l.Camera }
func (*LabelsUpdate) droppable() bool       { return false }
func (*ErrorReport) eventType() string      { return "error" }
func (e *ErrorReport) eventCamera() string  { return e.Camera }
func (*ErrorReport) droppable() bool        { return false }
func (*CameraState) eventType() string      { return "camera" }
func (c *CameraState) eventCamera() string  { return c.Camera }
func (*CameraState) droppable() bool        { return false }

// Command is one line a client sends. The same struct is used by Client to
// write commands and by the server to read them.
type Command struct {
	// ID is echoed in the reply; any JSON value.
	ID  json.RawMessage `json:"id,omitempty"`
	Cmd string          `json:"cmd"`
	// Cameras for "subscribe"; empty means all.
	Cameras []string `json:"cameras,omitempty"`
	// Image (a path readable by the daemon) or ImageB64 for "classify".
	Image    string `json:"image,omitempty"`
	ImageB64 string `json:"image_b64,omitempty"`
	// Camera selects that camera's label set; Labels gives ad-hoc labels.
	Camera string   `json:"camera,omitempty"`
	Labels []string `json:"labels,omitempty"`
	TopK   int      `json:"top_k,omitempty"`
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
