package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/sched"
	"github.com/clipd/clipd/internal/suggest"
	toml "github.com/pelletier/go-toml/v2"
)

// The file* types mirror the TOML layout. Camera fields are pointers because
// go-toml appends zero-valued elements for [[camera]], so absence has to be
// seen to apply a default.
type fileConfig struct {
	Model     fileModel     `toml:"model"`
	Socket    fileSocket    `toml:"socket"`
	Log       fileLog       `toml:"log"`
	Snapshots fileSnapshots `toml:"snapshots"`
	History   fileHistory   `toml:"history"`
	MQTT      fileMQTT      `toml:"mqtt"`
	HTTP      fileHTTP      `toml:"http"`
	Camera    []fileCamera  `toml:"camera"`
}

type fileModel struct {
	Bundle          string `toml:"bundle"`
	Backend         string `toml:"backend"`
	ONNXRuntimeLib  string `toml:"onnxruntime_lib"`
	EngineCache     string `toml:"engine_cache"`
	MaxBatch        int64  `toml:"max_batch"`
	Threads         int64  `toml:"threads"`
	Spinning        bool   `toml:"spinning"`
	CapturePriority string `toml:"capture_priority"`
	StateDir        string `toml:"state_dir"`
	PromptCacheMax  any    `toml:"prompt_cache_max"` // a size string or an integer of bytes
}

type fileSocket struct {
	Path           string   `toml:"path"`
	Mode           string   `toml:"mode"`
	Group          string   `toml:"group"`
	MaxClients     int64    `toml:"max_clients"`
	ClientQueue    int64    `toml:"client_queue"`
	ClassifyDirs   []string `toml:"classify_dirs"`
	MaxImagePixels int64    `toml:"max_image_pixels"`
}

type fileLog struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

type fileCamera struct {
	Name          *string      `toml:"name"`
	Source        *string      `toml:"source"`
	Format        *string      `toml:"format"`
	Width         *int64       `toml:"width"`
	Height        *int64       `toml:"height"`
	FPS           *int64       `toml:"fps"`
	Labels        *string      `toml:"labels"`
	ClassifyEvery any          `toml:"classify_every"` // duration string or the integer 0
	TopK          *int64       `toml:"top_k"`
	Threshold     *float64     `toml:"threshold"`
	Loop          *bool        `toml:"loop"`
	StateHold     any          `toml:"state_hold"`
	WholeFrame    *bool        `toml:"whole_frame"`
	Region        []fileRegion `toml:"region"`
}

// fileRegion is one [[camera.region]]. rect and box are arrays of numbers;
// decoded as any so that [0, 0.5, 1, 1] (integers among floats) is read
// and a wrong element type is reported in the file's terms.
type fileRegion struct {
	Name      *string  `toml:"name"`
	Rect      []any    `toml:"rect"`
	Box       []any    `toml:"box"`
	Labels    *string  `toml:"labels"`
	Threshold *float64 `toml:"threshold"`
	TopK      *int64   `toml:"top_k"`
	StateHold any      `toml:"state_hold"`
}

func parse(data []byte, name string) (*Config, *positions, error) {
	pos, serr := scanPositions(data)
	if serr != nil {
		return nil, pos, ErrorList{{File: name, Line: serr.line, Msg: serr.msg}}
	}

	def := Default()
	raw := fileConfig{
		Model: fileModel{
			Bundle: def.Model.Bundle, Backend: def.Model.Backend, ONNXRuntimeLib: def.Model.ONNXRuntimeLib,
			EngineCache: def.Model.EngineCache, MaxBatch: int64(def.Model.MaxBatch), Threads: int64(def.Model.Threads),
			Spinning: def.Model.Spinning, CapturePriority: def.Model.CapturePriority,
			StateDir: def.Model.StateDir, PromptCacheMax: def.Model.PromptCacheMax,
		},
		Socket: fileSocket{
			Path: def.Socket.Path, Mode: fmt.Sprintf("%04o", def.Socket.Mode), Group: def.Socket.Group,
			MaxClients: int64(def.Socket.MaxClients), ClientQueue: int64(def.Socket.ClientQueue),
			MaxImagePixels: int64(def.Socket.MaxImagePixels),
		},
		Log: fileLog{Level: def.Log.Level, Format: def.Log.Format},
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, pos, decodeErrors(err, name, pos)
	}

	v := validator{file: name, pos: pos, dir: filepath.Dir(name)}
	cfg := v.build(&raw)
	if len(v.errs) > 0 {
		// The configuration is returned too, for clipd check: the keys
		// without a problem are valid and can be checked further.
		return cfg, pos, v.errs
	}
	return cfg, pos, nil
}

// decodeErrors turns go-toml's errors into *Error values with the full key
// path; go-toml's own key drops array indexes ("camera.fps"), so the path
// is taken from the position map when one starts on the error's line.
func decodeErrors(err error, file string, pos *positions) ErrorList {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var errs ErrorList
		for i := range strict.Errors {
			e := &strict.Errors[i]
			err := fromDecodeError(e, file, pos, "")
			err.Msg = unknownKey(strings.Split(withoutIndexes(err.Key), "."))
			errs = append(errs, err)
		}
		return errs
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		return ErrorList{fromDecodeError(de, file, pos, friendlyTypeError(strings.TrimPrefix(de.Error(), "toml: ")))}
	}
	return ErrorList{{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
}

// unknownKey says that the last part of key is not a key of its table,
// and which one was probably meant.
func unknownKey(key []string) string {
	if len(key) == 0 {
		return "unknown key"
	}
	if near, ok := suggest.Closest(key[len(key)-1], knownKeys(key[:len(key)-1])); ok {
		return fmt.Sprintf("unknown key (did you mean %s?)", near)
	}
	return "unknown key"
}

// knownKeys lists the keys of the table at path (array indexes left out,
// as go-toml gives them), read from the file* types' toml tags, so that a
// key added there is suggested without being listed twice.
func knownKeys(path []string) []string {
	t := reflect.TypeOf(fileConfig{})
	for _, part := range path {
		next := reflect.Type(nil)
		for i := range t.NumField() {
			if f := t.Field(i); tomlName(f) == part {
				next = f.Type
			}
		}
		for next != nil && (next.Kind() == reflect.Slice || next.Kind() == reflect.Pointer) {
			next = next.Elem()
		}
		if next == nil || next.Kind() != reflect.Struct {
			return nil
		}
		t = next
	}
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if name := tomlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

var typeMismatch = regexp.MustCompile(`^cannot decode TOML (\w+) into .* of type \*?(\w+)$`)

// friendlyTypeError rewrites go-toml's type errors, which name this
// package's private Go types, in the file's own terms.
func friendlyTypeError(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{"int64": "an integer", "string": "a string", "float64": "a number"}[m[2]]
	if want == "" {
		return msg
	}
	return fmt.Sprintf("must be %s, got a TOML %s", want, m[1])
}

func fromDecodeError(de *toml.DecodeError, file string, pos *positions, msg string) *Error {
	line, _ := de.Position()
	key := strings.Join(de.Key(), ".")
	if p, ok := pos.pathAt(line, key); ok {
		key = p
	}
	return &Error{File: file, Line: line, Key: key, Msg: msg}
}

type validator struct {
	file string
	dir  string
	pos  *positions
	errs ErrorList
}

// fail records a problem with key; a key absent from the file is reported
// at the line of its table header, when there is one.
func (v *validator) fail(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: v.pos.near(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

func (v *validator) intIn(key string, got int64, lo, hi int64) int {
	if got < lo || got > hi {
		v.fail(key, "must be between %d and %d, got %d", lo, hi, got)
	}
	return int(got)
}

func (v *validator) oneOf(key, got string, allowed ...string) string {
	for _, a := range allowed {
		if got == a {
			return got
		}
	}
	v.fail(key, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
	return got
}

func (v *validator) nonEmpty(key, got string) string {
	if got == "" {
		v.fail(key, "must not be empty")
	}
	return got
}

func (v *validator) build(raw *fileConfig) *Config {
	cfg := &Config{}
	m := raw.Model
	cfg.Model = Model{
		Bundle:         v.resolve(v.nonEmpty("model.bundle", m.Bundle)),
		Backend:        v.oneOf("model.backend", m.Backend, engine.Backends...),
		ONNXRuntimeLib: v.resolve(m.ONNXRuntimeLib),
		EngineCache:    v.resolve(v.nonEmpty("model.engine_cache", m.EngineCache)),
		MaxBatch:       v.intIn("model.max_batch", m.MaxBatch, 1, 256),
		Threads:        v.intIn("model.threads", m.Threads, 0, 1024),
		Spinning:       m.Spinning,
		CapturePriority: v.oneOf("model.capture_priority", m.CapturePriority,
			append([]string{CapturePriorityAuto}, sched.Names...)...),
		StateDir:       v.resolve(v.nonEmpty("model.state_dir", m.StateDir)),
		PromptCacheMax: v.byteSize("model.prompt_cache_max", m.PromptCacheMax, 1<<20),
	}

	s := raw.Socket
	cfg.Socket = Socket{
		Path:        v.resolve(v.nonEmpty("socket.path", s.Path)),
		Mode:        v.fileMode("socket.mode", s.Mode),
		Group:       s.Group,
		MaxClients:  v.intIn("socket.max_clients", s.MaxClients, 1, 65536),
		ClientQueue: v.intIn("socket.client_queue", s.ClientQueue, 1, 1<<20),
		// Above a gigapixel a decoded image alone is 3 GB.
		MaxImagePixels: v.intIn("socket.max_image_pixels", s.MaxImagePixels, 1, 1_000_000_000),
	}
	for i, d := range s.ClassifyDirs {
		key := fmt.Sprintf("socket.classify_dirs[%d]", i)
		if v.nonEmpty(key, d) != "" {
			cfg.Socket.ClassifyDirs = append(cfg.Socket.ClassifyDirs, filepath.Clean(v.resolve(d)))
		}
	}

	cfg.Log = Log{
		Level:  v.oneOf("log.level", raw.Log.Level, "debug", "info", "warn", "error"),
		Format: v.oneOf("log.format", raw.Log.Format, "text", "json"),
	}

	names := map[string]int{}
	devices := map[string]int{}
	for i := range raw.Camera {
		cam := v.camera(i, &raw.Camera[i])
		prefix := fmt.Sprintf("camera[%d].", i)
		if cam.Name != "" {
			if first, dup := names[cam.Name]; dup {
				v.fail(prefix+"name", "duplicate camera name %q (also camera[%d])", cam.Name, first)
			} else {
				names[cam.Name] = i
			}
		}
		if cam.SourceKind() == capture.KindV4L2 {
			if first, dup := devices[cam.Source]; dup {
				v.fail(prefix+"source", "device %s is already used by camera[%d]", cam.Source, first)
			} else {
				devices[cam.Source] = i
			}
		}
		cfg.Cameras = append(cfg.Cameras, cam)
	}
	cfg.Snapshots = v.snapshots(raw.Snapshots, cfg.Model.StateDir)
	cfg.History = v.history(raw.History, cfg.Model.StateDir)
	cfg.MQTT = v.mqtt(raw.MQTT, cfg.Cameras)
	cfg.HTTP = v.http(raw.HTTP)
	if raw.Socket.ClassifyDirs == nil {
		// A client may classify a snapshot the daemon wrote, and nothing
		// else, unless the operator says otherwise.
		cfg.Socket.ClassifyDirs = []string{cfg.Snapshots.Dir}
	}
	return cfg
}

// byteSize reads a size: an integer of bytes, or a string of an integer
// and a unit ("512MiB", "2GB"). 0 is allowed (off); other values must be at
// least min, which catches a number written without its unit.
func (v *validator) byteSize(key string, raw any, min int64) int64 {
	return v.sizeIn(key, raw, min, true)
}

// sizeIn is byteSize for a size that cannot be off as well (off false):
// then 0 is refused like any other value below min, with the one error
// that says what is allowed.
func (v *validator) sizeIn(key string, raw any, min int64, off bool) int64 {
	const help = `a size such as "1GiB", "512MiB" or "800MB", or an integer of bytes`
	var n int64
	switch x := raw.(type) {
	case int64:
		n = x
	case string:
		var err error
		if n, err = parseByteSize(x); err != nil {
			v.fail(key, "%v: want %s", err, help)
			return 0
		}
	default:
		v.fail(key, "must be %s, got a TOML %s", help, tomlType(raw))
		return 0
	}
	switch {
	case n == 0 && off:
	case n < min || n > maxByteSize:
		allowed := ""
		if off {
			allowed = "0 (off) or "
		}
		v.fail(key, "must be %sbetween %s and %s, got %d bytes", allowed, formatByteSize(min), formatByteSize(maxByteSize), n)
	}
	return n
}

// maxByteSize keeps sizes far from overflow.
const maxByteSize = 1 << 50

var byteUnits = map[string]int64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// parseByteSize reads "<integer>[ ]<unit>", the units of byteUnits.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i > 16 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, _ := strconv.ParseInt(t[:i], 10, 64)
	unit, ok := byteUnits[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("invalid size %q (unknown unit %q)", s, strings.TrimSpace(t[i:]))
	}
	if n > maxByteSize/unit {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * unit, nil
}

func formatByteSize(n int64) string {
	for _, u := range []string{"TiB", "GiB", "MiB", "KiB"} {
		if m := byteUnits[u]; n >= m && n%m == 0 {
			return strconv.FormatInt(n/m, 10) + u
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func tomlType(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case float64:
		return "float"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func (v *validator) fileMode(key, s string) os.FileMode {
	mode, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" {
		v.fail(key, "must be an octal permission string such as \"0660\", got %q", s)
		return 0
	}
	if mode > 0o777 {
		v.fail(key, "must be at most 0777, got %q", s)
	}
	return os.FileMode(mode)
}

func (v *validator) camera(i int, fc *fileCamera) Camera {
	prefix := fmt.Sprintf("camera[%d].", i)
	str := func(p *string, def string) string {
		if p == nil {
			return def
		}
		return *p
	}
	num := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		return *p
	}

	cam := Camera{}
	if fc.Name == nil {
		v.fail(prefix+"name", "is required")
	} else if cam.Name = *fc.Name; !cameraNamePattern.MatchString(cam.Name) || len(cam.Name) > 64 {
		v.fail(prefix+"name", "must match [a-z0-9_-]+ and be at most 64 bytes, got %q", cam.Name)
	}

	failed := map[string]bool{}
	failKey := func(key, format string, args ...any) {
		failed[key] = true
		v.fail(prefix+key, format, args...)
	}
	kind := capture.Kind(0)
	if fc.Source == nil {
		failKey("source", "is required")
	} else {
		var err error
		switch kind, err = capture.KindOf(*fc.Source); {
		case err != nil:
			failKey("source", "%v", err)
		case kind == capture.KindFile || kind == capture.KindV4L2:
			cam.Source = v.resolve(*fc.Source)
		default:
			cam.Source = *fc.Source
		}
	}

	cam.Format = str(fc.Format, DefaultCameraFormat)
	if cam.Format != DefaultCameraFormat {
		if _, err := frame.ParseFormat(cam.Format); err != nil {
			failKey("format", "must be one of auto, mjpeg, yuyv, nv12, rgb24, got %q", cam.Format)
		}
	}
	switch {
	case fc.Width == nil && fc.Height == nil:
		cam.Width, cam.Height = kind.DefaultSize()
	case fc.Width == nil:
		failKey("width", "is required when height is given (give both, or neither)")
	case fc.Height == nil:
		failKey("height", "is required when width is given (give both, or neither)")
	default:
		cam.Width = v.intIn(prefix+"width", *fc.Width, 1, capture.MaxSide)
		cam.Height = v.intIn(prefix+"height", *fc.Height, 1, capture.MaxSide)
	}
	cam.FPS = v.intIn(prefix+"fps", num(fc.FPS, DefaultCameraFPS), 1, capture.MaxFPS)
	if fc.Loop != nil {
		cam.Loop = *fc.Loop
	}
	// What each kind of source can do is capture's to say.
	if kind != 0 {
		for _, p := range capture.Validate(cam.Capture()) {
			if !failed[p.Key] {
				v.fail(prefix+p.Key, "%s", p.Msg)
			}
		}
	}

	if fc.Labels == nil {
		v.fail(prefix+"labels", "is required (a label file, one label per line)")
	} else {
		cam.Labels = v.resolve(v.nonEmpty(prefix+"labels", *fc.Labels))
	}

	cam.ClassifyEvery = v.duration(prefix+"classify_every", fc.ClassifyEvery)
	cam.TopK = v.intIn(prefix+"top_k", num(fc.TopK, DefaultTopK), 1, 1000)

	cam.Threshold = DefaultCameraThreshold
	if fc.Threshold != nil {
		cam.Threshold = v.threshold(prefix+"threshold", *fc.Threshold)
	}
	cam.StateHold = v.durationOr(prefix+"state_hold", fc.StateHold, DefaultStateHold, 0)
	if fc.WholeFrame != nil {
		cam.RegionsOnly = !*fc.WholeFrame
	}
	names := map[string]int{}
	for j := range fc.Region {
		r := v.region(prefix, j, &fc.Region[j], cam)
		if first, dup := names[r.Name]; dup && r.Name != "" {
			v.fail(fmt.Sprintf("%sregion[%d].name", prefix, j), "duplicate region name %q in camera %q (also region[%d])", r.Name, cam.Name, first)
		}
		names[r.Name] = j
		cam.Regions = append(cam.Regions, r)
	}
	if cam.RegionsOnly && len(cam.Regions) == 0 {
		v.fail(prefix+"whole_frame", "is false, but the camera has no [[camera.region]]: nothing would be classified")
	}
	return cam
}

func (v *validator) threshold(key string, t float64) float64 {
	if math.IsNaN(t) || t < 0 || t > 1 {
		v.fail(key, "must be between 0 and 1, got %v", t)
	}
	return t
}

// region reads one [[camera.region]]; what it leaves out comes from the
// camera. A region's pixel box is checked against the camera's frame size
// when the config fixes it; for streams and files, which keep their own
// size, when the first frame arrives.
func (v *validator) region(camPrefix string, j int, fr *fileRegion, cam Camera) Region {
	prefix := fmt.Sprintf("%sregion[%d].", camPrefix, j)
	r := Region{Labels: cam.Labels, Threshold: cam.Threshold, TopK: cam.TopK,
		StateHold: v.durationOr(prefix+"state_hold", fr.StateHold, cam.StateHold, 0)}
	if fr.Name == nil {
		v.fail(prefix+"name", "is required")
	} else if r.Name = *fr.Name; !cameraNamePattern.MatchString(r.Name) || len(r.Name) > 64 {
		v.fail(prefix+"name", "must match [a-z0-9_-]+ and be at most 64 bytes, got %q", r.Name)
	}
	switch {
	case fr.Rect != nil && fr.Box != nil:
		v.fail(prefix+"box", "give either rect (fractions of the frame) or box (pixels), not both")
	case fr.Rect == nil && fr.Box == nil:
		v.fail(prefix+"rect", "is required: rect = [x1, y1, x2, y2] as fractions of the frame, or box = [x1, y1, x2, y2] in pixels")
	case fr.Rect != nil:
		nums, ok := v.numbers(prefix+"rect", fr.Rect, false)
		if !ok {
			break
		}
		rect := frame.Rect(nums)
		if err := rect.Validate(); err != nil {
			v.fail(prefix+"rect", "%v", err)
		} else if cam.Width > 0 {
			if _, err := rect.Box(cam.Width, cam.Height); err != nil {
				v.fail(prefix+"rect", "%v", err)
			}
		}
		r.Rect = &rect
	default:
		nums, ok := v.numbers(prefix+"box", fr.Box, true)
		if !ok {
			break
		}
		box := frame.Box{X1: int(nums[0]), Y1: int(nums[1]), X2: int(nums[2]), Y2: int(nums[3])}
		var err error
		if cam.Width > 0 {
			err = box.ValidateIn(cam.Width, cam.Height)
		} else {
			err = box.Validate()
		}
		if err != nil {
			v.fail(prefix+"box", "%v", err)
		}
		r.Box = &box
	}
	if fr.Labels != nil {
		r.Labels = v.resolve(v.nonEmpty(prefix+"labels", *fr.Labels))
	}
	if fr.Threshold != nil {
		r.Threshold = v.threshold(prefix+"threshold", *fr.Threshold)
	}
	if fr.TopK != nil {
		r.TopK = v.intIn(prefix+"top_k", *fr.TopK, 1, 1000)
	}
	return r
}

// numbers reads an array of four numbers (integers only when integral).
func (v *validator) numbers(key string, raw []any, integral bool) ([4]float64, bool) {
	var out [4]float64
	want := "numbers"
	if integral {
		want = "integers (pixels)"
	}
	if len(raw) != 4 {
		v.fail(key, "must be 4 %s [x1, y1, x2, y2], got %d", want, len(raw))
		return out, false
	}
	for i, x := range raw {
		switch n := x.(type) {
		case int64:
			out[i] = float64(n)
		case float64:
			if integral {
				v.fail(key, "must be 4 %s, got %v at position %d", want, n, i+1)
				return out, false
			}
			out[i] = n
		default:
			v.fail(key, "must be 4 %s, got a %T at position %d", want, x, i+1)
			return out, false
		}
	}
	return out, true
}

func (v *validator) duration(key string, raw any) time.Duration {
	switch x := raw.(type) {
	case nil:
		return DefaultClassifyEvery
	case int64:
		if x != 0 {
			v.fail(key, "a number must be 0 (every frame); write other intervals with a unit, e.g. \"%dms\"", x)
		}
		return 0
	case string:
		d, err := time.ParseDuration(x)
		if err != nil {
			v.fail(key, "invalid duration %q (want e.g. \"200ms\", \"1s\" or 0)", x)
			return 0
		}
		if d < 0 {
			v.fail(key, "must not be negative, got %q", x)
		}
		return d
	default:
		v.fail(key, "must be a duration string such as \"200ms\" or 0, got %T", raw)
		return 0
	}
}
