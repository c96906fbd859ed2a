package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t testing.TB, root, rel, content string) {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const meminfo = "MemTotal:       32374056 kB\nMemFree:         1000000 kB\nMemAvailable:   24374056 kB\nBuffers: 1 kB\n"

// fakeOrin lays out the files of a Jetson AGX Orin (JetPack 5) as they are
// on the board: the devfreq entry is a symlink into the platform device.
func fakeOrin(t testing.TB) string {
	root := t.TempDir()
	dev := "sys/devices/platform/17000000.ga10b"
	write(t, root, dev+"/of_node/name", "ga10b\x00")
	write(t, root, dev+"/load", "374\n")
	write(t, root, dev+"/devfreq/17000000.ga10b/cur_freq", "1300500000\n")
	if err := os.MkdirAll(filepath.Join(root, "sys/class/devfreq"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The EMC's devfreq node comes first and must be skipped.
	write(t, root, "sys/devices/platform/bus@0/2c60000.external-memory-controller/of_node/name", "external-memory-controller\x00")
	write(t, root, "sys/devices/platform/bus@0/2c60000.external-memory-controller/load", "999\n")
	write(t, root, "sys/devices/platform/bus@0/2c60000.external-memory-controller/devfreq/emc/cur_freq", "1\n")
	for link, target := range map[string]string{
		"sys/class/devfreq/17000000.ga10b": dev + "/devfreq/17000000.ga10b",
		"sys/class/devfreq/10000000.emc":   "sys/devices/platform/bus@0/2c60000.external-memory-controller/devfreq/emc",
	} {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	// devfreq's "device" link points at the parent device.
	emc := "sys/devices/platform/bus@0/2c60000.external-memory-controller"
	for target, link := range map[string]string{dev: dev + "/devfreq/17000000.ga10b/device", emc: emc + "/devfreq/emc/device"} {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}

	write(t, root, "sys/class/thermal/thermal_zone0/type", "CPU-therm\n")
	write(t, root, "sys/class/thermal/thermal_zone0/temp", "52000\n")
	write(t, root, "sys/class/thermal/thermal_zone1/type", "GPU-therm\n")
	write(t, root, "sys/class/thermal/thermal_zone1/temp", "48562\n")
	write(t, root, "proc/meminfo", meminfo)
	hw := "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/"
	write(t, root, hw+"in1_label", "VDD_GPU_SOC\n")
	write(t, root, hw+"in1_input", "5080\n")
	write(t, root, hw+"curr1_input", "1500\n")
	write(t, root, hw+"in2_label", "VDD_CPU_CV\n")
	write(t, root, hw+"in2_input", "5080\n")
	write(t, root, hw+"curr2_input", "400\n")
	write(t, root, "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
	return root
}

func TestJetsonOrin(t *testing.T) {
	r := New(Options{Root: fakeOrin(t), DisableNVML: true})
	defer r.Close()
	snap := r.Read()
	if snap.Source != SourceJetsonSysfs || snap.Board != "NVIDIA Jetson AGX Orin Developer Kit" || len(snap.GPUs) != 1 {
		t.Fatalf("snapshot = %+v", snap)
	}
	g := snap.GPUs[0]
	if g.Name != "ga10b" || !g.Integrated {
		t.Errorf("name %q integrated %v", g.Name, g.Integrated)
	}
	check := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("utilization", g.UtilizationPct, 37.4)
	check("temperature", g.TemperatureC, 48.562)
	check("power", g.PowerW, 7.62)
	if g.MemoryTotalBytes == nil || *g.MemoryTotalBytes != 32374056*1024 ||
		g.MemoryUsedBytes == nil || *g.MemoryUsedBytes != 8000000*1024 {
		t.Errorf("memory used %v total %v", g.MemoryUsedBytes, g.MemoryTotalBytes)
	}
}

// A Nano has no devfreq of_node match, only /sys/devices/gpu.0/load, and
// no INA3221 hwmon: power must be absent, not zero.
func TestJetsonNanoFallbackAndAbsentFields(t *testing.T) {
	root := t.TempDir()
	write(t, root, "sys/devices/gpu.0/load", "1000\n")
	write(t, root, "sys/class/thermal/thermal_zone2/type", "gpu-thermal\n")
	write(t, root, "sys/class/thermal/thermal_zone2/temp", "not a number\n")
	r := New(Options{Root: root, DisableNVML: true})
	defer r.Close()
	snap := r.Read()
	if len(snap.GPUs) != 1 {
		t.Fatalf("snapshot = %+v", snap)
	}
	g := snap.GPUs[0]
	if g.UtilizationPct == nil || *g.UtilizationPct != 100 {
		t.Errorf("utilization = %v", g.UtilizationPct)
	}
	if g.TemperatureC != nil || g.PowerW != nil || g.MemoryTotalBytes != nil {
		t.Errorf("unreadable fields reported: %+v", g)
	}
	data, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"temperature_c", "power_w", "memory_total_bytes", "board"} {
		if strings.Contains(string(data), absent) {
			t.Errorf("JSON has absent field %s: %s", absent, data)
		}
	}
	if !strings.Contains(string(data), `"utilization_pct":100`) {
		t.Errorf("JSON lacks utilization: %s", data)
	}
}

func TestNoGPU(t *testing.T) {
	root := t.TempDir()
	write(t, root, "proc/meminfo", meminfo)
	r := New(Options{Root: root, DisableNVML: true})
	defer r.Close()
	if snap := r.Read(); snap.Source != "" || len(snap.GPUs) != 0 || snap.NVML != "disabled" {
		t.Fatalf("snapshot of a machine without GPU = %+v", snap)
	}
}

// This machine has no NVIDIA driver: NVML must be reported absent and the
// reader must still work (and Close must not fail).
func TestNVMLAbsent(t *testing.T) {
	r := New(Options{Root: t.TempDir(), NVMLLibrary: filepath.Join(t.TempDir(), "libnvidia-ml.so.1")})
	snap := r.Read()
	if !strings.HasPrefix(snap.NVML, "absent: ") || !strings.Contains(snap.NVML, "libnvidia-ml.so.1 not found") {
		t.Fatalf("NVML status = %q", snap.NVML)
	}
	if len(snap.GPUs) != 0 {
		t.Fatalf("GPUs without NVML or sysfs: %+v", snap.GPUs)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if snap := r.Read(); snap.NVML != "closed" {
		t.Fatalf("Read after Close = %+v", snap)
	}
}

// With the default library name, a machine with an NVIDIA driver must list
// its GPUs through NVML; one without must say NVML is absent.
func TestDefaultNVML(t *testing.T) {
	r := New(Options{})
	defer r.Close()
	snap := r.Read()
	if snap.NVML == "ok" {
		if snap.Source != SourceNVML || len(snap.GPUs) == 0 || snap.GPUs[0].Name == "" || snap.GPUs[0].MemoryTotalBytes == nil {
			t.Fatalf("NVML up but snapshot = %+v", snap)
		}
		return
	}
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		t.Fatalf("/dev/nvidiactl exists but NVML: %s", snap.NVML)
	}
	if !strings.HasPrefix(snap.NVML, "absent: ") {
		t.Fatalf("NVML status = %q", snap.NVML)
	}
}

func TestParsers(t *testing.T) {
	if _, err := parsePerMille("1001"); err == nil {
		t.Error("load 1001 accepted")
	}
	if v, err := parseMilli("-5500"); err != nil || v != -5.5 {
		t.Errorf("parseMilli(-5500) = %v, %v", v, err)
	}
}

func BenchmarkReadJetson(b *testing.B) {
	root := fakeOrin(b)
	r := New(Options{Root: root, DisableNVML: true})
	defer r.Close()
	for b.Loop() {
		if len(r.Read().GPUs) != 1 {
			b.Fatal("no GPU")
		}
	}
}
