// Package config reads clipd's TOML configuration file.
//
// The file has seven tables and an array of cameras: [model], [socket] and
// [log] below; [snapshots] and [history] (see Snapshots, History) and
// [mqtt] and [http] (packages mqtt and web) in config/clipd.example.toml,
// which shows every key at its default. Every key is optional
// except, for each camera, name, source and labels. Relative paths are
// resolved against the directory of the configuration file, so a config and
// its label files can be moved together.
//
//	[model]
//	bundle          = "models/demo"        model bundle directory (path)
//	backend         = "auto"               auto | tensorrt | onnxruntime
//	onnxruntime_lib = ""                   libonnxruntime.so.1 to load (path); "" = $CLIPD_ONNXRUNTIME_LIB, then the loader's search
//	engine_cache    = "/var/cache/clipd"   where built TensorRT engines are kept (path)
//	state_dir       = "/var/lib/clipd"     where prompt embeddings are cached (path), in prompt-cache/
//	prompt_cache_max = "1GiB"              bound on the prompt cache: a size ("512MiB", "2GB") or an
//	                                       integer of bytes; 0 turns the cache off, else at least 1MiB
//	max_batch       = 8                    TensorRT optimization profile maximum, 1..256
//	threads         = 0                    ONNX Runtime intra-op threads, 0 = all cores, 0..1024
//	spinning        = false                ONNX Runtime threads busy-wait for work between calls
//	capture_priority = "auto"              CPU priority of capture helpers and preprocessing: auto | idle | normal;
//	                                       auto = idle with ONNX Runtime (they run in the encoder's gaps), else normal
//
//	[socket]
//	path         = "/run/clipd/clipd.sock" results socket (path)
//	mode         = "0660"                  permission bits, an octal string, at most 0777
//	group        = ""                      group to chown the socket to; "" = leave it
//	max_clients  = 64                      connected clients at once, 1..65536
//	client_queue = 256                     results queued per client before the oldest are dropped, 1..1048576
//	classify_dirs = []                     directories whose image files classify may read (paths); none by default
//	max_image_pixels = 100000000           largest image classify decodes, 1..1000000000
//
//	[log]
//	level  = "info"                        debug | info | warn | error
//	format = "text"                        text | json
//
//	[[camera]]
//	name           = "front"               required, unique, [a-z0-9_-]+, at most 64 bytes
//	source         = "/dev/video0"         required: /dev/… device, rtsp(s)://, http(s)://, rtmp(s)://,
//	                                       srt://, udp://, tcp://, a file path, "gst:" and a GStreamer
//	                                       pipeline, or "pattern" (package capture decides, see capture.KindOf)
//	format         = "auto"                auto | mjpeg | yuyv | nv12 | rgb24, as the source kind allows
//	                                       (devices: mjpeg, yuyv, nv12; gst: nv12, yuyv, rgb24; pattern: rgb24)
//	width          = 1280                  even, 1..8192, give both or neither; for rtsp/http/file
//	height         = 720                   sources the default is the stream's own size
//	                                       (decoded: at most 720 lines, aspect ratio kept)
//	fps            = 30                    1..240; rtsp/http/file sources: at most 2/classify_every
//	labels         = "labels/home.labels"     required, label file (path); Load checks that it exists
//	classify_every = "200ms"               interval between classified frames (a frame up to 5% early
//	                                       is taken), a Go duration string ("200ms", "1s"), or 0 / "0s"
//	                                       for every frame
//	top_k          = 5                     labels published per result, 1..1000
//	threshold      = 0.0                   results whose top score is below are not published, 0..1
//	loop           = false                 replay a file source from the start when it ends
//
// A file with no camera is refused by Load (and so by check and reload).
//
// Decoding is strict: unknown keys, wrong types and invalid values are
// errors of type *Error naming the file, the line and the full key path,
// e.g. "clipd.toml:14: camera[1].fps: must be between 1 and 240, got 0".
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/safefile"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/web"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/frame"
)

// Config is a validated configuration with every path absolute or, when
// parsed without a file name, relative to the working directory.
type Config struct {
	Model     Model
	Socket    Socket
	Log       Log
	Snapshots Snapshots
	History   History
	// MQTT is off while MQTT.Broker is empty.
	MQTT mqtt.Config
	// HTTP, the metrics, health and page listener, is off while
	// HTTP.Listen is empty.
	HTTP    web.Config
	Cameras []Camera
}

// Model is the [model] table.
type Model struct {
	Bundle         string
	Backend        string
	ONNXRuntimeLib string
	EngineCache    string
	MaxBatch       int
	Threads        int
	// Spinning lets ONNX Runtime's intra-op threads busy-wait.
	Spinning bool
	// CapturePriority is CapturePriorityAuto or a sched.Priority's name:
	// the CPU priority of capture helpers and frame preprocessing.
	CapturePriority string
	// StateDir holds the prompt cache (package promptcache).
	StateDir string
	// PromptCacheMax bounds the prompt cache in bytes; 0 disables it.
	PromptCacheMax int64
}

// Socket is the [socket] table.
type Socket struct {
	Path        string
	Mode        os.FileMode
	Group       string
	MaxClients  int
	ClientQueue int
	// ClassifyDirs are the directories whose images clients may name in
	// classify (absolute after resolution); none by default.
	ClassifyDirs []string
	// MaxImagePixels bounds an image a client sends for classify.
	MaxImagePixels int
}

// Equal compares two [socket] tables.
func (s Socket) Equal(o Socket) bool {
	return s.Path == o.Path && s.Mode == o.Mode && s.Group == o.Group && s.MaxClients == o.MaxClients &&
		s.ClientQueue == o.ClientQueue && slices.Equal(s.ClassifyDirs, o.ClassifyDirs) && s.MaxImagePixels == o.MaxImagePixels
}

// Log is the [log] table.
type Log struct {
	Level  string
	Format string
}

// SlogLevel is Level as log/slog's; Parse admits only levels it knows, so
// the fallback to info is for a Log built by hand.
func (l Log) SlogLevel() slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return level
}

// Camera is one [[camera]] entry.
type Camera struct {
	Name   string
	Source string
	// Format is "auto" or a name accepted by frame.ParseFormat.
	Format        string
	Width         int
	Height        int
	FPS           int
	Labels        string
	ClassifyEvery time.Duration
	TopK          int
	Threshold     float64
	Loop          bool
	// RegionsOnly (whole_frame = false) classifies the regions and not
	// the whole frame; the zero value classifies the whole frame.
	RegionsOnly bool
	Regions     []Region
	// StateHold is how long a label must stay on top before it is the
	// camera's state (package state); the regions' default.
	StateHold time.Duration
}

// Region is one [[camera.region]]: a named crop of the camera's frame,
// classified with its own labels, threshold and top_k (the camera's unless
// given).
type Region struct {
	Name string
	// Exactly one of Rect (fractions of the frame) and Box (pixels) is set.
	Rect      *frame.Rect
	Box       *frame.Box
	Labels    string
	Threshold float64
	TopK      int
	StateHold time.Duration
}

// BoxIn is the region's box in a width×height frame, or why it has none
// there (a pixel box beyond a stream's own size, a rect that maps to fewer
// than frame.MinSide pixels).
func (r Region) BoxIn(width, height int) (frame.Box, error) {
	if r.Rect != nil {
		return r.Rect.Box(width, height)
	}
	return *r.Box, r.Box.ValidateIn(width, height)
}

// SourceKind says how a camera's frames are obtained (already validated
// by Parse); package capture owns the rules.
func (c Camera) SourceKind() capture.Kind {
	k, _ := capture.KindOf(c.Source)
	return k
}

// PixelFormat returns the requested pixel format, or ok=false for "auto".
func (c Camera) PixelFormat() (f frame.Format, ok bool) {
	f, err := frame.ParseFormat(c.Format)
	return f, err == nil
}

// Capture is the camera's source settings as package capture takes them,
// the same for validation (config, clipd check) and for opening.
func (c Camera) Capture() capture.Config {
	format, _ := c.PixelFormat()
	return capture.Config{Name: c.Name, Source: c.Source, Format: format,
		Width: c.Width, Height: c.Height, FPS: c.FPS, Loop: c.Loop}
}

// Defaults for keys that are not written in the file.
const (
	DefaultCameraFormat    = "auto"
	DefaultCameraFPS       = 30
	DefaultClassifyEvery   = 200 * time.Millisecond
	DefaultTopK            = 5
	DefaultCameraThreshold = 0.0
)

// CapturePriorityAuto leaves [model] capture_priority to the backend:
// idle where the encoder runs on the CPU, normal where it does not.
const CapturePriorityAuto = "auto"

// Default returns the configuration of an empty file (no cameras), with
// paths as written in the documentation, before resolution.
func Default() *Config {
	c := &Config{
		Model: Model{
			Bundle:      "models/demo",
			Backend:     engine.BackendAuto,
			EngineCache: "/var/cache/clipd",
			MaxBatch:    8,
			Threads:     0,
			Spinning:    false,

			CapturePriority: CapturePriorityAuto,

			StateDir:       "/var/lib/clipd",
			PromptCacheMax: 1 << 30,
		},
		Socket: Socket{
			Path:           "/run/clipd/clipd.sock",
			Mode:           0o660,
			MaxClients:     64,
			ClientQueue:    256,
			MaxImagePixels: 100_000_000,
		},
		Log: Log{Level: "info", Format: "text"},
		// Directories under state_dir follow it when it is changed; the
		// values here are those of the default state_dir.
		Snapshots: Snapshots{Dir: "/var/lib/clipd/snapshots", MaxFiles: DefaultSnapshotMaxFiles, MaxBytes: DefaultSnapshotMaxBytes},
		History: History{Dir: "/var/lib/clipd/history", Every: DefaultHistoryEvery, Retention: DefaultHistoryRetention,
			MaxBytes: DefaultHistoryMaxBytes, ThumbnailEvery: DefaultHistoryThumbnailEvery},
		MQTT: mqtt.Defaults(),
		HTTP: web.Defaults(),
	}
	c.Socket.ClassifyDirs = []string{c.Snapshots.Dir}
	return c
}

// Error is one problem in a configuration file. Line is 0 when the problem
// has no place in the file (a missing required key in an empty document).
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one file, in file order as far as the
// checks allow; Parse returns it so that a user fixes a file in one pass.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find the individual *Error values.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// MaxFileBytes bounds a configuration file; real ones are a few KiB.
const MaxFileBytes = 1 << 20

// Load reads and parses the file at path, then checks what only the
// filesystem can tell: that label files exist and that two device paths
// (e.g. a /dev/v4l/by-id link and /dev/video0) are not the same device.
// Every problem found is returned, as an ErrorList.
func Load(path string) (*Config, error) {
	doc, err := Inspect(path)
	if err != nil {
		return nil, err
	}
	if len(doc.Problems) > 0 {
		return nil, doc.Problems
	}
	return doc.Config, nil
}

// Document is a configuration file as clipd check sees it: what it says,
// where each key is written, and every problem Load would refuse it for.
type Document struct {
	Path string
	// Config holds the file's settings. When there are Problems, the
	// values of the keys they name are not to be used; the others are
	// valid.
	Config *Config
	// Problems are the invalid values, a file without cameras, and what
	// only the filesystem can tell (see Load), in that order.
	Problems ErrorList
	pos      *positions
}

// Inspect reads and parses path as Load does, but returns the document
// even when it has Problems, so that clipd check can go on to check the
// rest. err is set only when the file cannot be read or is not TOML of
// the expected shape (syntax, unknown keys, wrong types): then there is
// nothing to go on with.
func Inspect(path string) (*Document, error) {
	data, err := safefile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, pos, err := parse(data, path)
	var invalid ErrorList
	if err != nil && !errors.As(err, &invalid) || cfg == nil {
		return nil, err
	}
	doc := &Document{Path: path, Config: cfg, Problems: invalid, pos: pos}
	if len(cfg.Cameras) == 0 {
		// Running with no camera is never what was meant: an emptied
		// file on reload would otherwise stop every camera.
		doc.Problems = append(doc.Problems, &Error{File: path, Msg: "no [[camera]] tables: clipd needs at least one camera (see config/clipd.example.toml)"})
	}
	doc.Problems = append(doc.Problems, checkFiles(cfg, pos, path)...)
	return doc, nil
}

// At makes a problem with key located in this file: on the line key is
// written on, or its table's when it is not written (a default).
func (d *Document) At(key, format string, args ...any) *Error {
	return &Error{File: d.Path, Line: d.pos.near(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Failed reports whether a problem names key or a key inside it
// ("camera[1]" for every key of that camera).
func (d *Document) Failed(key string) bool {
	for _, e := range d.Problems {
		if e.Key == key || strings.HasPrefix(e.Key, key+".") {
			return true
		}
	}
	return false
}

// Parse decodes and validates a configuration without touching the
// filesystem. name is the file's path: it appears in errors and its
// directory is the base of relative paths.
func Parse(data []byte, name string) (*Config, error) {
	cfg, _, err := parse(data, name)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

var cameraNamePattern = regexp.MustCompile(`^[a-z0-9_-]+$`)

func checkFiles(cfg *Config, pos *positions, file string) ErrorList {
	var errs ErrorList
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	type openedDevice struct {
		name, path string
		info       os.FileInfo
	}
	var devices []openedDevice
	for i, cam := range cfg.Cameras {
		prefix := fmt.Sprintf("camera[%d].", i)
		checkLabels := func(key, path string) {
			switch st, err := os.Stat(path); {
			case path == "":
				// Missing or empty: a problem of its own already.
			case err != nil:
				add(key, "label file %s: %v", path, unwrapPathError(err))
			case st.IsDir():
				add(key, "label file %s is a directory", path)
			}
		}
		checkLabels(prefix+"labels", cam.Labels)
		for j, r := range cam.Regions {
			if r.Labels != cam.Labels {
				checkLabels(fmt.Sprintf("%sregion[%d].labels", prefix, j), r.Labels)
			}
		}
		if cam.SourceKind() != capture.KindV4L2 {
			continue
		}
		// A missing device is not an error: USB cameras come and go, and
		// the capture code waits for them.
		st, err := os.Stat(cam.Source)
		if err != nil {
			continue
		}
		for _, seen := range devices {
			if os.SameFile(seen.info, st) {
				add(prefix+"source", "%s is the same device as %s (camera %q)", cam.Source, seen.path, seen.name)
				break
			}
		}
		devices = append(devices, openedDevice{cam.Name, cam.Source, st})
	}
	return errs
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
