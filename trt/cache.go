package trt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clipd/clipd/internal/safefile"
)

// cacheFormat is bumped when the key encoding or the sidecar changes, so
// old files are never read with new meaning.
const cacheFormat = 1

// KeyInputs is everything that decides whether a serialized engine can be
// reused: a TensorRT plan is only valid for the TensorRT version, GPU and
// build settings that produced it, and it silently encodes the ONNX file.
type KeyInputs struct {
	Format  int    `json:"format"`
	Encoder string `json:"encoder"`
	// ONNXSHA256 is the hex SHA-256 of the ONNX file's bytes.
	ONNXSHA256        string   `json:"onnx_sha256"`
	TensorRT          string   `json:"tensorrt"`
	Parser            string   `json:"onnx_parser"`
	CUDARuntime       string   `json:"cuda_runtime"`
	CUDADriver        string   `json:"cuda_driver"`
	GPU               string   `json:"gpu"`
	ComputeCapability string   `json:"compute_capability"`
	SMs               int      `json:"sm_count"`
	Integrated        bool     `json:"integrated"`
	L4T               string   `json:"l4t,omitempty"`
	Precision         string   `json:"precision"`
	MinBatch          int      `json:"min_batch"`
	OptBatch          int      `json:"opt_batch"`
	MaxBatch          int      `json:"max_batch"`
	WorkspaceBytes    uint64   `json:"workspace_bytes"`
	LayerPrecisions   []string `json:"layer_precisions"`
}

// NewKeyInputs assembles the key inputs of one encoder's engine.
func NewKeyInputs(encoder, onnxSHA256 string, v VersionInfo, d Device, l4t string, o BuildOptions) KeyInputs {
	return KeyInputs{
		Format:            cacheFormat,
		Encoder:           encoder,
		ONNXSHA256:        onnxSHA256,
		TensorRT:          v.TensorRTLinked,
		Parser:            v.Parser,
		CUDARuntime:       v.CUDARuntime,
		CUDADriver:        v.CUDADriver,
		GPU:               d.Name,
		ComputeCapability: d.ComputeCapability(),
		SMs:               d.SMs,
		Integrated:        d.Integrated,
		L4T:               l4t,
		Precision:         string(o.Precision),
		MinBatch:          o.MinBatch,
		OptBatch:          o.OptBatch,
		MaxBatch:          o.MaxBatch,
		WorkspaceBytes:    o.WorkspaceBytes,
		LayerPrecisions:   o.layerPrecisions(),
	}
}

// canonical encodes k as one "name=value" line per field in declaration
// order, strings quoted, so that no two different inputs share an
// encoding (JSON would do too, but its map-free field order is an
// implementation detail we should not hash).
func (k KeyInputs) canonical() []byte {
	var b strings.Builder
	v := reflect.ValueOf(k)
	t := v.Type()
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("json")
		name, _, _ = strings.Cut(name, ",")
		b.WriteString(name)
		b.WriteByte('=')
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			b.WriteString(strconv.Quote(f.String()))
		case reflect.Int:
			b.WriteString(strconv.FormatInt(f.Int(), 10))
		case reflect.Uint64:
			b.WriteString(strconv.FormatUint(f.Uint(), 10))
		case reflect.Bool:
			b.WriteString(strconv.FormatBool(f.Bool()))
		case reflect.Slice:
			items := slices.Clone(f.Interface().([]string))
			slices.Sort(items)
			for j, s := range items {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Quote(s))
			}
		default:
			panic("trt: KeyInputs field " + t.Field(i).Name + " has no canonical encoding")
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Key is the hex SHA-256 of the canonical encoding.
func (k KeyInputs) Key() string {
	sum := sha256.Sum256(k.canonical())
	return hex.EncodeToString(sum[:])
}

// equal compares key inputs as the key does (layer rules unordered).
func (k KeyInputs) equal(o KeyInputs) bool {
	return string(k.canonical()) == string(o.canonical())
}

// Bounds of what the cache reads back: a ViT-L/14 FP16 plan is about 1 GB,
// and a sidecar a few hundred bytes.
const (
	maxEngineBytes  = 8 << 30
	maxSidecarBytes = 1 << 20
)

// FileSHA256 hashes a file's contents.
func FileSHA256(path string) (string, error) {
	f, _, err := safefile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Cache keeps serialized engines in Dir as <encoder>-<key>.engine, each
// with a <encoder>-<key>.json sidecar listing the key inputs for humans and
// for a consistency check, plus one timing cache per GPU and TensorRT.
type Cache struct {
	Dir string
	Log *slog.Logger
}

// Paths returns the engine and sidecar paths of k.
func (c *Cache) Paths(k KeyInputs) (engine, sidecar string) {
	base := filepath.Join(c.Dir, k.Encoder+"-"+k.Key())
	return base + ".engine", base + ".json"
}

func (c *Cache) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Outcome says how GetOrBuild obtained the engine.
type Outcome struct {
	Path string
	// Built is true when the engine was built now rather than read.
	Built bool
	// Rebuilt names why a cached file was discarded; empty otherwise.
	Rebuilt string
}

// GetOrBuild returns the engine for k: the cached plan if its sidecar
// matches and load accepts it, otherwise a fresh plan from build, stored
// atomically (engine first, sidecar last, so a crash between the two
// leaves an engine without sidecar, which is discarded next time). load
// deserializes a plan; its error on a cached plan means "rebuild".
func (c *Cache) GetOrBuild(k KeyInputs, build func() ([]byte, error), load func([]byte) error) (Outcome, error) {
	enginePath, sidecarPath := c.Paths(k)
	out := Outcome{Path: enginePath}
	if plan, err := safefile.ReadFile(enginePath, maxEngineBytes); err == nil {
		reason := c.checkSidecar(sidecarPath, k)
		if reason == "" {
			if err := load(plan); err == nil {
				return out, nil
			} else {
				reason = "it failed to deserialize: " + err.Error()
			}
		}
		out.Rebuilt = reason
		c.log().Warn("discarding cached TensorRT engine", "path", enginePath, "reason", reason)
		c.remove(enginePath, sidecarPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}

	plan, err := build()
	if err != nil {
		return out, err
	}
	out.Built = true
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	sidecar, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return out, err
	}
	if err := safefile.WriteAtomic(enginePath, plan, time.Time{}); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	if err := safefile.WriteAtomic(sidecarPath, append(sidecar, '\n'), time.Time{}); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	if err := load(plan); err != nil {
		c.remove(enginePath, sidecarPath)
		return out, fmt.Errorf("trt: loading the engine just built for %s: %w", k.Encoder, err)
	}
	return out, nil
}

// checkSidecar returns why the sidecar does not vouch for the engine, or "".
func (c *Cache) checkSidecar(path string, want KeyInputs) string {
	data, err := safefile.ReadFile(path, maxSidecarBytes)
	if err != nil {
		return "its sidecar is unreadable: " + err.Error()
	}
	var got KeyInputs
	if err := json.Unmarshal(data, &got); err != nil {
		return fmt.Sprintf("its sidecar %s is not valid JSON: %v", path, err)
	}
	if !got.equal(want) {
		return "its sidecar does not match the key: " + diffKeys(got, want)
	}
	return ""
}

// diffKeys names the first differing field, for the log line.
func diffKeys(got, want KeyInputs) string {
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			name, _, _ := strings.Cut(gv.Type().Field(i).Tag.Get("json"), ",")
			return fmt.Sprintf("%s is %v, want %v", name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
	return "fields equal but encodings differ"
}

func (c *Cache) remove(paths ...string) {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log().Warn("cannot remove stale cache file", "path", p, "err", err)
		}
	}
}

// timingCachePath is per TensorRT version and GPU: TensorRT rejects a
// timing cache from another device, so sharing one file would thrash.
func (c *Cache) timingCachePath(k KeyInputs) string {
	id := KeyInputs{Format: cacheFormat, TensorRT: k.TensorRT, GPU: k.GPU, ComputeCapability: k.ComputeCapability, SMs: k.SMs}
	return filepath.Join(c.Dir, "timing-"+id.Key()[:16]+".cache")
}

// LoadTimingCache returns the saved timing cache for k's GPU, or nil.
func (c *Cache) LoadTimingCache(k KeyInputs) []byte {
	data, err := safefile.ReadFile(c.timingCachePath(k), maxEngineBytes)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log().Warn("ignoring unreadable timing cache", "err", err)
		}
		return nil
	}
	return data
}

// SaveTimingCache stores the timing cache for k's GPU.
func (c *Cache) SaveTimingCache(k KeyInputs, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	return safefile.WriteAtomic(c.timingCachePath(k), data, time.Time{})
}
