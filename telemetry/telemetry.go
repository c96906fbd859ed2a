// Package telemetry reports GPU temperature, load, memory and power for the
// status endpoint and logs.
//
// Discrete NVIDIA GPUs are read through NVML (libnvidia-ml.so.1, loaded at
// run time by go-nvml, so clipd builds and runs without the driver). When
// NVML is absent, as on Jetson boards, the integrated GPU is read from sysfs:
//
//   - Load: /sys/class/devfreq/<node>/device/load, in tenths of a percent.
//     The GPU's devfreq node is the one whose device/of_node/name is ga10b
//     (Orin, JetPack 5: node 17000000.ga10b), gv11b (Xavier: 17000000.gv11b),
//     gp10b (TX2: 17000000.gp10b), gm20b or gpu (Nano/TX1: 57000000.gpu;
//     Orin on JetPack 6: 17000000.gpu). If no devfreq node matches,
//     /sys/devices/gpu.0/load (Nano/TX1/TX2) and
//     /sys/devices/platform/gpu.0/load are tried. This is the method used by
//     jetson-stats (jtop).
//   - Temperature: /sys/class/thermal/thermal_zone*/temp (millidegrees C) of
//     the zone whose type is GPU-therm (Xavier, Orin, Nano) or gpu-thermal
//     (mainline device trees).
//   - Memory: the GPU shares RAM with the CPU, so total/used are MemTotal and
//     MemTotal-MemAvailable from /proc/meminfo.
//   - Power: the INA3221 rail whose hwmon label names the GPU (VDD_GPU_SOC on
//     Orin, GPU on older boards),
//     /sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in<N>_label with
//     in<N>_input (mV) × curr<N>_input (mA). On Orin the rail includes the SoC.
//
// Every sysfs path is rooted in Options.Root so tests read fake trees. A
// missing file or sensor makes its field absent (nil), never an error.
package telemetry

import (
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Options configures a Reader.
type Options struct {
	// Root is prefixed to every sysfs and procfs path; "" means "/".
	Root string
	// NVMLLibrary is the NVML shared library; "" means libnvidia-ml.so.1
	// from the loader's search path.
	NVMLLibrary string
	// DisableNVML skips NVML, e.g. when Root points at a fake tree.
	DisableNVML bool
}

// Sources named in Snapshot.Source.
const (
	SourceNVML        = "nvml"
	SourceJetsonSysfs = "jetson-sysfs"
)

// Snapshot is one reading of every GPU found.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Source is SourceNVML, SourceJetsonSysfs, or "" when no GPU was found.
	Source string `json:"source,omitempty"`
	// NVML says whether NVML is in use, or why not ("absent: ...").
	NVML string `json:"nvml"`
	// Board is the device-tree model on Jetson boards.
	Board string `json:"board,omitempty"`
	GPUs  []GPU  `json:"gpus,omitempty"`
}

// GPU is one device. Pointer fields are nil when the hardware or driver does
// not report them.
type GPU struct {
	Index            int      `json:"index"`
	Name             string   `json:"name,omitempty"`
	Integrated       bool     `json:"integrated,omitempty"`
	TemperatureC     *float64 `json:"temperature_c,omitempty"`
	UtilizationPct   *float64 `json:"utilization_pct,omitempty"`
	MemoryUsedBytes  *uint64  `json:"memory_used_bytes,omitempty"`
	MemoryTotalBytes *uint64  `json:"memory_total_bytes,omitempty"`
	PowerW           *float64 `json:"power_w,omitempty"`
}

// Reader reads GPU telemetry. NVML is initialized once, in New, and shut
// down by Close; Read is safe for concurrent use.
type Reader struct {
	opts Options

	mu         sync.Mutex
	nvml       nvml.Interface // nil when not initialized
	nvmlStatus string
	closed     bool
}

// New prepares a Reader. It never fails: a missing NVML is a state that
// Read reports, not an error.
func New(opts Options) *Reader {
	if opts.Root == "" {
		opts.Root = "/"
	}
	r := &Reader{opts: opts}
	if opts.DisableNVML {
		r.nvmlStatus = "disabled"
		return r
	}
	var lib nvml.Interface
	if opts.NVMLLibrary != "" {
		lib = nvml.New(nvml.WithLibraryPath(opts.NVMLLibrary))
	} else {
		lib = nvml.New()
	}
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
		r.nvml = lib
		r.nvmlStatus = "ok"
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		name := opts.NVMLLibrary
		if name == "" {
			name = "libnvidia-ml.so.1"
		}
		r.nvmlStatus = "absent: " + name + " not found"
	default:
		r.nvmlStatus = "absent: " + nvmlError(lib, ret)
	}
	return r
}

// Read takes a snapshot: NVML devices when NVML works and reports at least
// one, otherwise the Jetson integrated GPU when its sysfs nodes exist.
func (r *Reader) Read() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	snap := Snapshot{Time: time.Now(), NVML: r.nvmlStatus}
	if r.closed {
		snap.NVML = "closed"
		return snap
	}
	if r.nvml != nil {
		if gpus := readNVML(r.nvml); len(gpus) > 0 {
			snap.Source = SourceNVML
			snap.GPUs = gpus
			return snap
		}
	}
	if gpu, board, ok := readJetson(r.opts.Root); ok {
		snap.Source = SourceJetsonSysfs
		snap.Board = board
		snap.GPUs = []GPU{gpu}
	}
	return snap
}

// Close shuts NVML down. Reads after Close return empty snapshots.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.nvml == nil {
		return nil
	}
	if ret := r.nvml.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("telemetry: nvml shutdown: %s", nvmlError(r.nvml, ret))
	}
	return nil
}

func nvmlError(lib nvml.Interface, ret nvml.Return) string {
	return lib.ErrorString(ret)
}

func readNVML(lib nvml.Interface) []GPU {
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	gpus := make([]GPU, 0, count)
	for i := 0; i < count; i++ {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		g := GPU{Index: i}
		if name, ret := lib.DeviceGetName(dev); ret == nvml.SUCCESS {
			g.Name = name
		}
		if t, ret := lib.DeviceGetTemperature(dev, nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
			g.TemperatureC = ptr(float64(t))
		}
		if u, ret := lib.DeviceGetUtilizationRates(dev); ret == nvml.SUCCESS {
			g.UtilizationPct = ptr(float64(u.Gpu))
		}
		if m, ret := lib.DeviceGetMemoryInfo(dev); ret == nvml.SUCCESS {
			g.MemoryUsedBytes = ptr(m.Used)
			g.MemoryTotalBytes = ptr(m.Total)
		}
		if mw, ret := lib.DeviceGetPowerUsage(dev); ret == nvml.SUCCESS {
			g.PowerW = ptr(float64(mw) / 1000)
		}
		gpus = append(gpus, g)
	}
	return gpus
}

func ptr[T any](v T) *T { return &v }
