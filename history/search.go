package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/clipd/clipd/engine"
)

// chunkRecords is the unit of work of a scan: large enough that a cgo
// call per chunk costs nothing, small enough to share among cores.
const chunkRecords = 2048

// forcePortable makes the scan use the portable loop (benchmarks compare).
var forcePortable bool

// maxLabels bounds a label query's classifier (its logits are scored per
// frame).
const maxLabels = 4096

// hit is one scored frame.
type hit struct {
	score  float32
	seg    int // index in the scan's segment list
	rec    int32
	time   int64
	target uint32
}

// better orders hits best first; ties go to the earlier record so that
// results do not depend on how the scan was split.
func better(a, b hit) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	if a.seg != b.seg {
		return a.seg < b.seg
	}
	return a.rec < b.rec
}

// topHits keeps the n best hits in a min-heap (worst at the root).
type topHits struct {
	n int
	h []hit
}

// accepts says whether push would keep x.
func (t *topHits) accepts(x hit) bool {
	return len(t.h) < t.n || better(x, t.h[0])
}

func (t *topHits) push(x hit) {
	if len(t.h) < t.n {
		t.h = append(t.h, x)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !better(t.h[p], t.h[i]) {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
		return
	}
	if !better(x, t.h[0]) {
		return
	}
	t.h[0] = x
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.h) && better(t.h[m], t.h[l]) {
			m = l
		}
		if r < len(t.h) && better(t.h[m], t.h[r]) {
			m = r
		}
		if m == i {
			break
		}
		t.h[m], t.h[i] = t.h[i], t.h[m]
		i = m
	}
}

// scan is one search's plan and shared state.
type scan struct {
	q        Query
	dim      int
	queries  []float32 // nq × dim
	nq       int
	clf      *engine.Classifier
	label    int
	since    int64
	until    int64
	allowed  []bool // by target id; nil is every target
	minScore float32
	segs     []*segment
	other    []bool // segs[i] is of another model: only counted
	chunks   []chunk

	scanned, matched atomic.Int64
	excluded         []atomic.Int64 // by segment index
}

type chunk struct {
	seg        int
	start, end int
}

func (sc *scan) wanted(m *recMeta) bool {
	if m.time < sc.since || m.time > sc.until {
		return false
	}
	if sc.allowed != nil && (int(m.target) >= len(sc.allowed) || !sc.allowed[m.target]) {
		return false
	}
	return true
}

// Search ranks the stored frames of q.Model and groups the best into
// episodes. It reads the mapped segments without the store's lock: each
// segment it scans is referenced, and a deletion of one (retention,
// max_bytes) waits for it, while appends, new segments and Status go on.
func (s *Store) Search(ctx context.Context, q Query) (*Result, error) {
	start := time.Now()
	sc, err := s.plan(q)
	if err != nil {
		return nil, err
	}
	defer sc.release()
	hits, err := sc.run(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Model: q.Model, Score: "cosine", Scanned: sc.scanned.Load(), Matched: sc.matched.Load(), Episodes: []Episode{}}
	if sc.clf != nil {
		res.Score, res.Label = "probability", sc.clf.Labels[sc.label]
	}
	res.Truncated = res.Matched > int64(len(hits))
	models := make(map[string]int64)
	for i := range sc.segs {
		if n := sc.excluded[i].Load(); n > 0 {
			models[sc.segs[i].model] += n
		}
	}
	for m, n := range models {
		res.Excluded = append(res.Excluded, Excluded{Model: m, Records: n,
			Reason: "made with another image model; its embeddings are not comparable with this model's"})
	}
	slices.SortFunc(res.Excluded, func(a, b Excluded) int { return cmp.Compare(a.Model, b.Model) })
	res.Episodes, err = s.episodes(ctx, sc, hits)
	if err != nil {
		return nil, err
	}
	res.TookMS = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// plan validates q and takes a reference on every segment to scan, which
// Search releases.
func (s *Store) plan(q Query) (*scan, error) {
	sc := &scan{q: q}
	switch {
	case q.Model == "":
		return nil, errors.New("history: search: no model hash")
	case (q.Embedding == nil) == (q.Label == nil):
		return nil, errors.New("history: search: give exactly one of an embedding and a label")
	case q.K < 0 || q.K > MaxK:
		return nil, fmt.Errorf("history: search: k %d (1 to %d)", q.K, MaxK)
	case q.MaxHits < 0 || q.MaxHits > MaxMaxHits:
		return nil, fmt.Errorf("history: search: max hits %d (1 to %d)", q.MaxHits, MaxMaxHits)
	case q.Gap < 0:
		return nil, fmt.Errorf("history: search: negative gap %v", q.Gap)
	case !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since):
		return nil, errors.New("history: search: until is before since")
	}
	if q.K == 0 {
		sc.q.K = DefaultK
	}
	if q.MaxHits == 0 {
		sc.q.MaxHits = DefaultMaxHits
	}
	if q.Gap == 0 {
		sc.q.Gap = DefaultGap
	}
	sc.minScore = float32(math.Inf(-1))
	if q.MinScore != nil {
		if math.IsNaN(float64(*q.MinScore)) {
			return nil, errors.New("history: search: min_score is NaN")
		}
		sc.minScore = *q.MinScore
	}
	if q.Embedding != nil {
		n := engine.Norm(q.Embedding)
		if len(q.Embedding) > maxDim || n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("history: search: query embedding of %d values with norm %v", len(q.Embedding), n)
		}
		sc.queries = engine.Normalize(slices.Clone(q.Embedding))
		sc.dim, sc.nq = len(q.Embedding), 1
	} else {
		c := q.Label.Classifier
		switch {
		case c == nil || len(c.Weights) == 0:
			return nil, errors.New("history: search: label query without labels")
		case len(c.Weights) > maxLabels:
			return nil, fmt.Errorf("history: search: %d labels (at most %d)", len(c.Weights), maxLabels)
		case q.Label.Index < 0 || q.Label.Index >= len(c.Weights) || q.Label.Index >= len(c.Labels):
			return nil, fmt.Errorf("history: search: label index %d of %d labels", q.Label.Index, len(c.Weights))
		case !(c.Scale > 0) || math.IsInf(float64(c.Scale), 0):
			return nil, fmt.Errorf("history: search: logit scale %v", c.Scale)
		}
		sc.dim, sc.nq, sc.clf, sc.label = c.Dim(), len(c.Weights), c, q.Label.Index
		if sc.dim < 1 || sc.dim > maxDim {
			return nil, fmt.Errorf("history: search: label embeddings of %d values", sc.dim)
		}
		sc.queries = make([]float32, 0, sc.nq*sc.dim)
		for i, w := range c.Weights {
			if len(w) != sc.dim {
				return nil, fmt.Errorf("history: search: label %d has %d values, label 0 has %d", i, len(w), sc.dim)
			}
			sc.queries = append(sc.queries, w...)
		}
	}
	sc.since, sc.until = math.MinInt64, math.MaxInt64
	if !q.Since.IsZero() {
		sc.since = q.Since.UnixNano()
	}
	if !q.Until.IsZero() {
		sc.until = q.Until.UnixNano()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(q.Targets) > 0 {
		var maxID uint32
		for id := range s.targets {
			maxID = max(maxID, id)
		}
		sc.allowed = make([]bool, maxID+1)
		for id, t := range s.targets {
			for _, f := range q.Targets {
				if f.matches(t) {
					sc.allowed[id] = true
				}
			}
		}
	}
	for _, seg := range s.segs {
		n := int(seg.count.Load())
		if seg.bad || seg.kind != kindVectors || n == 0 || seg.last.Load() < sc.since || seg.first.Load() > sc.until {
			continue
		}
		if seg.model == q.Model && seg.dim != sc.dim {
			sc.release()
			return nil, fmt.Errorf("history: search: the query has %d values, model %.40q's embeddings %d", sc.dim, q.Model, seg.dim)
		}
		// Under mu, from the list: its deletion has not begun.
		seg.readers.RLock()
		i := len(sc.segs)
		sc.segs = append(sc.segs, seg)
		sc.other = append(sc.other, seg.model != q.Model)
		for start := 0; start < n; start += chunkRecords {
			sc.chunks = append(sc.chunks, chunk{seg: i, start: start, end: min(start+chunkRecords, n)})
		}
	}
	sc.excluded = make([]atomic.Int64, len(sc.segs))
	return sc, nil
}

// release lets go of the scan's segments.
func (sc *scan) release() {
	for _, seg := range sc.segs {
		seg.readers.RUnlock()
	}
	sc.segs = nil
}

// run scores every chunk, spread over the cores, and returns the best
// MaxHits hits, best first.
func (sc *scan) run(ctx context.Context) ([]hit, error) {
	workers := min(runtime.GOMAXPROCS(0), len(sc.chunks))
	var next atomic.Int64
	tops := make([]topHits, workers)
	var wg sync.WaitGroup
	for w := range workers {
		tops[w].n = sc.q.MaxHits
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx := make([]int32, chunkRecords)
			out := make([]float32, chunkRecords*(sc.nq+1))
			var logits []float32
			if sc.clf != nil {
				logits = make([]float32, sc.nq)
			}
			for {
				c := int(next.Add(1) - 1)
				if c >= len(sc.chunks) || ctx.Err() != nil {
					return
				}
				sc.scoreChunk(sc.chunks[c], idx, out, logits, &tops[w])
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var all []hit
	for _, t := range tops {
		all = append(all, t.h...)
	}
	slices.SortFunc(all, func(a, b hit) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return all[:min(len(all), sc.q.MaxHits)], nil
}

func (sc *scan) scoreChunk(c chunk, idx []int32, out, logits []float32, top *topHits) {
	seg := sc.segs[c.seg]
	rs := recordSize(seg.dim)
	n := 0
	if sc.allowed == nil && seg.first.Load() >= sc.since && seg.last.Load() <= sc.until {
		// Every record passes: no header needs reading before scoring.
		for i := c.start; i < c.end; i++ {
			idx[n] = int32(i)
			n++
		}
	} else {
		for i := c.start; i < c.end; i++ {
			m := parseMeta(seg.data[headerSize+i*rs:])
			if sc.wanted(&m) {
				idx[n] = int32(i)
				n++
			}
		}
	}
	if sc.other[c.seg] {
		sc.excluded[c.seg].Add(int64(n))
		return
	}
	if n == 0 {
		return
	}
	sc.scanned.Add(int64(n))
	dots(unsafe.Pointer(&seg.data[headerSize]), rs, recHeaderSize, idx[:n], sc.dim, sc.queries, sc.nq, out, forcePortable)
	matched := 0
	stride := sc.nq + 1
	for i := range n {
		o := out[i*stride : (i+1)*stride]
		ss := o[sc.nq]
		if !(ss > 0) {
			continue
		}
		inv := 1 / math.Sqrt(float64(ss))
		var score float32
		if sc.clf == nil {
			score = float32(float64(o[0]) * inv)
		} else {
			// CLIP's zero-shot scoring, as engine.Classifier.Scores does
			// it: Scale × cosine, softmax over the labels.
			for j := range sc.nq {
				logits[j] = float32(float64(sc.clf.Scale) * float64(o[j]) * inv)
			}
			score = engine.Softmax(logits)[sc.label]
		}
		if score < sc.minScore {
			continue
		}
		matched++
		h := hit{score: score, seg: c.seg, rec: idx[i]}
		if top.accepts(h) {
			m := parseMeta(seg.data[headerSize+int(idx[i])*rs:])
			h.time, h.target = m.time, m.target
			top.push(h)
		}
	}
	sc.matched.Add(int64(matched))
}

// episodes groups hits by target into runs whose neighbours are less
// than the gap apart, ranks the runs by their best hit and fills in the
// best K.
func (s *Store) episodes(ctx context.Context, sc *scan, hits []hit) ([]Episode, error) {
	byTarget := make(map[uint32][]hit)
	for _, h := range hits {
		byTarget[h.target] = append(byTarget[h.target], h)
	}
	type run struct {
		target uint32
		hits   []hit
		best   hit
	}
	var runs []run
	gap := int64(sc.q.Gap)
	for target, hs := range byTarget {
		slices.SortFunc(hs, func(a, b hit) int {
			return cmp.Or(cmp.Compare(a.time, b.time), cmp.Compare(a.seg, b.seg), cmp.Compare(a.rec, b.rec))
		})
		from := 0
		for i := 1; i <= len(hs); i++ {
			if i < len(hs) && hs[i].time-hs[i-1].time < gap {
				continue
			}
			r := run{target: target, hits: hs[from:i], best: hs[from]}
			for _, h := range r.hits {
				if better(h, r.best) {
					r.best = h
				}
			}
			runs = append(runs, r)
			from = i
		}
	}
	slices.SortFunc(runs, func(a, b run) int {
		if better(a.best, b.best) {
			return -1
		}
		if better(b.best, a.best) {
			return 1
		}
		return 0
	})
	runs = runs[:min(len(runs), sc.q.K)]
	eps := make([]Episode, len(runs))
	// The names, under the lock that intern takes to add them; the
	// catalog's look-ups below go without it.
	s.mu.RLock()
	for i, r := range runs {
		bm := parseMeta(sc.segs[r.best.seg].record(int(r.best.rec)))
		e := Episode{
			Target:    s.targetOf(r.target),
			Start:     time.Unix(0, r.hits[0].time).UTC(),
			End:       time.Unix(0, r.hits[len(r.hits)-1].time).UTC(),
			BestTime:  time.Unix(0, bm.time).UTC(),
			BestSeq:   bm.seq,
			BestScore: r.best.score,
			Matched:   len(r.hits),
		}
		if sc.q.Frames {
			e.Frames = make([]Frame, len(r.hits))
			for j, h := range r.hits {
				m := parseMeta(sc.segs[h.seg].record(int(h.rec)))
				e.Frames[j] = Frame{Time: time.Unix(0, m.time).UTC(), Seq: m.seq, Score: h.score,
					TopLabel: s.labelOf(m.label), LabelsVersion: m.labelsVersion, Changed: m.flags&flagChanged != 0}
			}
		}
		eps[i] = e
	}
	s.mu.RUnlock()
	for i, r := range runs {
		best := eps[i].BestTime.UnixNano()
		th, ok, err := s.cat.nearestThumb(ctx, r.target, best)
		if err != nil {
			return nil, fmt.Errorf("history: search: catalog: %w", err)
		}
		if ok {
			eps[i].Thumbnail = &Thumbnail{ID: th.id, Time: time.Unix(0, th.time).UTC(), Seq: th.seq,
				OffsetMS: (th.time - best) / int64(time.Millisecond)}
		}
	}
	return eps, nil
}

// Thumbnail returns the JPEG of a stored thumbnail (an id from a search
// result), checked against its checksum; ok is false when it is gone
// (deleted by retention) or never existed.
func (s *Store) Thumbnail(ctx context.Context, id int64) (jpeg []byte, info Thumbnail, ok bool, err error) {
	row, found, err := s.cat.thumb(ctx, id)
	if err != nil || !found {
		return nil, info, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, found := slices.BinarySearchFunc(s.segs, segKey{row.seg, kindThumbnails}, compareSeg)
	if !found || s.segs[i].bad {
		// Gone, or in a segment left out as damaged: no picture to give.
		return nil, info, false, nil
	}
	seg := s.segs[i]
	size := seg.size.Load()
	if row.off < headerSize || row.off >= size {
		return nil, info, false, fmt.Errorf("history: thumbnail %d: catalog points outside its segment", id)
	}
	m, data, _, err := parseThumb(seg.data[row.off:size])
	if err != nil {
		return nil, info, false, fmt.Errorf("history: thumbnail %d: %w", id, err)
	}
	if int(m.length) != row.length || m.time != row.time || m.target != row.target {
		return nil, info, false, fmt.Errorf("history: thumbnail %d: entry does not match the catalog", id)
	}
	info = Thumbnail{ID: id, Time: time.Unix(0, m.time).UTC(), Seq: m.seq}
	return slices.Clone(data), info, true, nil
}
