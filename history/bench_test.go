package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/clipd/clipd/engine"
)

// The search benchmarks share one store of a million 512-d records (1 GiB
// of segments), written once per test binary through Add like the
// daemon's, in a temporary directory that TestMain removes.

const benchRecords = 1_000_000

var bench struct {
	once  sync.Once
	dir   string
	store *Store
	err   error
	took  time.Duration
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.store != nil {
		bench.store.Close()
	}
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

var benchTargets = []Target{{Camera: "drive"}, {Camera: "drive", Region: "gate"}, {Camera: "yard"}, {Camera: "porch"}}

func benchStore(b *testing.B) *Store {
	bench.once.Do(func() {
		bench.dir, bench.err = os.MkdirTemp("", "clipd-history-bench-")
		if bench.err != nil {
			return
		}
		per := benchRecords / len(benchTargets)
		end := epoch.Add(time.Duration(per) * time.Second)
		cfg := Config{Dir: bench.dir, Now: func() time.Time { return end }}
		s, err := Open(cfg)
		if err != nil {
			bench.err = err
			return
		}
		start := time.Now()
		r := rand.New(rand.NewPCG(1, 2))
		emb := make([]float32, 512)
		for i := range per {
			for _, tg := range benchTargets {
				for d := range emb {
					emb[d] = float32(r.NormFloat64())
				}
				s.Add(Record{Target: tg, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i), Model: "bench", Embedding: emb, TopLabel: "car"})
			}
			if i%2048 == 0 {
				s.Flush(context.Background())
			}
		}
		s.Flush(context.Background())
		bench.took = time.Since(start)
		if st := s.Status(); st.Records != benchRecords {
			bench.err = fmt.Errorf("bench store has %d records, want %d (dropped %d)", st.Records, benchRecords, st.Dropped)
		}
		bench.store = s
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.store
}

// segmentBytes is the vector data a full scan reads, and the mappings.
func vectorMappings(s *Store) ([][]byte, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var maps [][]byte
	var total int64
	for _, seg := range s.segs {
		if seg.kind == kindVectors && !seg.bad {
			n := seg.size.Load()
			maps = append(maps, seg.data[:n])
			total += n
		}
	}
	return maps, total
}

// BenchmarkMemoryBandwidth streams the same mapped bytes a full scan
// reads, on every core, doing nothing but summing them: the bound a scan
// cannot beat.
func BenchmarkMemoryBandwidth(b *testing.B) {
	s := benchStore(b)
	maps, total := vectorMappings(s)
	workers := runtime.GOMAXPROCS(0)
	b.SetBytes(total)
	b.ResetTimer()
	var sink uint64
	for range b.N {
		var next, mu = make(chan []byte, len(maps)*16), sync.Mutex{}
		for _, m := range maps {
			for off := 0; off < len(m); off += 4 << 20 {
				next <- m[off:min(off+4<<20, len(m))]
			}
		}
		close(next)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var a0, a1, a2, a3 uint64
				for part := range next {
					words := unsafe.Slice((*uint64)(unsafe.Pointer(&part[0])), len(part)/8)
					for i := 0; i+4 <= len(words); i += 4 {
						a0 += words[i]
						a1 += words[i+1]
						a2 += words[i+2]
						a3 += words[i+3]
					}
				}
				mu.Lock()
				sink += a0 + a1 + a2 + a3
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	_ = sink
}

func benchSearch(b *testing.B, q Query) {
	s := benchStore(b)
	_, total := vectorMappings(s)
	q.Model = "bench"
	ctx := context.Background()
	if _, err := s.Search(ctx, q); err != nil { // warm the page cache
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ResetTimer()
	var res *Result
	for range b.N {
		var err error
		if res, err = s.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if res.Scanned != benchRecords {
		b.Fatalf("scanned %d", res.Scanned)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/search")
	reportMemory(b)
}

// BenchmarkSearch1M is the speed goal: the top 20 over a million
// stored 512-d vectors, by cosine.
func BenchmarkSearch1M(b *testing.B) {
	q := randomUnit(rand.New(rand.NewPCG(3, 3)), 512)
	b.Run("kernel="+kernelName, func(b *testing.B) { benchSearch(b, Query{Embedding: q, K: 20}) })
	if kernelName != "portable" {
		b.Run("kernel=portable", func(b *testing.B) {
			forcePortable = true
			defer func() { forcePortable = false }()
			benchSearch(b, Query{Embedding: q, K: 20})
		})
	}
}

// BenchmarkSearchLabel1M ranks the million frames by one label's softmax
// probability among ten.
func BenchmarkSearchLabel1M(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	var names []string
	var embs [][][]float32
	for i := range 10 {
		names = append(names, strconv.Itoa(i))
		embs = append(embs, [][]float32{randomUnit(r, 512)})
	}
	clf, err := engine.NewClassifier(names, embs, 100)
	if err != nil {
		b.Fatal(err)
	}
	benchSearch(b, Query{Label: &LabelQuery{Classifier: clf, Index: 3}, K: 20})
}

// reportMemory reports the process's resident memory, split into what
// the mapped segments account for (file pages, shared with the page
// cache and reclaimable) and the rest, and the Go heap.
func reportMemory(b *testing.B) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		for key, unit := range map[string]string{"VmRSS:": "rss-MiB", "RssAnon:": "rss-anon-MiB", "RssFile:": "rss-file-MiB"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				b.ReportMetric(kb/1024, unit)
			}
		}
	}
}

// BenchmarkOpen1M reopens the million-record store: the heap it takes
// does not depend on how many records it holds.
func BenchmarkOpen1M(b *testing.B) {
	s := benchStore(b)
	s.Close()
	bench.store = nil
	cfg := s.cfg
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		s2, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if b.N == 1 || true {
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<10), "heap-KiB-held")
		}
		if b.N > 1 {
			s2.Close()
			continue
		}
		bench.store = s2
	}
	if bench.store == nil {
		bench.store, _ = Open(cfg)
	}
	b.ReportMetric(bench.took.Seconds(), "s-to-write-1M")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAdd measures storing: ns/op is what Add costs the caller for
// a kept 512-d record; cpu-µs/record is all the CPU the process spent per
// record, the writer's included. At the default rate (one record a
// second per target) cpu-µs/record millionths of a core go to history
// per target.
func BenchmarkAdd(b *testing.B) {
	for _, thumb := range []int{0, 8 << 10} {
		b.Run(fmt.Sprintf("thumbnail=%d", thumb), func(b *testing.B) {
			s := openTest(b, Config{Every: time.Millisecond, ThumbnailEvery: time.Millisecond, Now: func() time.Time { return epoch.Add(time.Hour) }})
			emb := randomUnit(rand.New(rand.NewPCG(5, 5)), 512)
			var jpeg []byte
			if thumb > 0 {
				jpeg = make([]byte, thumb)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i), Model: "m", Embedding: emb, TopLabel: "car", Thumbnail: jpeg})
				if i%1024 == 1023 {
					b.StopTimer()
					s.Flush(context.Background())
					b.StartTimer()
				}
			}
			b.StopTimer()
			s.Flush(context.Background())
			if st := s.Status(); st.Stored != uint64(b.N) {
				b.Fatalf("stored %d of %d", st.Stored, b.N)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
		})
	}
}

// BenchmarkAddSkipped is the common case at 10 frames a second and one
// record a second: the frame is not due.
func BenchmarkAddSkipped(b *testing.B) {
	s := openTest(b, Config{Now: func() time.Time { return epoch.Add(time.Hour) }})
	emb := randomUnit(rand.New(rand.NewPCG(6, 6)), 512)
	tg := Target{Camera: "c"}
	s.Add(Record{Target: tg, Time: epoch, Model: "m", Embedding: emb})
	b.ResetTimer()
	for range b.N {
		if s.Wants(tg, epoch.Add(time.Millisecond), false).Record {
			b.Fatal("due")
		}
		s.Add(Record{Target: tg, Time: epoch.Add(time.Millisecond), Model: "m", Embedding: emb})
	}
}
