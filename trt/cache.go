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
// old files are never read with new meaning. 2: the sidecar holds the
// plan's size and SHA-256, and the workspace in the key is the one asked
// for, not the one free memory allowed at the time.
const cacheFormat = 2

// KeyInputs is everything that decides whether a serialized engine can be
// reused: a TensorRT plan is only valid for the TensorRT version, GPU and
// build settings that produced it, and it silently encodes the ONNX file.
type KeyInputs struct {
	Format  int    `json:"format"`
	Encoder string `json:"encoder"`
	// ONNXSHA256 is the hex SHA-256 of the ONNX file's bytes.
	ONNXSHA256        string `json:"onnx_sha256"`
	TensorRT          string `json:"tensorrt"`
	Parser            string `json:"onnx_parser"`
	CUDARuntime       string `json:"cuda_runtime"`
	CUDADriver        string `json:"cuda_driver"`
	GPU               string `json:"gpu"`
	ComputeCapability string `json:"compute_capability"`
	SMs               int    `json:"sm_count"`
	Integrated        bool   `json:"integrated"`
	L4T               string `json:"l4t,omitempty"`
	Precision         string `json:"precision"`
	// The batch profile is part of the plan (TensorRT picks its kernels
	// for OptBatch, the daemon's camera count, within MinBatch..MaxBatch),
	// so two profiles are two engines; prune keeps both while both are
	// used.
	MinBatch int `json:"min_batch"`
	OptBatch int `json:"opt_batch"`
	MaxBatch int `json:"max_batch"`
	// WorkspaceBytes is the workspace asked for, not the cap that the
	// memory free at build time put on it (engineFromCache).
	WorkspaceBytes  uint64   `json:"workspace_bytes"`
	LayerPrecisions []string `json:"layer_precisions"`
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
	// maxCacheEntries bounds the directory listing of prune; a cache
	// holds a few files per model.
	maxCacheEntries = 4096
)

// Ages at which prune removes what nobody will use. A temporary file is
// written in seconds and renamed at once (a build takes minutes, but
// before its file is created), so one untouched for staleTemp belongs to
// a writer that died; an engine without a sidecar that old is the crash
// between the two writes. An engine not loaded for unusedEngine belongs
// to a configuration (batch profile, model) that is no longer run.
const (
	staleTemp    = 15 * time.Minute
	unusedEngine = 30 * 24 * time.Hour
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
	// now is time.Now; tests set it.
	now func() time.Time
}

// sidecar is the .json file of an engine: the key inputs, and the size
// and SHA-256 of the plan, so that a truncated or bit-rotted plan is
// rebuilt instead of reaching TensorRT's deserializer, which is not
// written for hostile bytes.
type sidecar struct {
	KeyInputs
	PlanBytes  int64  `json:"plan_bytes"`
	PlanSHA256 string `json:"plan_sha256"`
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

func (c *Cache) clock() time.Time {
	if c.now == nil {
		return time.Now()
	}
	return c.now()
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
// matches the key and the plan's size and SHA-256, and load accepts it;
// otherwise a fresh plan from build, stored atomically (engine first,
// sidecar last, so a crash between the two leaves an engine without
// sidecar, which is discarded next time). load deserializes a plan; its
// error on a cached plan means "rebuild". After a build, engines that the
// new one supersedes and leftovers of dead writers are removed (prune).
func (c *Cache) GetOrBuild(k KeyInputs, build func() ([]byte, error), load func([]byte) error) (Outcome, error) {
	enginePath, sidecarPath := c.Paths(k)
	out := Outcome{Path: enginePath}
	plan, reason, err := c.readCached(enginePath, sidecarPath, k)
	switch {
	case err != nil:
		return out, fmt.Errorf("trt: engine cache: %w", err)
	case plan != nil:
		if err := load(plan); err == nil {
			// The mtime of an engine is when it was last loaded, for
			// prune's unusedEngine; a read-only cache keeps its times.
			now := c.clock()
			os.Chtimes(enginePath, now, now)
			return out, nil
		} else {
			reason = "it failed to deserialize: " + err.Error()
		}
	}
	if reason != "" {
		out.Rebuilt = reason
		c.log().Warn("discarding cached TensorRT engine", "path", enginePath, "reason", reason)
		c.remove(enginePath, sidecarPath)
	}

	plan, err = build()
	if err != nil {
		return out, err
	}
	out.Built = true
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	sum := sha256.Sum256(plan)
	side, err := json.MarshalIndent(sidecar{KeyInputs: k, PlanBytes: int64(len(plan)), PlanSHA256: hex.EncodeToString(sum[:])}, "", "  ")
	if err != nil {
		return out, err
	}
	if err := safefile.WriteAtomic(enginePath, plan, time.Time{}); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	if err := safefile.WriteAtomic(sidecarPath, append(side, '\n'), time.Time{}); err != nil {
		return out, fmt.Errorf("trt: engine cache: %w", err)
	}
	if err := load(plan); err != nil {
		c.remove(enginePath, sidecarPath)
		return out, fmt.Errorf("trt: loading the engine just built for %s: %w", k.Encoder, err)
	}
	c.prune(k)
	return out, nil
}

// readCached returns the cached plan of k when its sidecar vouches for
// it; otherwise nil and why it must be rebuilt ("" when there is none).
// Only a failure to read what may be a good engine (permissions, I/O) is
// an error; anything wrong with the file itself means "rebuild".
func (c *Cache) readCached(enginePath, sidecarPath string, k KeyInputs) (plan []byte, reason string, err error) {
	f, fi, err := safefile.Open(enginePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", nil
	case errors.Is(err, safefile.ErrNotRegular):
		return nil, "it is not a regular file: " + err.Error(), nil
	case err != nil:
		return nil, "", err
	}
	defer f.Close()
	side, reason := c.checkSidecar(sidecarPath, k)
	switch {
	case reason != "":
		return nil, reason, nil
	case fi.Size() > maxEngineBytes:
		return nil, fmt.Sprintf("it is %s, more than an engine may be (%s)", safefile.FormatBytes(fi.Size()), safefile.FormatBytes(maxEngineBytes)), nil
	case fi.Size() != side.PlanBytes:
		return nil, fmt.Sprintf("it is %d bytes, its sidecar says %d (truncated or replaced)", fi.Size(), side.PlanBytes), nil
	}
	plan, err = safefile.ReadAll(f, fi, side.PlanBytes)
	if errors.Is(err, safefile.ErrTooLarge) {
		return nil, "it grew while being read", nil
	}
	if err != nil {
		return nil, "", err
	}
	if sum := sha256.Sum256(plan); hex.EncodeToString(sum[:]) != side.PlanSHA256 {
		return nil, fmt.Sprintf("its SHA-256 is %x, its sidecar says %s (corrupt)", sum[:8], side.PlanSHA256), nil
	}
	return plan, "", nil
}

// checkSidecar reads the sidecar at path; it returns why the sidecar does
// not vouch for an engine of want, or "".
func (c *Cache) checkSidecar(path string, want KeyInputs) (sidecar, string) {
	data, err := safefile.ReadFile(path, maxSidecarBytes)
	if err != nil {
		return sidecar{}, "its sidecar is unreadable: " + err.Error()
	}
	var got sidecar
	if err := json.Unmarshal(data, &got); err != nil {
		return sidecar{}, fmt.Sprintf("its sidecar %s is not valid JSON: %v", path, err)
	}
	if !got.KeyInputs.equal(want) {
		return sidecar{}, "its sidecar does not match the key: " + diffKeys(got.KeyInputs, want)
	}
	if got.PlanBytes <= 0 || len(got.PlanSHA256) != 2*sha256.Size {
		return sidecar{}, "its sidecar gives no plan size and SHA-256"
	}
	return got, ""
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

// prune removes, after k's engine was built: the engines k supersedes
// (same encoder, ONNX file, GPU, precision and batch profile, so they
// differ only in what an upgrade or the cache format changes: TensorRT,
// CUDA, driver, L4T, workspace, layer rules) with their sidecars; engines
// of any key not loaded for unusedEngine (another batch profile, another
// model); engines whose sidecar never got written and temporary files,
// both untouched for staleTemp. An engine of another batch profile that
// is still in use is kept: a daemon with four cameras and a one-shot
// `clipd verify` at batch 1 would otherwise rebuild each other's engines
// (minutes each) in turn.
func (c *Cache) prune(k KeyInputs) {
	d, err := os.Open(c.Dir)
	if err != nil {
		return
	}
	entries, _ := d.ReadDir(maxCacheEntries)
	d.Close()
	now := c.clock()
	keep := k.Key()
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(c.Dir, name)
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		age := now.Sub(info.ModTime())
		if strings.HasPrefix(name, safefile.TempPrefix) {
			if age > staleTemp {
				c.removeLogged(path, "a temporary file of a writer that died")
			}
			continue
		}
		base, ok := strings.CutSuffix(name, ".engine")
		if !ok {
			continue
		}
		encoder, key, ok := cutKey(base)
		if !ok || key == keep {
			continue
		}
		sidecarPath := filepath.Join(c.Dir, base+".json")
		data, err := safefile.ReadFile(sidecarPath, maxSidecarBytes)
		var side sidecar
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if age > staleTemp {
				c.removeLogged(path, "an engine whose sidecar was never written")
			}
		case err != nil || json.Unmarshal(data, &side) != nil:
			// Not ours to judge by its content; only by its age.
			if age > unusedEngine {
				c.removeLogged(path, "an engine not loaded for 30 days")
				c.remove(sidecarPath)
			}
		case encoder == k.Encoder && supersedes(k, side.KeyInputs):
			c.removeLogged(path, "superseded by the engine just built: "+diffKeys(side.KeyInputs, k))
			c.remove(sidecarPath)
		case age > unusedEngine:
			c.removeLogged(path, "an engine not loaded for 30 days")
			c.remove(sidecarPath)
		}
	}
}

// supersedes reports whether an engine of k replaces one of old: the same
// model and GPU with the same build shape, but another TensorRT, CUDA,
// driver, L4T, format, workspace or layer rules.
func supersedes(k, old KeyInputs) bool {
	return old.Encoder == k.Encoder && old.ONNXSHA256 == k.ONNXSHA256 &&
		old.GPU == k.GPU && old.ComputeCapability == k.ComputeCapability && old.SMs == k.SMs &&
		old.Integrated == k.Integrated && old.Precision == k.Precision &&
		old.MinBatch == k.MinBatch && old.OptBatch == k.OptBatch && old.MaxBatch == k.MaxBatch
}

// cutKey splits "<encoder>-<64 hex>" as Paths makes it.
func cutKey(base string) (encoder, key string, ok bool) {
	i := strings.LastIndexByte(base, '-')
	if i <= 0 || len(base)-i-1 != 2*sha256.Size {
		return "", "", false
	}
	key = base[i+1:]
	if _, err := hex.DecodeString(key); err != nil || strings.ToLower(key) != key {
		return "", "", false
	}
	return base[:i], key, true
}

func (c *Cache) removeLogged(path, why string) {
	if err := os.Remove(path); err == nil {
		c.log().Info("removed from the TensorRT engine cache", "path", path, "reason", why)
	} else if !errors.Is(err, fs.ErrNotExist) {
		c.log().Warn("cannot remove stale cache file", "path", path, "err", err)
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
