package history

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
)

// corpus is what a test stored, kept in float32 as the caller gave it.
type corpus struct {
	recs []Record
}

var corpusTargets = []Target{{Camera: "drive"}, {Camera: "drive", Region: "gate"}, {Camera: "yard"}, {Camera: "yard", Region: "shed"}}

// fillCorpus stores n records per target of model m1, 1 s apart, with
// bursts of similar frames around a few "event" directions so that
// episodes form, plus records of model m0 and m2 that must never be
// mixed in.
func fillCorpus(t testing.TB, s *Store, r *rand.Rand, n int, events [][]float32) *corpus {
	c := &corpus{}
	for i := range n {
		for ti, tg := range corpusTargets {
			emb := randomUnit(r, 64)
			if ev := (i / 25) % (len(events) + 3); ev < len(events) && (i+ti)%3 != 0 {
				// Near an event direction: cosine around 0.7 to 0.9.
				for d := range emb {
					emb[d] = emb[d]*0.4 + events[ev][d]
				}
			}
			rec := Record{Target: tg, Time: epoch.Add(time.Duration(i)*time.Second + time.Duration(ti)*time.Millisecond),
				Seq: uint64(i), Model: "m1", Embedding: emb, TopLabel: "label" + string(rune('a'+i%5)), LabelsVersion: uint64(i / 100),
				Changed: i%97 == 0}
			if err := s.Add(rec); err != nil {
				t.Fatal(err)
			}
			c.recs = append(c.recs, rec)
			if i%10 == 0 {
				other := rec
				other.Model, other.Embedding = []string{"m0", "m2"}[i%20/10], randomUnit(r, 32)
				other.Time = other.Time.Add(time.Second / 2)
				if err := s.Add(other); err != nil {
					t.Fatal(err)
				}
				c.recs = append(c.recs, other)
			}
		}
	}
	flush(t, s)
	return c
}

type refHit struct {
	rec   *Record
	score float64
}

// reference answers q by brute force in float64 over what the store keeps
// (binary16 of the normalized embedding); it shares no code with Search.
func (c *corpus) reference(q Query) (eps []Episode, scanned int, excluded map[string]int64) {
	excluded = make(map[string]int64)
	var hits []refHit
	for i := range c.recs {
		rec := &c.recs[i]
		if !q.Since.IsZero() && rec.Time.Before(q.Since) || !q.Until.IsZero() && rec.Time.After(q.Until) {
			continue
		}
		if len(q.Targets) > 0 && !slices.ContainsFunc(q.Targets, func(f TargetFilter) bool { return f.matches(rec.Target) }) {
			continue
		}
		if rec.Model != q.Model {
			excluded[rec.Model]++
			continue
		}
		scanned++
		v := stored(rec.Embedding)
		var score float64
		if q.Label == nil {
			score = cosine64(v, q.Embedding)
		} else {
			v32 := make([]float32, len(v))
			for i, x := range v {
				v32[i] = float32(x)
			}
			p, err := q.Label.Classifier.Scores(v32)
			if err != nil {
				panic(err)
			}
			score = float64(p[q.Label.Index])
		}
		if q.MinScore != nil && score < float64(*q.MinScore) {
			continue
		}
		hits = append(hits, refHit{rec, score})
	}
	slices.SortStableFunc(hits, func(a, b refHit) int { return cmp.Compare(b.score, a.score) })
	maxHits := cmp.Or(q.MaxHits, DefaultMaxHits)
	hits = hits[:min(len(hits), maxHits)]
	gap := cmp.Or(q.Gap, DefaultGap)
	byTarget := map[Target][]refHit{}
	for _, h := range hits {
		byTarget[h.rec.Target] = append(byTarget[h.rec.Target], h)
	}
	for tg, hs := range byTarget {
		slices.SortFunc(hs, func(a, b refHit) int { return a.rec.Time.Compare(b.rec.Time) })
		var cur *Episode
		var prev time.Time
		for _, h := range hs {
			if cur == nil || h.rec.Time.Sub(prev) >= gap {
				eps = append(eps, Episode{Target: tg, Start: h.rec.Time})
				cur = &eps[len(eps)-1]
			}
			prev = h.rec.Time
			cur.End = h.rec.Time
			cur.Matched++
			if float32(h.score) > cur.BestScore || cur.Matched == 1 {
				cur.BestScore, cur.BestSeq, cur.BestTime = float32(h.score), h.rec.Seq, h.rec.Time
			}
			cur.Frames = append(cur.Frames, Frame{Time: h.rec.Time, Seq: h.rec.Seq, Score: float32(h.score), TopLabel: h.rec.TopLabel})
		}
	}
	slices.SortStableFunc(eps, func(a, b Episode) int { return cmp.Compare(b.BestScore, a.BestScore) })
	return eps[:min(len(eps), cmp.Or(q.K, DefaultK))], scanned, excluded
}

const scoreTol = 2e-5

// compareEpisodes checks got against the reference; scores agree within
// scoreTol, and where two candidates are that close either may win.
func compareEpisodes(t *testing.T, name string, got, want []Episode) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d episodes, want %d", name, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if math.Abs(float64(g.BestScore-w.BestScore)) > scoreTol {
			t.Fatalf("%s: episode %d best score %v, want %v", name, i, g.BestScore, w.BestScore)
		}
		if g.Target != w.Target || !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || g.Matched != w.Matched {
			// A near tie may swap two episodes' ranks; look for it nearby.
			j := slices.IndexFunc(want, func(e Episode) bool {
				return e.Target == g.Target && e.Start.Equal(g.Start) && e.End.Equal(g.End) && e.Matched == g.Matched
			})
			if j < 0 || math.Abs(float64(want[j].BestScore-g.BestScore)) > scoreTol {
				t.Fatalf("%s: episode %d is %s %v..%v (%d frames), want %s %v..%v (%d frames)", name, i,
					g.Target, g.Start, g.End, g.Matched, w.Target, w.Start, w.End, w.Matched)
			}
			w = want[j]
		}
		if g.BestSeq != w.BestSeq {
			k := slices.IndexFunc(w.Frames, func(f Frame) bool { return f.Seq == g.BestSeq })
			if k < 0 || math.Abs(float64(w.Frames[k].Score-w.BestScore)) > scoreTol {
				t.Fatalf("%s: episode %d best seq %d, want %d", name, i, g.BestSeq, w.BestSeq)
			}
		}
		if g.Frames != nil {
			if len(g.Frames) != len(w.Frames) {
				t.Fatalf("%s: episode %d has %d frames, want %d", name, i, len(g.Frames), len(w.Frames))
			}
			for k := range w.Frames {
				gf, wf := g.Frames[k], w.Frames[k]
				if !gf.Time.Equal(wf.Time) || gf.Seq != wf.Seq || gf.TopLabel != wf.TopLabel || math.Abs(float64(gf.Score-wf.Score)) > scoreTol {
					t.Fatalf("%s: episode %d frame %d is %+v, want %+v", name, i, k, gf, wf)
				}
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestSearchMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	// Small segments (max_bytes 1 MiB → 64 KiB segments), so that the
	// scan crosses many segments and chunks.
	s := openTest(t, Config{MaxBytes: 8 << 20, Every: 100 * time.Millisecond, Now: newClock(epoch.Add(2 * time.Hour)).now})
	events := [][]float32{randomUnit(r, 64), randomUnit(r, 64), randomUnit(r, 64)}
	c := fillCorpus(t, s, r, 1500, events)
	if st := s.Status(); st.Segments < 8 || st.Records != int64(len(c.recs)) {
		t.Fatalf("status %+v: want at least 8 segments and %d records", st, len(c.recs))
	}
	targets, err := ParseTargets([]string{"drive", "yard/shed"})
	if err != nil {
		t.Fatal(err)
	}
	wholeDrive, _ := ParseTargets([]string{"drive/"})
	labelClf, err := engine.NewClassifier([]string{"a", "b", "c", "d"}, [][][]float32{{events[0]}, {events[1]}, {events[2]}, {randomUnit(r, 64)}}, 8)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		q    Query
	}{
		{"event 0", Query{Embedding: events[0], K: 10, MaxHits: 100000, MinScore: ptr(float32(0.5)), Frames: true}},
		{"event 1 default k", Query{Embedding: events[1], MaxHits: 100000, MinScore: ptr(float32(0.6))}},
		{"random query, top 300 frames", Query{Embedding: randomUnit(r, 64), K: 1000, MaxHits: 300, Frames: true}},
		{"targets", Query{Embedding: events[2], K: 50, MaxHits: 100000, MinScore: ptr(float32(0.4)), Targets: targets, Frames: true}},
		{"whole frame only", Query{Embedding: events[0], K: 50, MaxHits: 100000, MinScore: ptr(float32(0.4)), Targets: wholeDrive}},
		{"since until", Query{Embedding: events[1], K: 50, MaxHits: 100000, MinScore: ptr(float32(0.3)),
			Since: epoch.Add(200 * time.Second), Until: epoch.Add(900 * time.Second), Frames: true}},
		{"gap 60 s", Query{Embedding: events[0], K: 50, MaxHits: 100000, MinScore: ptr(float32(0.5)), Gap: time.Minute}},
		{"label b", Query{Label: &LabelQuery{Classifier: labelClf, Index: 1}, K: 20, MaxHits: 100000, MinScore: ptr(float32(0.5)), Frames: true}},
		{"label d top 200", Query{Label: &LabelQuery{Classifier: labelClf, Index: 3}, K: 1000, MaxHits: 200, Frames: true}},
	}
	for _, tc := range cases {
		tc.q.Model = "m1"
		res, err := s.Search(context.Background(), tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want, scanned, excluded := c.reference(tc.q)
		if res.Scanned != int64(scanned) {
			t.Fatalf("%s: scanned %d, want %d", tc.name, res.Scanned, scanned)
		}
		if len(want) == 0 {
			t.Fatalf("%s: the reference found nothing; the case tests nothing", tc.name)
		}
		var ex int64
		for _, e := range res.Excluded {
			if e.Records != excluded[e.Model] || e.Reason == "" {
				t.Fatalf("%s: excluded %+v, want %d", tc.name, e, excluded[e.Model])
			}
			ex += e.Records
		}
		if len(res.Excluded) != len(excluded) {
			t.Fatalf("%s: excluded %+v, want %v", tc.name, res.Excluded, excluded)
		}
		compareEpisodes(t, tc.name, res.Episodes, want)
		t.Logf("%s: %d scanned, %d matched, %d excluded, %d episodes, best %.4f", tc.name, res.Scanned, res.Matched, ex, len(res.Episodes), res.Episodes[0].BestScore)
	}
}

// TestSearchFP32Recall measures what binary16 storage costs a ranking:
// the top 20 frames by the stored vectors against the top 20 by the
// float32 embeddings the caller gave.
func TestSearchFP32Recall(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := openTest(t, Config{Every: time.Millisecond, Now: newClock(epoch.Add(24 * time.Hour)).now})
	const n = 20000
	embs := make([][]float32, n)
	for i := range n {
		embs[i] = randomUnit(r, 512)
		if err := s.Add(Record{Target: Target{Camera: "c"}, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i), Model: "m", Embedding: embs[i]}); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			flush(t, s) // the queue holds 16 MiB
		}
	}
	flush(t, s)
	var recall float64
	const queries = 20
	for range queries {
		q := randomUnit(r, 512)
		res, err := s.Search(context.Background(), Query{Model: "m", Embedding: q, K: 20, MaxHits: 20, Gap: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		type sc struct {
			seq   uint64
			score float64
		}
		all := make([]sc, n)
		for i, e := range embs {
			var d float64
			for j := range e {
				d += float64(e[j]) * float64(q[j])
			}
			all[i] = sc{uint64(i), d}
		}
		slices.SortFunc(all, func(a, b sc) int { return cmp.Compare(b.score, a.score) })
		got := map[uint64]bool{}
		for _, e := range res.Episodes {
			got[e.BestSeq] = true
		}
		if recall == 0 {
			t.Logf("best %+v, want %+v (scanned %d)", res.Episodes[0], all[:3], res.Scanned)
		}
		for _, a := range all[:20] {
			if got[a.seq] {
				recall++
			}
		}
	}
	recall /= queries * 20
	t.Logf("top-20 recall of binary16 storage against float32, random 512-d unit vectors: %.4f", recall)
	if recall < 0.95 {
		t.Errorf("recall %.4f", recall)
	}
}
