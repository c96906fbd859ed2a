package history

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHostileSegmentFiles puts files where segments go that are not what
// they claim: the store opens, leaves them out, says so, and keeps the
// good ones.
func TestHostileSegmentFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(dir)
	s := addCrashRecords(t, cfg, 20)
	s.Close()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A FIFO (opening it must not block), a symlink, a file too large to
	// be a segment (sparse), garbage, a header with a huge dimension.
	must(syscall.Mkfifo(filepath.Join(dir, segmentName(kindVectors, 0x100)), 0o600))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, segmentName(kindVectors, 0x101))))
	big, err := os.Create(filepath.Join(dir, segmentName(kindVectors, 0x102)))
	must(err)
	must(big.Truncate(maxSegmentFile + 1))
	big.Close()
	must(os.WriteFile(filepath.Join(dir, segmentName(kindThumbnails, 0x103)), bytes.Repeat([]byte("garbage!"), 100), 0o600))
	h := encodeHeader(segHeader{kind: kindVectors, id: 0x104, dim: 16, model: "m"})
	h[12] = 0xff // dimension, under a now wrong checksum
	must(os.WriteFile(filepath.Join(dir, segmentName(kindVectors, 0x104)), h, 0o600))
	// The right header under another file's name.
	must(os.WriteFile(filepath.Join(dir, segmentName(kindVectors, 0x105)), encodeHeader(segHeader{kind: kindVectors, id: 0x999, dim: 16, model: "m"}), 0o600))
	must(os.WriteFile(filepath.Join(dir, "v-notanumber.seg"), []byte("ignored"), 0o600))
	// Upper-case hex is not a name the store writes: ignored, not a bad
	// segment for ever (it was opened by its lower-case name, and failed).
	must(os.WriteFile(filepath.Join(dir, "v-00000000000000AB.seg"), encodeHeader(segHeader{kind: kindVectors, id: 0xab, dim: 16, model: "m"}), 0o600))

	logs := &logBuffer{}
	cfg.Log = logs.logger()
	done := make(chan *Store)
	go func() {
		s, err := Open(cfg)
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	var s2 *Store
	select {
	case s2 = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Open blocked (on the FIFO?)")
	}
	if s2 == nil {
		t.FailNow()
	}
	defer s2.Close()
	if n := checkRecords(t, s2); n != 20 {
		t.Fatalf("%d good records, want 20", n)
	}
	st := s2.Status()
	if st.BadSegments != 6 {
		t.Fatalf("%d bad segments, want 6; log:\n%s", st.BadSegments, logs.String())
	}
	for _, want := range []string{"not a regular file", "too many levels of symbolic links", "more than a segment may hold", "bad magic", "checksum mismatch", "header says v-0000000000000999.seg"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}
	// A search skips them.
	if _, err := s2.Search(t.Context(), Query{Model: "m", Embedding: randomUnit(rand.New(rand.NewPCG(1, 1)), crashDim)}); err != nil {
		t.Fatal(err)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"2h":                        now.Add(-2 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"3d":                        now.Add(-72 * time.Hour),
		"2026-02-28T10:00:00Z":      time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC),
		"2026-02-28T10:00:00+01:00": time.Date(2026, 2, 28, 9, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-2h", "2", "d", "1.5d", "99999999999d", "2026-02-30T10:00:00Z"} {
		if _, err := ParseTime(in, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", in)
		}
	}
}

func TestParseTargets(t *testing.T) {
	got, err := ParseTargets([]string{"drive", "drive/gate", "yard/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []TargetFilter{{Camera: "drive"}, {Camera: "drive", Region: "gate"}, {Camera: "yard", WholeFrame: true}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, f := range []struct {
		f    TargetFilter
		t    Target
		want bool
	}{
		{want[0], Target{Camera: "drive", Region: "gate"}, true},
		{want[0], Target{Camera: "drive"}, true},
		{want[1], Target{Camera: "drive"}, false},
		{want[2], Target{Camera: "yard"}, true},
		{want[2], Target{Camera: "yard", Region: "shed"}, false},
	} {
		if f.f.matches(f.t) != f.want {
			t.Errorf("%+v matches %v: %v", f.f, f.t, !f.want)
		}
	}
	for _, in := range []string{"", "/gate", "a/b/c", strings.Repeat("x", 65), "cam\n"} {
		if _, err := ParseTargets([]string{in}); err == nil {
			t.Errorf("ParseTargets(%q) accepted", in)
		}
	}
}

// The catalog's journal files are type-checked like the catalog: SQLite
// would follow a symlink there.
func TestHostileCatalogJournal(t *testing.T) {
	for _, name := range []string{"history.db-wal", "history.db-shm"} {
		dir := t.TempDir()
		s := openTest(t, Config{Dir: dir})
		s.Close()
		os.Remove(filepath.Join(dir, name))
		if err := os.Symlink("/etc/passwd", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), name+": not a regular file") {
			t.Errorf("%s a symlink: Open says %v", name, err)
		}
	}
}
