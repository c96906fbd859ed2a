package trt

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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

	// An engine TensorRT cannot deserialize is deleted and rebuilt.
	if err := os.WriteFile(enginePath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
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
