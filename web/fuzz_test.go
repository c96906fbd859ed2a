package web

import (
	"net/url"
	"testing"
)

// FuzzSearchQuery feeds arbitrary query strings to the mapping of
// /api/search and the page's search: it never panics, and what passes
// Validate has exactly one query, within the request bounds.
func FuzzSearchQuery(f *testing.F) {
	for _, s := range []string{
		"q=a+red+car&since=2h&camera=drive", "label=a+car&camera=drive&region=gate&k=5&min_score=0.5&frames=true",
		"q=x&cameras=drive,yard/&cameras=drive/gate", "q=%ff", "image=/etc/passwd", "k=-1&q=a", "q=a&until=2026-01-01T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := searchFromQuery(q)
		if err != nil || req.Validate() != nil {
			return
		}
		n := 0
		for _, s := range []string{req.Text, req.Image, req.ImageB64, req.Label} {
			if s != "" {
				n++
			}
		}
		if n != 1 || req.Image != "" || req.ImageB64 != "" {
			t.Fatalf("%q gave %+v", raw, req)
		}
		if req.Label == "" && req.Camera != "" {
			t.Fatalf("%q: camera %q without a label", raw, req.Camera)
		}
	})
}
