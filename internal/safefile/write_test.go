package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := WriteAtomic(path, []byte("new"), mtime); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("read back %q, %v; want new", got, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 || !info.ModTime().Equal(mtime) {
		t.Errorf("mode %v mtime %v; want 0644 and %v", info.Mode().Perm(), info.ModTime(), mtime)
	}
	if err := WriteAtomic(filepath.Join(dir, "missing", "x"), []byte("y"), time.Time{}); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if len(ents) != 1 {
		t.Errorf("%d entries in the directory, want only out.json", len(ents))
	}
}
