package history

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWantsAndThumbnails(t *testing.T) {
	s := openTest(t, Config{Now: newClock(epoch.Add(time.Hour)).now})
	r := rand.New(rand.NewPCG(11, 12))
	tg := Target{Camera: "drive", Region: "gate"}
	kept := map[uint64]bool{}
	thumbs := map[uint64]bool{}
	// 10 frames a second for 30 s, with jitter of a few milliseconds, and
	// a state change at frame 123.
	for i := range 300 {
		at := epoch.Add(time.Duration(i)*100*time.Millisecond + time.Duration(r.IntN(7)-3)*time.Millisecond)
		changed := i == 123
		w := s.Wants(tg, at, changed)
		var jpeg []byte
		if w.Thumbnail {
			jpeg = []byte("jpeg of frame " + string(rune('0'+i%10)) + strings.Repeat("x", i))
		}
		if err := s.Add(Record{Target: tg, Time: at, Seq: uint64(i), Model: "m", Embedding: randomUnit(r, 16), Changed: changed, Thumbnail: jpeg}); err != nil {
			t.Fatal(err)
		}
		if w.Record {
			kept[uint64(i)] = true
		}
		if w.Thumbnail {
			thumbs[uint64(i)] = true
		}
	}
	flush(t, s)
	// One a second, whatever the jitter: frames 0, 10, 20, ..., plus the
	// change, after which the interval starts again (133 and not 130).
	for _, i := range []uint64{0, 10, 120, 123, 133, 143, 293} {
		if !kept[i] {
			t.Errorf("frame %d not kept", i)
		}
	}
	if kept[130] || kept[5] {
		t.Errorf("kept frames within the interval: %v", kept)
	}
	if len(kept) != 31 {
		t.Errorf("%d frames kept, want 31: %v", len(kept), kept)
	}
	// Thumbnails every 5 s and at the change.
	for _, i := range []uint64{0, 50, 100, 123, 173, 223, 273} {
		if !thumbs[i] {
			t.Errorf("no thumbnail at frame %d (%v)", i, thumbs)
		}
	}
	if len(thumbs) != 7 {
		t.Errorf("%d thumbnails, want 7: %v", len(thumbs), thumbs)
	}
	st := s.Status()
	if st.Records != 31 || st.Thumbnails != 7 || st.Skipped != 269 {
		t.Fatalf("status %+v", st)
	}

	// The nearest thumbnail of an episode's best frame, and how far it is.
	q := Query{Model: "m", K: 1000, MaxHits: 1000, Gap: time.Nanosecond, Embedding: randomUnit(r, 16)}
	res, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Episodes) != 31 {
		t.Fatalf("%d episodes, want 31 (one per frame with a gap of 1 ns)", len(res.Episodes))
	}
	for _, e := range res.Episodes {
		if e.Thumbnail == nil {
			t.Fatalf("episode at seq %d has no thumbnail", e.BestSeq)
		}
		best := e.Thumbnail.Seq
		for i := range thumbs {
			if absDiff(int64(i), int64(e.BestSeq)) < absDiff(int64(best), int64(e.BestSeq)) {
				t.Fatalf("episode at seq %d: thumbnail of seq %d, but seq %d is nearer", e.BestSeq, best, i)
			}
		}
		if got, want := e.Thumbnail.OffsetMS, e.Thumbnail.Time.Sub(e.BestTime).Milliseconds(); got != want {
			t.Fatalf("offset %d ms, want %d", got, want)
		}
		jpeg, info, ok, err := s.Thumbnail(context.Background(), e.Thumbnail.ID)
		if err != nil || !ok {
			t.Fatalf("thumbnail %d: %v %v", e.Thumbnail.ID, ok, err)
		}
		if info.Seq != best || !bytes.HasPrefix(jpeg, []byte("jpeg of frame ")) || len(jpeg) != len("jpeg of frame 0")+int(best) {
			t.Fatalf("thumbnail %d: %q (%+v)", e.Thumbnail.ID, jpeg, info)
		}
	}
	if _, _, ok, err := s.Thumbnail(context.Background(), 9999); ok || err != nil {
		t.Fatalf("a missing thumbnail: ok %v err %v", ok, err)
	}
}

func TestAddRejectsInvalid(t *testing.T) {
	s := openTest(t, Config{})
	good := Record{Target: Target{Camera: "c"}, Time: epoch, Model: "m", Embedding: []float32{1, 0}}
	for name, mod := range map[string]func(*Record){
		"no camera":     func(r *Record) { r.Camera = "" },
		"slash":         func(r *Record) { r.Region = "a/b" },
		"no model":      func(r *Record) { r.Model = "" },
		"zero vector":   func(r *Record) { r.Embedding = []float32{0, 0} },
		"NaN":           func(r *Record) { r.Embedding = []float32{float32(nanValue()), 1} },
		"too long":      func(r *Record) { r.Embedding = make([]float32, maxDim+1) },
		"no time":       func(r *Record) { r.Time = time.Time{} },
		"big thumbnail": func(r *Record) { r.Thumbnail = make([]byte, MaxThumbnailBytes+1) },
	} {
		r := good
		mod(&r)
		if err := s.Add(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := s.Status().Invalid; got != 8 {
		t.Errorf("invalid count %d, want 8", got)
	}
}

func nanValue() float64 { var z float64; return z / z }

func TestQueueBoundDrops(t *testing.T) {
	s := openTest(t, Config{QueueBytes: 64 << 10, Every: time.Nanosecond, Now: newClock(epoch.Add(time.Hour)).now})
	// Hold the writer so that the queue fills: its first segment needs
	// the write lock of mu, held here for reading.
	s.mu.RLock()
	r := rand.New(rand.NewPCG(1, 1))
	emb := randomUnit(r, 512)
	for i := range 200 {
		s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Duration(i) * time.Second), Model: "m", Embedding: emb})
	}
	// Not Status: it takes the read lock too, and with the writer waiting
	// for the write lock a second reader would wait behind it.
	if q := s.queued.Load(); q > 64<<10 {
		t.Errorf("queued %d bytes, bound 64 KiB", q)
	}
	s.mu.RUnlock()
	flush(t, s)
	st := s.Status()
	if st.Dropped == 0 || st.Stored+st.Dropped != 200 {
		t.Fatalf("stored %d dropped %d of 200", st.Stored, st.Dropped)
	}
	t.Logf("64 KiB queue: %d stored, %d dropped", st.Stored, st.Dropped)
}

func TestRetentionAndMaxBytes(t *testing.T) {
	clk := newClock(epoch)
	logs := &logBuffer{}
	cfg := Config{Retention: time.Hour, MaxBytes: 1 << 20, Every: time.Millisecond, Now: clk.now, Log: logs.logger()}
	s := openTest(t, cfg)
	r := rand.New(rand.NewPCG(13, 14))
	segBytes := cfg.MaxBytes / 16
	// Retention: an hour; segments span at most Retention/48. Two hours of one record every 10 s, with
	// a thumbnail every minute, small enough not to reach max_bytes.
	add := func(i int, dim int, step time.Duration) {
		at := epoch.Add(time.Duration(i) * step)
		clk.set(at)
		var jpeg []byte
		if i%6 == 0 {
			jpeg = bytes.Repeat([]byte{byte(i)}, 500)
		}
		if err := s.Add(Record{Target: Target{Camera: "c"}, Time: at, Seq: uint64(i), Model: "m", Embedding: randomUnit(r, dim), Thumbnail: jpeg}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			flush(t, s)
		}
	}
	for i := range 720 {
		add(i, 16, 10*time.Second)
	}
	flush(t, s)
	st := s.Status()
	span := s.cfg.segmentSpan() // 75 s: Retention/48
	if st.Oldest.Before(clk.now().Add(-time.Hour-span)) || st.Oldest.After(clk.now().Add(-time.Hour+10*time.Second)) {
		t.Fatalf("oldest record %v, now %v: want an hour back, within a segment's span (%v)", st.Oldest, clk.now(), span)
	}
	if st.Records < 360 || st.Records > 360+8 {
		t.Fatalf("%d records kept, want an hour's 360 and at most a segment's 8 more", st.Records)
	}
	if st.Thumbnails < 60 || st.Thumbnails > 62 {
		t.Fatalf("%d thumbnails kept, want an hour's 60 to 62", st.Thumbnails)
	}
	// Thumbnails of deleted segments are gone from the catalog too.
	if n, err := s.cat.thumbCount(); err != nil || n != st.Thumbnails {
		t.Fatalf("catalog has %d thumbnails, segments %d (%v)", n, st.Thumbnails, err)
	}
	if !strings.Contains(logs.String(), "why=retention") {
		t.Errorf("no retention deletion logged:\n%s", logs.String())
	}

	// max_bytes: 512-d records (1064 bytes) one a second overrun 1 MiB
	// within the hour; the files stay under it, oldest gone first.
	for i := 7200; i < 9000; i++ {
		add(i, 512, time.Second)
		if st := s.Status(); st.Bytes > cfg.MaxBytes+segBytes {
			t.Fatalf("record %d: %d bytes on disk, max_bytes %d", i, st.Bytes, cfg.MaxBytes)
		}
	}
	flush(t, s)
	st = s.Status()
	if st.Bytes > cfg.MaxBytes || st.Bytes < cfg.MaxBytes-2*segBytes {
		t.Fatalf("%d bytes kept, want just under max_bytes %d", st.Bytes, cfg.MaxBytes)
	}
	if !st.Newest.Equal(clk.now()) || st.Oldest.Before(clk.now().Add(-time.Hour)) {
		t.Fatalf("kept %v..%v, now %v: the newest must stay", st.Oldest, st.Newest, clk.now())
	}
	var onDisk int64
	entries, _ := os.ReadDir(s.cfg.Dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".seg") {
			onDisk += fileSize(t, filepath.Join(s.cfg.Dir, e.Name()))
		}
	}
	if onDisk != st.Bytes {
		t.Fatalf("segment files take %d bytes, status says %d", onDisk, st.Bytes)
	}
	if !strings.Contains(logs.String(), "why=max_bytes") {
		t.Errorf("no max_bytes deletion logged")
	}
}

func TestDirInUse(t *testing.T) {
	dir := t.TempDir()
	openTest(t, Config{Dir: dir})
	if _, err := Open(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second Open of one dir: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "x", Every: -1},
		{Dir: "x", Retention: time.Second},
		{Dir: "x", MaxBytes: 1000},
		{Dir: "x", QueueBytes: 10},
	} {
		if _, err := Open(c); err == nil {
			t.Errorf("Open(%+v) succeeded", c)
		}
	}
}
