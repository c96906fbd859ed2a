package history

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crash tests run the test binary again as a child that writes to a
// store until it is killed (or fills its file-size limit), then reopen
// the store here.

const (
	childDirEnv   = "CLIPD_HISTORY_CHILD_DIR"
	childStartEnv = "CLIPD_HISTORY_CHILD_START"
	childFsizeEnv = "CLIPD_HISTORY_CHILD_FSIZE"
	crashDim      = 512
)

// crashEmbedding is record seq's embedding, the same in child and parent.
func crashEmbedding(seq uint64) []float32 {
	return randomUnit(rand.New(rand.NewPCG(seq, 99)), crashDim)
}

// crashConfig is a store in dir that records every frame and keeps them
// all, whatever the records' times.
func crashConfig(dir string) Config {
	return Config{Dir: dir, Every: time.Millisecond, Now: func() time.Time { return epoch.Add(1000 * time.Hour) }, Retention: 10000 * time.Hour}
}

// addCrashRecords opens a store with cfg and writes records 0 to n-1 to
// disk; the store is left open.
func addCrashRecords(t testing.TB, cfg Config, n uint64) *Store {
	t.Helper()
	s := openTest(t, cfg)
	for seq := range n {
		s.Add(crashRecord(seq))
	}
	flush(t, s)
	return s
}

func crashRecord(seq uint64) Record {
	r := Record{Target: Target{Camera: "cam", Region: []string{"", "door"}[seq%2]}, Time: epoch.Add(time.Duration(seq) * time.Second),
		Seq: seq, Model: "m", Embedding: crashEmbedding(seq), TopLabel: "l" + strconv.Itoa(int(seq%7)), LabelsVersion: seq / 50}
	if seq%5 == 0 {
		r.Changed = true // always stored, with a thumbnail
		r.Thumbnail = []byte(fmt.Sprintf("thumbnail %d %s", seq, strings.Repeat("#", int(seq%300))))
	}
	return r
}

// TestCrashChild is the child: it does nothing unless run by a crash test.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		return
	}
	if fsize := os.Getenv(childFsizeEnv); fsize != "" {
		n, _ := strconv.ParseUint(fsize, 10, 64)
		lim := unix.Rlimit{Cur: n, Max: n}
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
			fmt.Println("setrlimit:", err)
			os.Exit(2)
		}
	}
	start, _ := strconv.ParseUint(os.Getenv(childStartEnv), 10, 64)
	s, err := Open(Config{Dir: dir, Every: time.Millisecond, PauseRetry: time.Hour, Now: func() time.Time { return epoch.Add(1000 * time.Hour) },
		Retention: 10000 * time.Hour})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for seq := start; seq < start+1_000_000; seq++ {
		s.Add(crashRecord(seq))
		if seq%10 == 9 {
			s.Flush(context.Background())
			st := s.Status()
			fmt.Fprintf(out, "durable %d\n", seq+1)
			if st.Paused {
				b, _ := json.Marshal(st)
				fmt.Fprintf(out, "paused %s\n", b)
				out.Flush()
				s.Close()
				os.Exit(0)
			}
			out.Flush()
		}
	}
	os.Exit(3)
}

func startChild(t *testing.T, dir string, start uint64, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childStartEnv+"="+strconv.FormatUint(start, 10))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(stdout)
}

// checkRecords verifies that the store holds records 0..n-1 of
// crashRecord, each exactly, in order, and returns n.
func checkRecords(t *testing.T, s *Store) uint64 {
	t.Helper()
	return checkRecordsAfterKills(t, s, 1)
}

// checkRecordsAfterKills is checkRecords for a store that was killed
// kills times while writing: each kill may have kept a record without its
// thumbnail, and such a loss is for good.
func checkRecordsAfterKills(t *testing.T, s *Store, kills int) uint64 {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var next uint64
	var thumbs int
	for _, seg := range s.segs {
		if seg.bad {
			continue // TestHostileSegmentFiles makes some; the others check Status
		}
		if seg.kind == kindThumbnails {
			thumbs += int(seg.count.Load())
			continue
		}
		for i := range int(seg.count.Load()) {
			rec := seg.record(i)
			if !recordValid(rec) {
				t.Fatalf("%s record %d: bad checksum", seg.path, i)
			}
			m := parseMeta(rec)
			want := crashRecord(next)
			if m.seq != next || m.time != want.Time.UnixNano() || s.targets[m.target] != want.Target || s.labels[m.label] != want.TopLabel ||
				m.labelsVersion != want.LabelsVersion || (m.flags&flagChanged != 0) != want.Changed {
				t.Fatalf("%s record %d: %+v, want seq %d", seg.path, i, m, next)
			}
			v := stored(want.Embedding)
			for d := range crashDim {
				if got := fromHalf(uint16(rec[recHeaderSize+2*d]) | uint16(rec[recHeaderSize+2*d+1])<<8); float64(got) != v[d] {
					t.Fatalf("seq %d: value %d is %v, want %v", next, d, got, v[d])
				}
			}
			next++
		}
	}
	// Thumbnails of every fifth record, each readable.
	n, err := s.cat.thumbCount()
	if err != nil || n != int64(thumbs) {
		t.Fatalf("catalog has %d thumbnails, segments %d (%v)", n, thumbs, err)
	}
	// A thumbnail is written after its record: a kill between the two
	// may keep the record alone.
	if want := int((next + 4) / 5); thumbs < want-kills || thumbs > want {
		t.Fatalf("%d thumbnails for %d records after %d kills, want %d (or up to one less a kill)", thumbs, next, kills, want)
	}
	return next
}

func TestKill9DuringWrites(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var have uint64
	var torn int64
	for round := range 6 {
		cmd, lines := startChild(t, dir, have)
		target := have + 50 + uint64(r.IntN(400))
		var durable uint64
		for durable < target && lines.Scan() {
			if n, ok := strings.CutPrefix(lines.Text(), "durable "); ok {
				durable, _ = strconv.ParseUint(n, 10, 64)
			}
		}
		if durable < target {
			t.Fatalf("round %d: child stopped at %d records: %v", round, durable, lines.Err())
		}
		// Kill at a random point of the next writes.
		time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		logs := &logBuffer{}
		s, err := Open(Config{Dir: dir, Log: logs.logger(), Every: time.Millisecond, Now: func() time.Time { return epoch.Add(1000 * time.Hour) },
			Retention: 10000 * time.Hour})
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		n := checkRecordsAfterKills(t, s, round+1)
		st := s.Status()
		if n < durable || st.Records != int64(n) || st.BadSegments != 0 {
			t.Fatalf("round %d: %d records after kill -9 (status %d), %d were durable", round, n, st.Records, durable)
		}
		if st.TornBytes > 0 && !strings.Contains(logs.String(), "torn tail") {
			t.Fatalf("round %d: torn bytes %d without a log line", round, st.TornBytes)
		}
		torn += st.TornBytes
		t.Logf("round %d: %d durable, %d kept, %d torn bytes discarded", round, durable, n, st.TornBytes)
		s.Close()
		have = n
	}
	t.Logf("%d records over 6 kills, %d torn bytes discarded in all", have, torn)
}

// TestTornTails cuts and damages segment files the way a crash leaves
// them, deterministically: a half-written record, a half-written
// thumbnail, a damaged record in a segment that was never sealed.
func TestTornTails(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(dir)
	s := addCrashRecords(t, cfg, 100)
	s.Close()
	vec, thumb := lastSegment(t, dir, kindVectors), lastSegment(t, dir, kindThumbnails)

	// A torn record and a torn thumbnail at the ends of sealed segments.
	appendBytes(t, vec, make([]byte, recordSize(crashDim)/2))
	entry := encodeThumb(thumbMeta{length: 100, target: 1, time: 5, seq: 5}, make([]byte, 100))
	appendBytes(t, thumb, entry[:len(entry)-3])
	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	if n := checkRecords(t, s2); n != 100 {
		t.Fatalf("%d records, want 100", n)
	}
	if st := s2.Status(); st.TornBytes != int64(recordSize(crashDim)/2+len(entry)-3) || !strings.Contains(logs.String(), "torn tail") {
		t.Fatalf("torn bytes %d; log:\n%s", st.TornBytes, logs.String())
	}
	s2.Close()

	// A record damaged in a segment the catalog never saw sealed: the
	// records before it stay, it and those after go.
	if _, err := s2.cat.db.Exec(`SELECT 1`); err == nil {
		t.Fatal("catalog still open after Close")
	}
	cat, err := openCatalog(filepath.Join(dir, "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	id := segIDOf(t, vec)
	if _, err := cat.db.Exec(`UPDATE segments SET sealed=0 WHERE id=?`, id); err != nil {
		t.Fatal(err)
	}
	cat.close()
	f, err := os.OpenFile(vec, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	seg := lastSegmentCount(t, vec)
	damaged := seg - 3
	f.WriteAt([]byte{0xff}, int64(headerSize+damaged*recordSize(crashDim)+recHeaderSize+7))
	f.Close()
	s3 := openTest(t, cfg)
	if n := checkRecords(t, s3); n != uint64(100-3) {
		t.Fatalf("%d records after damaging the third last, want 97", n)
	}
}

func lastSegment(t *testing.T, dir string, kind byte) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, string(kind)+"-*.seg"))
	if len(matches) == 0 {
		t.Fatalf("no %c segment in %s", kind, dir)
	}
	return matches[len(matches)-1]
}

func segIDOf(t *testing.T, path string) uint64 {
	_, id, ok := parseSegmentName(filepath.Base(path))
	if !ok {
		t.Fatalf("%s: not a segment name", path)
	}
	return id
}

func lastSegmentCount(t *testing.T, path string) int {
	return int((fileSize(t, path) - headerSize) / int64(recordSize(crashDim)))
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestFileSizeLimit fills a real file-size limit (RLIMIT_FSIZE, in a
// child, since it binds the whole process): history pauses with a reason,
// Add keeps returning, and what was written before is intact.
func TestFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	const limit = 1 << 20
	cmd, lines := startChild(t, dir, 0, childFsizeEnv+"="+strconv.Itoa(limit))
	var st Status
	var paused bool
	for lines.Scan() {
		if js, ok := strings.CutPrefix(lines.Text(), "paused "); ok {
			if err := json.Unmarshal([]byte(js), &st); err != nil {
				t.Fatal(err)
			}
			paused = true
		}
	}
	if err := cmd.Wait(); err != nil || !paused {
		t.Fatalf("child: %v (paused line seen: %v)", err, paused)
	}
	if !st.Paused || !strings.Contains(st.PauseReason, "disk full") || st.Pauses != 1 {
		t.Fatalf("status when the limit was hit: %+v", st)
	}
	t.Logf("paused at %d records: %s", st.Stored, st.PauseReason)
	s := openTest(t, crashConfig(dir))
	n := checkRecords(t, s)
	if n != st.Stored || n < limit/uint64(recordSize(crashDim))/2 {
		t.Fatalf("%d records after reopening, %d stored before the limit", n, st.Stored)
	}
	// Writing goes on where it stopped once the limit is gone.
	for seq := n; seq < n+20; seq++ {
		s.Add(crashRecord(seq))
	}
	flush(t, s)
	if got := checkRecords(t, s); got != n+20 {
		t.Fatalf("%d records after resuming, want %d", got, n+20)
	}
}

// TestFullDisk fills a real, small tmpfs.
func TestFullDisk(t *testing.T) {
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=3m"); err != nil {
		t.Skipf("environment: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg := Config{Dir: filepath.Join(mnt, "history"), Every: time.Millisecond, PauseRetry: 10 * time.Millisecond,
		Now: func() time.Time { return epoch.Add(1000 * time.Hour) }, Retention: 10000 * time.Hour, Log: logs.logger()}
	s := openTest(t, cfg)
	var seq uint64
	for !s.Status().Paused {
		if seq > 10000 {
			t.Fatal("3 MiB tmpfs never filled")
		}
		if err := s.Add(crashRecord(seq)); err != nil {
			t.Fatal(err)
		}
		seq++
		if seq%10 == 0 {
			flush(t, s)
		}
	}
	st := s.Status()
	if !strings.Contains(st.PauseReason, "disk full") || !strings.Contains(logs.String(), "history: paused") {
		t.Fatalf("paused with reason %q; log:\n%s", st.PauseReason, logs.String())
	}
	t.Logf("paused after %d records (%d stored): %s", seq, st.Stored, st.PauseReason)
	if w := s.Wants(Target{Camera: "cam"}, epoch.Add(time.Duration(seq+100)*time.Second), true); w.Record || w.Thumbnail {
		t.Errorf("a paused store wants %+v", w)
	}
	// Space comes back; history resumes by itself.
	os.Remove(filler)
	before := s.Status().Stored
	waitFor(t, "history to resume and store again", func() bool {
		s.Add(crashRecord(seq))
		seq++
		flush(t, s)
		return s.Status().Stored > before+10
	})
	if !strings.Contains(logs.String(), "history: resuming") {
		t.Errorf("no resume logged")
	}
	stored := s.Status().Stored
	s.Close()
	// Everything stored is intact; what was dropped while paused is a gap
	// in seq, so check record by record rather than with checkRecords.
	s2 := openTest(t, cfg)
	if got := s2.Status().Records; got != int64(stored) {
		t.Fatalf("%d records after reopening, %d stored", got, stored)
	}
	s2.mu.RLock()
	defer s2.mu.RUnlock()
	for _, seg := range s2.segs {
		for i := range int(seg.count.Load()) {
			if seg.kind == kindVectors && !recordValid(seg.record(i)) {
				t.Fatalf("%s: record %d damaged", seg.path, i)
			}
		}
	}
	_ = math.Pi
}
