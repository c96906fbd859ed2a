package telemetry

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
	if data, err := os.ReadFile(filepath.Join(root, "proc/meminfo")); err == nil {
		if total, avail, err := parseMeminfo(string(data)); err == nil {
			used := total - avail
			gpu.MemoryTotalBytes, gpu.MemoryUsedBytes = &total, &used
		}
	}
	if w, ok := gpuPower(root); ok {
		gpu.PowerW = &w
	}
	if model, err := os.ReadFile(filepath.Join(root, "proc/device-tree/model")); err == nil {
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

func readTrimmed(path string) (string, error) {
	data, err := os.ReadFile(path)
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

// parseMeminfo returns MemTotal and MemAvailable in bytes.
func parseMeminfo(text string) (total, available uint64, err error) {
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, rest, found := strings.Cut(sc.Text(), ":")
		if !found || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("meminfo %s: unexpected value %q", key, rest)
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("meminfo %s: %w", key, err)
		}
		if key == "MemTotal" {
			total, haveTotal = kb*1024, true
		} else {
			available, haveAvail = kb*1024, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, errors.New("meminfo lacks MemTotal or MemAvailable")
	}
	if available > total {
		return 0, 0, errors.New("meminfo MemAvailable exceeds MemTotal")
	}
	return total, available, nil
}
