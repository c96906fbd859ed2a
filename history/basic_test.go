package history

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestAddSearchReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(epoch.Add(time.Hour))
	cfg := Config{Dir: dir, Now: clk.now}
	s := openTest(t, cfg)
	r := rand.New(rand.NewPCG(1, 2))
	query := randomUnit(r, 512)
	for i := range 100 {
		emb := randomUnit(r, 512)
		if i == 42 {
			emb = query
		}
		if err := s.Add(Record{Target: Target{Camera: "drive"}, Time: epoch.Add(time.Duration(i) * time.Second), Seq: uint64(i),
			Model: "m1", Embedding: emb, TopLabel: "car", LabelsVersion: 3}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, s)
	check := func(s *Store) {
		t.Helper()
		res, err := s.Search(context.Background(), Query{Model: "m1", Embedding: query, K: 1, Frames: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Scanned != 100 || len(res.Episodes) != 1 {
			t.Fatalf("scanned %d, %d episodes; want 100, 1: %+v", res.Scanned, len(res.Episodes), res)
		}
		e := res.Episodes[0]
		if e.BestSeq != 42 || e.BestScore < 0.9999 || e.Camera != "drive" || !e.BestTime.Equal(epoch.Add(42*time.Second)) {
			t.Fatalf("best episode %+v", e)
		}
		if st := s.Status(); st.Records != 100 || st.Stored != 0 && st.Stored != 100 {
			t.Fatalf("status %+v", st)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, cfg))
}
