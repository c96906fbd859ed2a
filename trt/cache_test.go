package trt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sampleKey() KeyInputs {
	v := VersionInfo{TensorRT: "8.6.2", TensorRTLinked: "8.6.2", Parser: "8.6.2", CUDARuntime: "12.2", CUDADriver: "12.2"}
	d := Device{Name: "Orin", ComputeMajor: 8, ComputeMinor: 7, SMs: 16, Integrated: true}
	o, err := BuildOptions{OptBatch: 4}.normalized()
	if err != nil {
		panic(err)
	}
	return NewKeyInputs(Visual, strings.Repeat("ab", 32), v, d, "36.3.0", o)
}

func TestKeyChangesWithEveryInput(t *testing.T) {
	base := sampleKey()
	seen := map[string]string{base.Key(): "base"}
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		k := sampleKey()
		f := reflect.ValueOf(&k).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Set(reflect.ValueOf(append(f.Interface().([]string), "extra=fp32")))
		default:
			t.Fatalf("field %s: kind %s not covered", v.Type().Field(i).Name, f.Kind())
		}
		key := k.Key()
		name := v.Type().Field(i).Name
		if prev, dup := seen[key]; dup {
			t.Errorf("changing %s gives the same key as %s", name, prev)
		}
		seen[key] = name
	}
	if base.Key() != sampleKey().Key() {
		t.Error("key is not deterministic")
	}
}

func TestKeyIgnoresLayerRuleOrderButNotSplits(t *testing.T) {
	a, b := sampleKey(), sampleKey()
	a.LayerPrecisions = []string{"x=fp32", "y=fp32"}
	b.LayerPrecisions = []string{"y=fp32", "x=fp32"}
	if a.Key() != b.Key() {
		t.Error("order of layer precision rules changes the key")
	}
	// Quoting keeps "a,b" distinct from "a","b".
	b.LayerPrecisions = []string{"x=fp32,y=fp32"}
	if a.Key() == b.Key() {
		t.Error("joined and split rule lists collide")
	}
	c, d := sampleKey(), sampleKey()
	c.GPU, c.L4T = "Orin\nl4t=\"1\"", ""
	d.GPU, d.L4T = "Orin", "1"
	if c.Key() == d.Key() {
		t.Error("a newline in a string field forges another field")
	}
}

type buildCounter struct {
	builds int
	plan   []byte
}

func (b *buildCounter) build() ([]byte, error) {
	b.builds++
	return b.plan, nil
}

// loadPlan accepts only plans that start with "PLAN", as a stand-in for
// TensorRT's deserializer refusing foreign bytes.
func loadPlan(plan []byte) error {
	if !bytes.HasPrefix(plan, []byte("PLAN")) {
		return errors.New("magic mismatch")
	}
	return nil
}

func TestGetOrBuild(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	c := &Cache{Dir: filepath.Join(dir, "engines"), Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	k := sampleKey()
	bc := &buildCounter{plan: []byte("PLAN-1")}

	out, err := c.GetOrBuild(k, bc.build, loadPlan)
	if err != nil || !out.Built || bc.builds != 1 {
		t.Fatalf("first call: %+v, %v, builds %d", out, err, bc.builds)
	}
	enginePath, sidecarPath := c.Paths(k)
	if out.Path != enginePath || filepath.Base(enginePath) != "visual-"+k.Key()+".engine" {
		t.Errorf("engine path %s", out.Path)
	}
	if data, _ := os.ReadFile(enginePath); string(data) != "PLAN-1" {
		t.Errorf("engine file holds %q", data)
	}
	side, err := os.ReadFile(sidecarPath)
	if err != nil || !bytes.Contains(side, []byte(`"gpu": "Orin"`)) || !bytes.Contains(side, []byte(`"l4t": "36.3.0"`)) {
		t.Errorf("sidecar %s: %v", side, err)
	}

	out, err = c.GetOrBuild(k, bc.build, loadPlan)
	if err != nil || out.Built || bc.builds != 1 {
		t.Fatalf("second call should hit: %+v, %v, builds %d", out, err, bc.builds)
	}

	// An engine TensorRT cannot deserialize (its sidecar vouching for
	// its bytes) is deleted and rebuilt.
	writeCached(t, c, k, []byte("garbage"))
	out, err = c.GetOrBuild(k, bc.build, loadPlan)
	if err != nil || !out.Built || bc.builds != 2 || !strings.Contains(out.Rebuilt, "magic mismatch") {
		t.Fatalf("corrupt engine: %+v, %v, builds %d", out, err, bc.builds)
	}
	if !strings.Contains(logBuf.String(), "failed to deserialize: magic mismatch") {
		t.Errorf("log does not say why: %s", logBuf.String())
	}

	// A sidecar describing other inputs is a mismatch, named in the log.
	other := k
	other.CUDADriver = "11.4"
	writeSidecar(t, sidecarPath, other)
	out, err = c.GetOrBuild(k, bc.build, loadPlan)
	if err != nil || bc.builds != 3 || !strings.Contains(out.Rebuilt, "cuda_driver is 11.4, want 12.2") {
		t.Fatalf("mismatched sidecar: %+v, %v, builds %d", out, err, bc.builds)
	}

	// An engine whose sidecar never got written (crash) is rebuilt.
	if err := os.Remove(sidecarPath); err != nil {
		t.Fatal(err)
	}
	out, err = c.GetOrBuild(k, bc.build, loadPlan)
	if err != nil || bc.builds != 4 || !strings.Contains(out.Rebuilt, "sidecar is unreadable") {
		t.Fatalf("missing sidecar: %+v, %v, builds %d", out, err, bc.builds)
	}

	entries, _ := os.ReadDir(c.Dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	if len(entries) != 2 {
		t.Errorf("cache holds %d files, want engine and sidecar", len(entries))
	}
}

// writeCached stores plan as k's engine with a sidecar that vouches for
// it, as GetOrBuild would have.
func writeCached(t *testing.T, c *Cache, k KeyInputs, plan []byte) {
	t.Helper()
	enginePath, sidecarPath := c.Paths(k)
	sum := sha256.Sum256(plan)
	side, err := json.Marshal(sidecar{KeyInputs: k, PlanBytes: int64(len(plan)), PlanSHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(enginePath, plan, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecarPath, side, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeSidecar(t *testing.T, path string, k KeyInputs) {
	t.Helper()
	dir := t.TempDir()
	c := &Cache{Dir: dir}
	if _, err := c.GetOrBuild(k, func() ([]byte, error) { return []byte("PLAN"), nil }, loadPlan); err != nil {
		t.Fatal(err)
	}
	_, side := c.Paths(k)
	data, err := os.ReadFile(side)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A cached plan whose bytes are not those its sidecar vouches for never
// reaches the deserializer: truncated, bit-rotted, replaced by a FIFO, a
// directory, a sparse file larger than any engine, or described by a
// sidecar of the format before sizes and hashes. Each is discarded with
// one log line and rebuilt; none fails the caller or hangs it.
func TestCachedPlanIsCheckedBeforeLoading(t *testing.T) {
	good := []byte("PLAN-" + strings.Repeat("x", 4096))
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, enginePath, sidecarPath string)
		reason string
	}{
		{"truncated", func(t *testing.T, p, _ string) { os.Truncate(p, 100) }, "is 100 bytes, its sidecar says 4101 (truncated"},
		{"bit rot", func(t *testing.T, p, _ string) {
			data, _ := os.ReadFile(p)
			data[2000] ^= 0x10
			os.WriteFile(p, data, 0o644)
		}, "its SHA-256 is"},
		{"fifo", func(t *testing.T, p, _ string) {
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"empty directory", func(t *testing.T, p, _ string) {
			os.Remove(p)
			os.Mkdir(p, 0o755)
		}, "not a regular file"},
		{"sparse and huge", func(t *testing.T, p, _ string) {
			if err := os.Truncate(p, maxEngineBytes+1); err != nil {
				t.Fatal(err)
			}
		}, "more than an engine may be"},
		{"format-1 sidecar", func(t *testing.T, _, side string) {
			data, _ := os.ReadFile(side)
			var m map[string]any
			json.Unmarshal(data, &m)
			delete(m, "plan_bytes")
			delete(m, "plan_sha256")
			data, _ = json.Marshal(m)
			os.WriteFile(side, data, 0o644)
		}, "gives no plan size and SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			c := &Cache{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
			k := sampleKey()
			writeCached(t, c, k, good)
			enginePath, sidecarPath := c.Paths(k)
			tc.damage(t, enginePath, sidecarPath)
			loads := 0
			bc := &buildCounter{plan: good}
			done := make(chan struct{})
			var out Outcome
			var err error
			go func() {
				defer close(done)
				out, err = c.GetOrBuild(k, bc.build, func(plan []byte) error {
					loads++
					if !bytes.Equal(plan, good) {
						t.Errorf("loaded %d bytes that are not the plan", len(plan))
					}
					return nil
				})
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("GetOrBuild blocked")
			}
			if err != nil || !out.Built || bc.builds != 1 || loads != 1 || !strings.Contains(out.Rebuilt, tc.reason) {
				t.Fatalf("%+v, %v, builds %d, loads %d; want a rebuild because %q", out, err, bc.builds, loads, tc.reason)
			}
			if n := strings.Count(logBuf.String(), "discarding cached TensorRT engine"); n != 1 {
				t.Errorf("%d discard lines: %s", n, logBuf.String())
			}
			if data, _ := os.ReadFile(enginePath); !bytes.Equal(data, good) {
				t.Errorf("the rebuilt engine is not stored")
			}
			// And the rebuilt one is a hit.
			if out, err := c.GetOrBuild(k, bc.build, loadPlan); err != nil || out.Built {
				t.Errorf("after the rebuild: %+v, %v", out, err)
			}
		})
	}
}

// Loading a cached engine needs no workspace: a machine with too little
// memory free to build still loads one. The key holds the workspace asked
// for, so the memory free at each start does not change it; the cap
// applies to the build alone, which also gets the GPU's timing cache.
func TestWorkspaceCapAppliesToBuildsOnly(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	build, err := BuildOptions{OptBatch: 4}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	key := NewKeyInputs(Visual, strings.Repeat("ab", 32), VersionInfo{TensorRTLinked: "10.3.0"}, Device{Name: "Orin"}, "", build)
	if key.WorkspaceBytes != DefaultWorkspace {
		t.Fatalf("key workspace %d", key.WorkspaceBytes)
	}
	if err := c.SaveTimingCache(key, []byte("timings")); err != nil {
		t.Fatal(err)
	}
	starved := func(requested uint64) (uint64, error) { return WorkspaceLimit(requested, 100<<20, 0) }
	roomy := func(requested uint64) (uint64, error) { return WorkspaceLimit(requested, 1<<30, 0) } // half: 512 MiB
	var built []BuildOptions
	buildPlan := func(bo BuildOptions) ([]byte, error) {
		built = append(built, bo)
		return []byte("PLAN"), nil
	}
	if _, err := engineFromCache(c, key, build, starved, buildPlan, loadPlan); err == nil || !strings.Contains(err.Error(), "only 50 MiB") {
		t.Fatalf("a build without workspace: %v", err)
	}
	if len(built) != 0 {
		t.Fatal("built without workspace")
	}
	out, err := engineFromCache(c, key, build, roomy, buildPlan, loadPlan)
	if err != nil || !out.Built || len(built) != 1 {
		t.Fatalf("%+v, %v", out, err)
	}
	if got := built[0]; got.WorkspaceBytes != 512<<20 || string(got.TimingCache) != "timings" || got.SaveTimingCache == nil {
		t.Errorf("the build got workspace %d MiB, timing cache %q", got.WorkspaceBytes>>20, got.TimingCache)
	}
	out, err = engineFromCache(c, key, build, starved, buildPlan, loadPlan)
	if err != nil || out.Built || len(built) != 1 {
		t.Fatalf("loading the cached engine with no workspace to spare: %+v, %v", out, err)
	}
}

// After a build, prune removes what no one will load: engines the new one
// supersedes (another TensorRT or driver, the same GPU, model and batch
// profile), engines of any key unused for 30 days, engines whose sidecar
// was never written, and dead writers' temporary files. Engines of another
// batch profile or GPU still in use, the timing cache and fresh temporary
// files stay.
func TestPruneAfterBuild(t *testing.T) {
	var logBuf bytes.Buffer
	now := time.Unix(1_750_000_000, 0)
	c := &Cache{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logBuf, nil)), now: func() time.Time { return now }}
	k := sampleKey()
	plan := []byte("PLAN")
	variant := func(change func(*KeyInputs)) KeyInputs {
		v := k
		change(&v)
		return v
	}
	age := func(path string, d time.Duration) {
		if err := os.Chtimes(path, now.Add(-d), now.Add(-d)); err != nil {
			t.Fatal(err)
		}
	}
	upgraded := variant(func(v *KeyInputs) { v.TensorRT = "8.5.2" })
	oldFormat := variant(func(v *KeyInputs) { v.Format = 1; v.WorkspaceBytes = 300 << 20 })
	otherProfile := variant(func(v *KeyInputs) { v.OptBatch = 1 })
	otherGPU := variant(func(v *KeyInputs) { v.GPU = "NVIDIA RTX A2000" })
	textual := variant(func(v *KeyInputs) { v.Encoder = Textual; v.TensorRT = "8.5.2" })
	unused := variant(func(v *KeyInputs) { v.OptBatch = 2 })
	for _, v := range []KeyInputs{upgraded, oldFormat, otherProfile, otherGPU, textual, unused} {
		writeCached(t, c, v, plan)
	}
	unusedEngine, _ := c.Paths(unused)
	age(unusedEngine, 31*24*time.Hour)
	orphanOld := filepath.Join(c.Dir, "visual-"+strings.Repeat("0", 64)+".engine")
	orphanNew := filepath.Join(c.Dir, "visual-"+strings.Repeat("1", 64)+".engine")
	tmpOld := filepath.Join(c.Dir, ".tmp-visual-x.engine-123")
	tmpNew := filepath.Join(c.Dir, ".tmp-visual-y.engine-456")
	for _, p := range []string{orphanOld, orphanNew, tmpOld, tmpNew} {
		os.WriteFile(p, plan, 0o644)
	}
	age(orphanOld, time.Hour)
	age(tmpOld, time.Hour)
	if err := c.SaveTimingCache(k, []byte("timings")); err != nil {
		t.Fatal(err)
	}

	if out, err := c.GetOrBuild(k, (&buildCounter{plan: plan}).build, loadPlan); err != nil || !out.Built {
		t.Fatalf("%+v, %v", out, err)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	for name, v := range map[string]KeyInputs{"upgraded": upgraded, "old format": oldFormat, "unused": unused} {
		e, s := c.Paths(v)
		if exists(e) || exists(s) {
			t.Errorf("%s engine kept", name)
		}
	}
	for name, v := range map[string]KeyInputs{"new": k, "other profile": otherProfile, "other GPU": otherGPU, "other encoder": textual} {
		e, s := c.Paths(v)
		if !exists(e) || !exists(s) {
			t.Errorf("%s engine removed", name)
		}
	}
	for p, want := range map[string]bool{orphanOld: false, orphanNew: true, tmpOld: false, tmpNew: true, c.timingCachePath(k): true} {
		if exists(p) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), !want, want)
		}
	}
	if !strings.Contains(logBuf.String(), "superseded by the engine just built: tensorrt is 8.5.2, want 8.6.2") {
		t.Errorf("log does not say why: %s", logBuf.String())
	}
}

// A cache hit marks the engine as used (its mtime), which is what keeps
// an engine of a profile still in use from prune.
func TestLoadMarksEngineUsed(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	c := &Cache{Dir: t.TempDir(), now: func() time.Time { return now }}
	k := sampleKey()
	writeCached(t, c, k, []byte("PLAN"))
	e, _ := c.Paths(k)
	old := now.Add(-40 * 24 * time.Hour)
	os.Chtimes(e, old, old)
	if out, err := c.GetOrBuild(k, (&buildCounter{plan: []byte("PLAN")}).build, loadPlan); err != nil || out.Built {
		t.Fatalf("%+v, %v", out, err)
	}
	if st, err := os.Stat(e); err != nil || !st.ModTime().Equal(now) {
		t.Errorf("mtime after a load: %v, %v", st.ModTime(), err)
	}
}

func TestGetOrBuildErrors(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	k := sampleKey()
	_, err := c.GetOrBuild(k, func() ([]byte, error) { return nil, errors.New("parser: node 3: bad op") }, loadPlan)
	if err == nil || !strings.Contains(err.Error(), "node 3") {
		t.Fatalf("build error not returned: %v", err)
	}
	// A freshly built plan that does not load is not kept.
	_, err = c.GetOrBuild(k, func() ([]byte, error) { return []byte("junk"), nil }, loadPlan)
	if err == nil || !strings.Contains(err.Error(), "just built for visual") {
		t.Fatalf("load error of a new plan: %v", err)
	}
	if entries, _ := os.ReadDir(c.Dir); len(entries) != 0 {
		t.Errorf("unloadable engine kept: %d files", len(entries))
	}
}

func TestTimingCachePerGPU(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	orin := sampleKey()
	if got := c.LoadTimingCache(orin); got != nil {
		t.Fatalf("empty cache returned %q", got)
	}
	if err := c.SaveTimingCache(orin, []byte("orin-timings")); err != nil {
		t.Fatal(err)
	}
	text := orin
	text.Encoder, text.ONNXSHA256 = Textual, "cd"
	if got := c.LoadTimingCache(text); string(got) != "orin-timings" {
		t.Errorf("the text encoder on the same GPU gets %q", got)
	}
	other := orin
	other.GPU = "NVIDIA RTX A2000"
	if got := c.LoadTimingCache(other); got != nil {
		t.Errorf("another GPU gets %q", got)
	}
}

func TestFileSHA256(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(path, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := FileSHA256(path)
	if err != nil || got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("FileSHA256 = %s, %v", got, err)
	}
	if _, err := FileSHA256(path + ".missing"); err == nil {
		t.Error("missing file hashed")
	}
}
