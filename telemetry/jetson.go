package telemetry

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/clipd/clipd/internal/procfs"
	"github.com/clipd/clipd/internal/safefile"
)

// jetsonGPUNodeNames are the device-tree node names of Tegra integrated GPUs
// (device/of_node/name of their devfreq node).
var jetsonGPUNodeNames = map[string]bool{"ga10b": true, "gv11b": true, "gp10b": true, "gm20b": true, "gpu": true}

// Fallback load files of boards whose GPU has no devfreq node.
var jetsonLoadFallbacks = []string{"sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load"}

// readJetson reads the integrated GPU; ok is false when root shows no Tegra
// GPU at all (no load file), so that a PC without NVML reports no GPU.
func readJetson(root string) (gpu GPU, board string, ok bool) {
	name, loadPath := findJetsonGPU(root)
	if loadPath == "" {
		return GPU{}, "", false
	}
	gpu = GPU{Index: 0, Name: name, Integrated: true}
	if text, err := readTrimmed(loadPath); err == nil {
		if pct, err := parsePerMille(text); err == nil {
			gpu.UtilizationPct = &pct
		}
	}
	if t, ok := gpuTemperature(root); ok {
		gpu.TemperatureC = &t
	}
	if mem, err := procfs.ReadMeminfo(root); err == nil {
		total, used := mem.Total, mem.Total-mem.Available
		gpu.MemoryTotalBytes, gpu.MemoryUsedBytes = &total, &used
	}
	if w, ok := gpuPower(root); ok {
		gpu.PowerW = &w
	}
	if model, err := safefile.ReadFile(filepath.Join(root, "proc/device-tree/model"), maxSysfsBytes); err == nil {
		board = strings.TrimRight(string(model), "\x00\n ")
	}
	return gpu, board, true
}

func findJetsonGPU(root string) (name, loadPath string) {
	nodes, _ := filepath.Glob(filepath.Join(root, "sys/class/devfreq/*"))
	sort.Strings(nodes)
	for _, node := range nodes {
		ofName, err := readTrimmed(filepath.Join(node, "device/of_node/name"))
		if err != nil || !jetsonGPUNodeNames[strings.TrimRight(ofName, "\x00")] {
			continue
		}
		load := filepath.Join(node, "device/load")
		if _, err := os.Stat(load); err == nil {
			return strings.TrimRight(ofName, "\x00"), load
		}
	}
	for _, rel := range jetsonLoadFallbacks {
		load := filepath.Join(root, rel)
		if _, err := os.Stat(load); err == nil {
			return "gpu", load
		}
	}
	return "", ""
}

func gpuTemperature(root string) (float64, bool) {
	zones, _ := filepath.Glob(filepath.Join(root, "sys/class/thermal/thermal_zone*"))
	sort.Strings(zones)
	for _, zone := range zones {
		typ, err := readTrimmed(filepath.Join(zone, "type"))
		if err != nil || !isGPUThermalZone(typ) {
			continue
		}
		text, err := readTrimmed(filepath.Join(zone, "temp"))
		if err != nil {
			continue
		}
		if c, err := parseMilli(text); err == nil {
			return c, true
		}
	}
	return 0, false
}

func isGPUThermalZone(typ string) bool {
	t := strings.ToLower(typ)
	return t == "gpu-therm" || t == "gpu-thermal"
}

func gpuPower(root string) (float64, bool) {
	labels, _ := filepath.Glob(filepath.Join(root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"))
	sort.Strings(labels)
	for _, labelPath := range labels {
		label, err := readTrimmed(labelPath)
		if err != nil || !strings.Contains(strings.ToUpper(label), "GPU") {
			continue
		}
		channel := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(labelPath), "in"), "_label")
		dir := filepath.Dir(labelPath)
		mv, err1 := readTrimmed(filepath.Join(dir, "in"+channel+"_input"))
		ma, err2 := readTrimmed(filepath.Join(dir, "curr"+channel+"_input"))
		if err1 != nil || err2 != nil {
			continue
		}
		if w, err := parsePowerW(mv, ma); err == nil {
			return w, true
		}
	}
	return 0, false
}

// maxSysfsBytes bounds reads of sysfs attributes, which hold a page at most.
const maxSysfsBytes = 64 << 10

func readTrimmed(path string) (string, error) {
	data, err := safefile.ReadFile(path, maxSysfsBytes)
	return strings.TrimSpace(string(data)), err
}

// parsePerMille converts a devfreq load (0..1000) to percent.
func parsePerMille(s string) (float64, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > 1000 {
		return 0, fmt.Errorf("GPU load %q is not 0..1000", s)
	}
	return float64(v) / 10, nil
}

// parseMilli converts a thermal zone reading (millidegrees) to degrees.
func parseMilli(s string) (float64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("temperature %q is not an integer", s)
	}
	return float64(v) / 1000, nil
}

func parsePowerW(millivolts, milliamps string) (float64, error) {
	mv, err1 := strconv.ParseUint(millivolts, 10, 32)
	ma, err2 := strconv.ParseUint(milliamps, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("INA3221 reading %q mV, %q mA is not numeric", millivolts, milliamps)
	}
	return float64(mv) * float64(ma) / 1e6, nil
}
