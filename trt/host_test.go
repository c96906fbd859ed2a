package trt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestWorkspaceLimit(t *testing.T) {
	const gib, mib = 1 << 30, 1 << 20
	for _, tc := range []struct {
		name                      string
		requested, avail, gpuFree uint64
		want                      uint64
	}{
		{"default fits", 0, 8 * gib, 0, DefaultWorkspace},
		{"capped by half of MemAvailable", 4 * gib, 4 * gib, 0, 2 * gib},
		{"capped by GPU free memory", 4 * gib, 64 * gib, 3 * gib, 1536 * mib},
		{"request below caps", 256 * mib, 64 * gib, 24 * gib, 256 * mib},
	} {
		got, err := WorkspaceLimit(tc.requested, tc.avail, tc.gpuFree)
		if err != nil || got != tc.want {
			t.Errorf("%s: %d MiB, %v; want %d MiB", tc.name, got>>20, err, tc.want>>20)
		}
	}
	_, err := WorkspaceLimit(0, 100*mib, 0)
	if err == nil || !strings.Contains(err.Error(), "only 50 MiB") {
		t.Errorf("starved machine: %v", err)
	}
}

func TestL4TRelease(t *testing.T) {
	const orin = "# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64, DATE: Sun Mar 19 15:19:21 UTC 2023\n# KERNEL_VARIANT: oot\n"
	root := writeRoot(t, map[string]string{"etc/nv_tegra_release": orin})
	got, err := L4TRelease(root)
	if err != nil || got != "35.3.1" {
		t.Fatalf("L4TRelease = %q, %v", got, err)
	}
	if got, err := L4TRelease(t.TempDir()); got != "" || err != nil {
		t.Errorf("non-Jetson: %q, %v", got, err)
	}
	for _, tc := range []struct{ data, want string }{
		{"hello\n", `nv_tegra_release:1: want "# R<major>`},
		{"# R36 (release), GCID: 1\n", "no REVISION field"},
		{"# R36 (release), REVISION: x.y\n", `REVISION "x.y" is not a version`},
	} {
		_, err := ParseTegraRelease("/etc/nv_tegra_release", []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.data, err, tc.want)
		}
	}
}

func TestBuildOptionsNormalized(t *testing.T) {
	o, err := BuildOptions{OptBatch: 4}.normalized()
	if err != nil || o.Precision != FP16 || o.MinBatch != 1 || o.MaxBatch != DefaultMaxBatch || o.WorkspaceBytes != DefaultWorkspace {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	if got := o.layerPrecisions(); len(got) != 1 || got[0] != "layernorm=fp32" {
		t.Errorf("FP16 build keeps LayerNorm rule: %v", got)
	}
	if o, _ := (BuildOptions{OptBatch: 32}).normalized(); o.MaxBatch != 32 {
		t.Errorf("max batch below opt: %d", o.MaxBatch)
	}
	for _, bad := range []BuildOptions{{MinBatch: 4, OptBatch: 2}, {OptBatch: 8, MaxBatch: 4}, {Precision: "int8"}, {MinBatch: -1}} {
		if _, err := bad.normalized(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestVersionRendering(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{trtVersion(8503), "8.5.3"},
		{trtVersion(8602), "8.6.2"},
		{trtVersion(100300), "10.3.0"},
		{parserVersion(100300), "10.3.0"},
		{cudaVersion(12020), "12.2"},
		{cudaVersion(11040), "11.4"},
		{cudaVersion(0), "none"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
