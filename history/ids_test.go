package history

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests here are about ids: segment records hold target and label
// ids only, and segment files are named by theirs, so an id given twice
// mislabels what is stored or collides with a file.

// rawCatalog opens a store's catalog with the plain driver, as another
// tool (or damage) would change it.
func rawCatalog(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "history.db")+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func execAll(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func searchAll(t *testing.T, s *Store, q []float32, filter ...TargetFilter) *Result {
	t.Helper()
	res, err := s.Search(context.Background(), Query{Model: "m", Embedding: q, Targets: filter, K: MaxK, Gap: time.Nanosecond, Frames: true})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// byCamera counts a result's episodes per camera, with their top labels.
func byCamera(res *Result) map[string][]string {
	out := map[string][]string{}
	for _, e := range res.Episodes {
		for _, f := range e.Frames {
			out[e.Camera] = append(out[e.Camera], f.TopLabel)
		}
	}
	return out
}

// The reviewer's case: frames of camera garage, the catalog deleted, the
// store reopened and a frame of drive added. The drive frame must not
// take the garage frames' target id: a search for drive finds it alone,
// and the garage frames show as a target whose name was lost.
func TestLostCatalogDoesNotMislabel(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Every: time.Nanosecond, Now: newClock(epoch.Add(time.Hour)).now}
	s := openTest(t, cfg)
	r := rand.New(rand.NewPCG(3, 4))
	q := randomUnit(r, 16)
	add := func(s *Store, camera, label string, i int) {
		t.Helper()
		if err := s.Add(Record{Target: Target{Camera: camera}, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i),
			Model: "m", Embedding: randomUnit(r, 16), TopLabel: label, Thumbnail: []byte(camera + " picture")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		add(s, "garage", "car", i)
	}
	flush(t, s)
	var oldThumbs []int64
	for _, e := range searchAll(t, s, q).Episodes {
		oldThumbs = append(oldThumbs, e.Thumbnail.ID)
	}
	s.Close()
	for _, name := range []string{"history.db", "history.db-wal", "history.db-shm"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	add(s2, "drive", "van", 10)
	flush(t, s2)
	check := func(s *Store) {
		t.Helper()
		res := searchAll(t, s, q, TargetFilter{Camera: "drive"})
		if got := byCamera(res); res.Scanned != 1 || len(got) != 1 || !slices.Equal(got["drive"], []string{"van"}) {
			t.Fatalf("search for drive: scanned %d, %v; want drive's one frame", res.Scanned, got)
		}
		got := byCamera(searchAll(t, s, q))
		lost := lostName(1)
		if len(got) != 2 || len(got[lost]) != 5 || got[lost][0] != lost || !slices.Equal(got["drive"], []string{"van"}) {
			t.Fatalf("all frames by camera: %v; want garage's five as %s and drive's one", got, lost)
		}
		for _, e := range searchAll(t, s, q).Episodes {
			jpeg, _, ok, err := s.Thumbnail(context.Background(), e.Thumbnail.ID)
			if err != nil || !ok {
				t.Fatalf("thumbnail %d: %v %v", e.Thumbnail.ID, ok, err)
			}
			want := map[bool]string{true: "drive picture", false: "garage picture"}[e.Camera == "drive"]
			if string(jpeg) != want {
				t.Fatalf("episode of %s shows %q", e.Camera, jpeg)
			}
			// A new catalog gives no thumbnail an id the old one gave: a
			// browser keeps pictures by id.
			if slices.Contains(oldThumbs, e.Thumbnail.ID) {
				t.Fatalf("thumbnail id %d given again under the new catalog (old ones %v)", e.Thumbnail.ID, oldThumbs)
			}
		}
	}
	check(s2)
	if !strings.Contains(logs.String(), "the catalog lacks target or label ids") {
		t.Errorf("no log line about the reserved ids:\n%s", logs)
	}
	s2.Close()
	// The placeholders are rows: the next run keeps the ids taken, and
	// garage's frames from now on are a new target.
	s3 := openTest(t, cfg)
	check(s3)
	add(s3, "garage", "bike", 20)
	flush(t, s3)
	res := searchAll(t, s3, q, TargetFilter{Camera: "garage"})
	if got := byCamera(res); !slices.Equal(got["garage"], []string{"bike"}) || len(got) != 1 {
		t.Fatalf("search for garage after the loss: %v, want only the new frame", got)
	}
}

// toV1 turns a store's catalog into a version 1 catalog (no
// AUTOINCREMENT on targets, labels and thumbs), ids kept.
func toV1(t *testing.T, dir string) {
	db := rawCatalog(t, dir)
	execAll(t, db,
		`ALTER TABLE targets RENAME TO t2`, `ALTER TABLE labels RENAME TO l2`, `DROP INDEX thumbs_by_time`, `ALTER TABLE thumbs RENAME TO th2`,
		schemaV1,
		`INSERT INTO targets SELECT id, camera, region FROM t2`, `INSERT INTO labels SELECT id, text FROM l2`,
		`INSERT INTO thumbs SELECT * FROM th2`, `DROP TABLE t2`, `DROP TABLE l2`, `DROP TABLE th2`,
		`DELETE FROM sqlite_sequence WHERE name IN ('targets', 'labels', 'thumbs')`, `UPDATE meta SET value='1' WHERE key='schema'`)
	db.Close()
}

// A version 1 catalog is migrated in place: ids kept (thumbnails still
// found by theirs), AUTOINCREMENT from then on, and every segment's ids
// checked once, since version 1 did not sync them: a target row a power
// loss rolled back is reserved rather than given to the next new target.
func TestMigrateV1Catalog(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Every: time.Nanosecond, Now: newClock(epoch.Add(time.Hour)).now}
	s := openTest(t, cfg)
	r := rand.New(rand.NewPCG(5, 6))
	q := randomUnit(r, 16)
	for i := range 6 {
		cam := []string{"garage", "drive"}[i%2]
		if err := s.Add(Record{Target: Target{Camera: cam}, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i),
			Model: "m", Embedding: randomUnit(r, 16), TopLabel: cam + " label", Thumbnail: []byte(cam)}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, s)
	var thumbIDs []int64
	for _, e := range searchAll(t, s, q).Episodes {
		thumbIDs = append(thumbIDs, e.Thumbnail.ID)
	}
	s.Close()
	toV1(t, dir)
	db := rawCatalog(t, dir)
	execAll(t, db, `DELETE FROM targets WHERE camera='drive'`)
	db.Close()

	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	var v string
	if err := s2.cat.db.QueryRow(`SELECT value FROM meta WHERE key='schema'`).Scan(&v); err != nil || v != "2" {
		t.Fatalf("schema after migration %q (%v)", v, err)
	}
	for _, id := range thumbIDs {
		if _, _, ok, err := s2.Thumbnail(context.Background(), id); !ok || err != nil {
			t.Fatalf("thumbnail %d after migration: %v %v", id, ok, err)
		}
	}
	got := byCamera(searchAll(t, s2, q))
	if lost := lostName(2); len(got["garage"]) != 3 || len(got[lost]) != 3 || len(got) != 2 {
		t.Fatalf("frames by camera after migration: %v; want garage's 3 and drive's 3 as %s", got, lost)
	}
	if err := s2.Add(Record{Target: Target{Camera: "yard"}, Time: epoch.Add(time.Minute), Model: "m", Embedding: q}); err != nil {
		t.Fatal(err)
	}
	flush(t, s2)
	if got := byCamera(searchAll(t, s2, q, TargetFilter{Camera: "yard"})); len(got) != 1 || len(got["yard"]) != 1 {
		t.Fatalf("search for the new target: %v", got)
	}
	if id := s2.targetIDs[Target{Camera: "yard"}]; id != 3 {
		t.Fatalf("the new target has id %d, want 3 (2 is reserved)", id)
	}
	var autoinc int
	if err := s2.cat.db.QueryRow(`SELECT count(*) FROM sqlite_sequence WHERE name IN ('targets', 'labels', 'thumbs')`).Scan(&autoinc); err != nil || autoinc != 3 {
		t.Fatalf("%d AUTOINCREMENT sequences after migration (%v), want 3", autoinc, err)
	}
}

// writeSegmentFile writes a vector segment of id from the first n records
// of another vector segment's file.
func writeSegmentFile(t *testing.T, dir string, id uint64, from string, n int) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	h.id = id
	rs := recordSize(h.dim)
	out := append(encodeHeader(h), data[headerSize:headerSize+n*rs]...)
	if err := os.WriteFile(filepath.Join(dir, segmentName(kindVectors, id)), out, 0o640); err != nil {
		t.Fatal(err)
	}
}

func checkSegList(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := 1; i < len(s.segs); i++ {
		if compareSeg(s.segs[i-1], segKey{s.segs[i].id, s.segs[i].kind}) >= 0 {
			t.Fatalf("segments out of order or twice: %s before %s", filepath.Base(s.segs[i-1].path), filepath.Base(s.segs[i].path))
		}
	}
}

// Junk segment files the catalog does not know: one with an id no
// segment has (v-4 beside 1 and 2), one beside each live segment with its
// id and the other kind. New segments never take their ids, the list
// stays sorted, every thumbnail is served, and deleting a junk file
// (retention) leaves the live segment of its id alone.
func TestBadSegmentFilesKeepTheirIDs(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(epoch.Add(1000 * time.Hour))
	cfg := Config{Dir: dir, Every: time.Millisecond, Now: clk.now, Retention: 10000 * time.Hour}
	s := addCrashRecords(t, cfg, 20)
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, segmentName(kindThumbnails, 2))); err != nil {
		t.Fatalf("want segments v-1 and t-2: %v", err)
	}
	junk := []string{segmentName(kindVectors, 4), segmentName(kindVectors, 2), segmentName(kindThumbnails, 1)}
	for _, name := range junk {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("junk", 200)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	if st := s2.Status(); st.BadSegments != 3 {
		t.Fatalf("%d bad segments, want 3:\n%s", st.BadSegments, logs)
	}
	for seq := uint64(20); seq < 40; seq++ {
		s2.Add(crashRecord(seq))
	}
	flush(t, s2)
	checkSegList(t, s2)
	s2.mu.RLock()
	for _, seg := range s2.segs {
		if !seg.bad && seg.id > 2 && seg.id <= 4 {
			t.Errorf("new segment %s took an id a junk file has", filepath.Base(seg.path))
		}
	}
	s2.mu.RUnlock()
	if st := s2.Status(); st.Paused || checkRecords(t, s2) != 40 {
		t.Fatalf("status %+v", st)
	}
	res, err := s2.Search(context.Background(), Query{Model: "m", Embedding: crashEmbedding(3), K: MaxK, Gap: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	thumbs := 0
	for _, e := range res.Episodes {
		if e.Thumbnail == nil {
			continue
		}
		if _, _, ok, err := s2.Thumbnail(context.Background(), e.Thumbnail.ID); !ok || err != nil {
			t.Fatalf("thumbnail %d of seq %d: %v %v", e.Thumbnail.ID, e.Thumbnail.Seq, ok, err)
		}
		thumbs++
	}
	if thumbs < 8 {
		t.Fatalf("%d episodes with a thumbnail", thumbs)
	}
	nThumbs, _ := s2.cat.thumbCount()
	s2.Close()

	// Retention deletes the junk (old files); the live segments of ids 1
	// and 2 keep their rows and thumbnails.
	for _, name := range junk {
		old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(dir, name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	s3 := openTest(t, cfg)
	if st := s3.Status(); st.BadSegments != 0 {
		t.Fatalf("%d bad segments after retention", st.BadSegments)
	}
	s3.Close()
	logs.Reset()
	s4 := openTest(t, cfg)
	if n := checkRecords(t, s4); n != 40 {
		t.Fatalf("%d records", n)
	}
	if n, _ := s4.cat.thumbCount(); n != nThumbs {
		t.Fatalf("%d thumbnails after the junk went, %d before", n, nThumbs)
	}
	if l := logs.String(); strings.Contains(l, "adopting") || strings.Contains(l, "forgetting") {
		t.Fatalf("deleting the junk took live segments' rows:\n%s", l)
	}
}

// A catalog row whose file is of the other kind (t-2 in the catalog, only
// a v-2 on disk): the row goes and the file is adopted, not orphaned.
func TestRowOfTheOtherKind(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(dir)
	s := addCrashRecords(t, cfg, 20)
	s.Close()
	if err := os.Remove(filepath.Join(dir, segmentName(kindThumbnails, 2))); err != nil {
		t.Fatal(err)
	}
	writeSegmentFile(t, dir, 2, filepath.Join(dir, segmentName(kindVectors, 1)), 3)
	s2 := openTest(t, cfg)
	if st := s2.Status(); st.Records != 23 || st.BadSegments != 0 {
		t.Fatalf("%d records, %d bad; want the 20 and v-2's 3 adopted", st.Records, st.BadSegments)
	}
}

// A segment file that appears after Open with the name of the next new
// segment: the store takes the next id instead of pausing.
func TestNewSegmentNameTaken(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuffer{}
	s := openTest(t, Config{Dir: dir, Every: time.Nanosecond, Log: logs.logger(), Now: newClock(epoch.Add(time.Hour)).now})
	r := rand.New(rand.NewPCG(7, 8))
	s.Add(Record{Target: Target{Camera: "c"}, Time: epoch, Model: "m", Embedding: randomUnit(r, 16)})
	flush(t, s)
	if err := os.WriteFile(filepath.Join(dir, segmentName(kindVectors, 2)), []byte("not mine"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Another model starts a new segment.
	s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Second), Model: "m2", Embedding: randomUnit(r, 16)})
	flush(t, s)
	if st := s.Status(); st.Paused || st.Stored != 2 || !strings.Contains(logs.String(), "taking the next id") {
		t.Fatalf("status %+v; log:\n%s", st, logs)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(kindVectors, 3))); err != nil {
		t.Fatal(err)
	}
}

// Catalog values out of range are not trusted: a sealed row with a
// negative record count (once cut the file below its header), and target
// and label ids far beyond what the store gives.
func TestCatalogValuesOutOfRange(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(dir)
	s := addCrashRecords(t, cfg, 20)
	s.Close()
	vec := filepath.Join(dir, segmentName(kindVectors, 1))
	size := fileSize(t, vec)
	db := rawCatalog(t, dir)
	execAll(t, db, `UPDATE segments SET records=-5 WHERE id=1`,
		`INSERT INTO targets(id, camera, region) VALUES(1099511627776, 'huge', '')`, `INSERT INTO labels(id, text) VALUES(8589934592, 'huge')`)
	db.Close()
	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	if got := fileSize(t, vec); got != size {
		t.Fatalf("the segment is %d bytes after Open, was %d", got, size)
	}
	if n := checkRecords(t, s2); n != 20 {
		t.Fatalf("%d records", n)
	}
	for _, want := range []string{"ignoring a catalog row out of range", "ignoring catalog rows whose id is out of range"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs)
		}
	}
	res, err := s2.Search(context.Background(), Query{Model: "m", Embedding: crashEmbedding(1), Targets: []TargetFilter{{Camera: "huge"}}})
	if err != nil || res.Scanned != 0 {
		t.Fatalf("search for the ignored target: %v, %+v", err, res)
	}
}

// Thumbnail rows of entries a cut tail took are forgotten at Open: the
// picture is gone (ok false), not an error.
func TestThumbnailRowsPastACutTail(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(dir)
	s := addCrashRecords(t, cfg, 20)
	var last int64
	if err := s.cat.db.QueryRow(`SELECT max(id) FROM thumbs`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	s.Close()
	thumb := filepath.Join(dir, segmentName(kindThumbnails, 2))
	if err := os.Truncate(thumb, fileSize(t, thumb)-10); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg.Log = logs.logger()
	s2 := openTest(t, cfg)
	if !strings.Contains(logs.String(), "forgot thumbnails past a segment's end") {
		t.Errorf("no log line:\n%s", logs)
	}
	if _, _, ok, err := s2.Thumbnail(context.Background(), last); ok || err != nil {
		t.Fatalf("the cut thumbnail: ok %v, err %v; want gone", ok, err)
	}
	if n, _ := s2.cat.thumbCount(); n != 3 {
		t.Fatalf("%d thumbnails, want 3 of 4", n)
	}
}

// A search holds its segments, not the store's lock: while one is under
// way, Status answers, the writer starts a new segment, and retention
// takes the search's segment out of the list; its file and mapping go
// only once the search has let go.
func TestSearchDoesNotHoldOffWrites(t *testing.T) {
	clk := newClock(epoch)
	s := openTest(t, Config{Retention: time.Hour, Every: time.Nanosecond, Now: clk.now})
	r := rand.New(rand.NewPCG(9, 10))
	q := randomUnit(r, 16)
	for i := range 10 {
		s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Duration(i) * time.Second), Model: "m", Embedding: randomUnit(r, 16)})
	}
	flush(t, s)
	sc, err := s.plan(Query{Model: "m", Embedding: q, K: 5, MaxHits: 10, Gap: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			sc.release()
		}
	}()
	held := sc.segs[0]
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Status()
		s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(20 * time.Second), Model: "m2", Embedding: randomUnit(r, 16)})
		flush(t, s)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Status or a new segment waited for a search")
	}
	clk.set(epoch.Add(3 * time.Hour))
	s.Add(Record{Target: Target{Camera: "c"}, Time: clk.now(), Model: "m2", Embedding: randomUnit(r, 16)})
	flush(t, s)
	s.mu.RLock()
	listed := slices.Contains(s.segs, held)
	s.mu.RUnlock()
	if listed {
		t.Fatal("retention left the search's segment in the list")
	}
	if _, err := os.Stat(held.path); err != nil {
		t.Fatalf("the segment's file went while a search held it: %v", err)
	}
	// The search goes on over the mapping.
	hits, err := sc.run(context.Background())
	if err != nil || len(hits) != 10 {
		t.Fatalf("%d hits (%v)", len(hits), err)
	}
	if _, err := s.episodes(context.Background(), sc, hits); err != nil {
		t.Fatal(err)
	}
	sc.release()
	released = true
	flush(t, s)
	if _, err := os.Stat(held.path); !os.IsNotExist(err) {
		t.Fatalf("the segment's file stays after the search let go: %v", err)
	}
	if st := s.Status(); st.Records != 1 {
		t.Fatalf("%d records, want the newest", st.Records)
	}
}

// Searches run on while max_bytes deletes segments under them: each
// reads only segments it holds (a deletion unmapping one under a scan
// would crash the test), and every deletion completes once they stop.
func TestSearchesDuringDeletion(t *testing.T) {
	s := openTest(t, Config{MaxBytes: 1 << 20, Every: time.Nanosecond, Now: newClock(epoch.Add(time.Hour)).now})
	r := rand.New(rand.NewPCG(13, 14))
	q := randomUnit(r, 512)
	stop := make(chan struct{})
	errs := make(chan error, 2)
	var searches [2]int
	for g := range 2 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if _, err := s.Search(context.Background(), Query{Model: "m", Embedding: q, K: 5}); err != nil {
					errs <- err
					return
				}
				searches[g]++
			}
		}()
	}
	for i := range 3000 {
		s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Duration(i) * time.Second), Model: "m", Embedding: randomUnit(r, 512)})
		if i%100 == 99 {
			flush(t, s)
		}
	}
	close(stop)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	flush(t, s)
	if len(s.doomed) != 0 {
		t.Fatalf("%d deletions still wait with no search running", len(s.doomed))
	}
	st := s.Status()
	if st.Bytes > 1<<20 || st.Records == 0 || searches[0]+searches[1] < 10 {
		t.Fatalf("%d bytes, %d records kept; %v searches", st.Bytes, st.Records, searches)
	}
	t.Logf("%v searches while %d records were written to a 1 MiB store", searches, st.Stored)
}

// Add racing Close never leaves queued bytes behind: nothing is queued
// after the writer's last drain. (A stress check: the window it guards,
// between Add's closed check and its send, is nanoseconds wide, and the
// fix, Store.sendMu, closes it by construction.)
func TestAddRacingClose(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	emb := randomUnit(r, 64)
	for round := range 20 {
		s, err := Open(Config{Dir: t.TempDir(), Every: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					s.Add(Record{Target: Target{Camera: "c" + string(rune('a'+g))}, Time: epoch.Add(time.Duration(i) * time.Second), Model: "m", Embedding: emb})
				}
			}()
		}
		time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
		s.Close()
		wg.Wait()
		if q := s.queued.Load(); q != 0 {
			t.Fatalf("round %d: %d bytes queued after Close", round, q)
		}
	}
}
