package procfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleMeminfo = `MemTotal:       31776196 kB
MemFree:         1269164 kB
MemAvailable:    4194304 kB
Buffers:          345224 kB
`

func TestReadMeminfo(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "proc", "meminfo"), []byte(sampleMeminfo), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMeminfo(root)
	if err != nil || got != (Meminfo{Total: 31776196 * 1024, Available: 4194304 * 1024}) {
		t.Fatalf("ReadMeminfo = %+v, %v", got, err)
	}
	if _, err := ReadMeminfo(t.TempDir()); err == nil {
		t.Error("missing meminfo accepted")
	}
	// The real file, for the shape of what this kernel writes.
	if m, err := ReadMeminfo("/"); err != nil || m.Total == 0 || m.Available == 0 {
		t.Errorf("/proc/meminfo: %+v, %v", m, err)
	}
}

func TestParseMeminfoErrors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"", "no MemAvailable line"},
		{"MemTotal: 1 kB\n", "no MemAvailable line"},
		{"MemAvailable: 1 kB\n", "no MemTotal line"},
		{"MemTotal: 1 kB\nMemAvailable: lots kB\n", "meminfo:2: MemAvailable"},
		{"MemAvailable: 12 MB\n", `want "<number> kB"`},
		{"MemTotal: 1 kB\nMemAvailable: 2 kB\n", "exceeds MemTotal"},
		{"MemTotal: 99999999999999999999 kB\nMemAvailable: 2 kB\n", "not a size"},
	} {
		_, err := ParseMeminfo("/proc/meminfo", []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.data, err, tc.want)
		}
	}
}

func TestReadProcessOfThisProcess(t *testing.T) {
	before, err := ReadProcess("/", os.Getpid())
	if err != nil || before.RSSBytes < 1<<20 || before.FDs < 3 {
		t.Fatalf("ReadProcess = %+v, %v", before, err)
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, _ := ReadProcess("/", os.Getpid())
	if after.FDs != before.FDs+1 {
		t.Errorf("fds %d after opening one file, %d before", after.FDs, before.FDs)
	}
}
