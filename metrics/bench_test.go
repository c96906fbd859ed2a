package metrics

import (
	"io"
	"net/http/httptest"
	"testing"
)

// BenchmarkObserveFrame is the cost the classification path pays per
// frame: six stage observations.
func BenchmarkObserveFrame(b *testing.B) {
	m, err := New(Options{Snapshot: sampleSnapshot})
	if err != nil {
		b.Fatal(err)
	}
	lat := map[string]float64{"capture": 0.4, "preprocess": 2.1, "queue": 0.2, "encode": 11.5, "score": 0.1, "total": 14.3}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveFrame("drive", lat)
	}
}

// BenchmarkScrape is one GET /metrics of a two-camera daemon with every
// part on, as Prometheus does it.
func BenchmarkScrape(b *testing.B) {
	m, err := New(Options{Snapshot: sampleSnapshot})
	if err != nil {
		b.Fatal(err)
	}
	m.ObserveFrame("drive", map[string]float64{"encode": 3, "total": 9})
	h := m.Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		io.Discard.Write(w.Body.Bytes())
	}
}
