package server

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/history"
)

func f32(v float32) *float32 { return &v }

func TestSearchRequestValidate(t *testing.T) {
	ok := []SearchRequest{
		{Text: "a red car"},
		{Text: "a red car", Cameras: []string{"drive", "drive/gate", "yard/"}, Since: "2026-03-01T12:00:00Z", Until: "2h", K: 5, MinScore: f32(0.2), Frames: true},
		{ImageB64: "aGVsbG8="},
		{Image: "/srv/pictures/van.jpg"},
		{Label: "a car", Camera: "drive"},
		{Label: "a car", Camera: "drive", Region: "gate", MinScore: f32(0.5)},
		{Text: "x", Since: "3d", Until: "1h"},
		{Text: "x", K: history.MaxK},
	}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []struct {
		req  SearchRequest
		want string
	}{
		{SearchRequest{}, "give one of text, image, image_b64 or label"},
		{SearchRequest{Text: "a", Label: "b", Camera: "c"}, "not text and label"},
		{SearchRequest{Text: "a", ImageB64: "b"}, "not text and image_b64"},
		{SearchRequest{Label: "a car"}, "label needs the camera"},
		{SearchRequest{Text: "a", Camera: "drive"}, "use cameras"},
		{SearchRequest{Label: "a", Camera: "", Region: "gate"}, "label needs the camera"},
		{SearchRequest{Text: strings.Repeat("a", MaxSearchTextBytes+1)}, "text is longer"},
		{SearchRequest{Text: "\xff"}, "text is not UTF-8"},
		{SearchRequest{ImageB64: strings.Repeat("A", MaxSearchImageB64Bytes+4)}, "image_b64 is longer"},
		{SearchRequest{Label: "a\x00b", Camera: "drive"}, "label contains a control character"},
		{SearchRequest{Text: "a", Cameras: []string{"drive/gate/x"}}, "cameras:"},
		{SearchRequest{Text: "a", Cameras: []string{""}}, "cameras:"},
		{SearchRequest{Text: "a", Cameras: make([]string, MaxSearchCameras+1)}, "more than"},
		{SearchRequest{Text: "a", Since: "yesterday"}, "since:"},
		{SearchRequest{Text: "a", Until: "-2h"}, "until:"},
		{SearchRequest{Text: "a", Since: "1h", Until: "2h"}, "is before since"},
		{SearchRequest{Text: "a", Since: strings.Repeat("1", 100)}, "since is longer"},
		{SearchRequest{Text: "a", K: -1}, "k must be"},
		{SearchRequest{Text: "a", K: history.MaxK + 1}, "k must be"},
		{SearchRequest{Text: "a", MinScore: f32(float32(math.NaN()))}, "min_score"},
		{SearchRequest{Text: "a", MinScore: f32(1.5)}, "min_score"},
	}
	for _, c := range bad {
		err := c.req.Validate()
		if err == nil {
			t.Errorf("%.80v: accepted", c.req)
			continue
		}
		if !errors.Is(err, ErrBadSearch) {
			t.Errorf("%.80v: %v does not wrap ErrBadSearch", c.req, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.80v: %q, want it to say %q", c.req, err, c.want)
		}
		if len(err.Error()) > 300 {
			t.Errorf("%.80v: a %d-byte error echoes the request", c.req, len(err.Error()))
		}
	}
}

func TestSearchRequestQuery(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := SearchRequest{Text: "a red car", Cameras: []string{"drive/gate", "yard/"}, Since: "2h", Until: "2026-03-01T11:30:00Z", K: 7, MinScore: f32(0.25), Frames: true}
	q, err := r.Query(now)
	if err != nil {
		t.Fatal(err)
	}
	if !q.Since.Equal(now.Add(-2*time.Hour)) || !q.Until.Equal(now.Add(-30*time.Minute)) {
		t.Errorf("range %v..%v", q.Since, q.Until)
	}
	want := []history.TargetFilter{{Camera: "drive", Region: "gate"}, {Camera: "yard", WholeFrame: true}}
	if len(q.Targets) != 2 || q.Targets[0] != want[0] || q.Targets[1] != want[1] {
		t.Errorf("targets %+v, want %+v", q.Targets, want)
	}
	if q.K != 7 || q.MinScore == nil || *q.MinScore != 0.25 || !q.Frames {
		t.Errorf("k %d min_score %v frames %v", q.K, q.MinScore, q.Frames)
	}
	// The query's MinScore is its own copy.
	*r.MinScore = 0.9
	if *q.MinScore != 0.25 {
		t.Error("Query shares MinScore with the request")
	}
}

// TestSearchRequestJSON pins the wire names of docs/socket.md and
// docs/http.md.
func TestSearchRequestJSON(t *testing.T) {
	var r SearchRequest
	in := `{"label":"a car","camera":"drive","region":"gate","cameras":["drive"],"since":"2h","until":"1h","k":3,"min_score":0.5,"frames":true}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Label != "a car" || r.Camera != "drive" || r.Region != "gate" || len(r.Cameras) != 1 || r.Since != "2h" || r.Until != "1h" || r.K != 3 || *r.MinScore != 0.5 || !r.Frames {
		t.Fatalf("decoded %+v", r)
	}
	out, _ := json.Marshal(SearchRequest{Text: "x", ImageB64: "y", Image: "z"})
	if string(out) != `{"text":"x","image":"z","image_b64":"y"}` {
		t.Errorf("encoded %s", out)
	}
}

// FuzzSearchRequest feeds arbitrary JSON: Validate never panics, and what
// it accepts has exactly one query and parses as a history query.
func FuzzSearchRequest(f *testing.F) {
	for _, s := range []string{
		`{"text":"a red car","since":"2h"}`, `{"label":"x","camera":"c","region":"r"}`,
		`{"image_b64":"AAAA","cameras":["a/b","c/"],"k":5,"min_score":0.1}`, `{"text":"a","until":"2026-01-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r SearchRequest
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if r.Validate() != nil {
			return
		}
		n := 0
		for _, s := range []string{r.Text, r.Image, r.ImageB64, r.Label} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("accepted %d queries: %+v", n, r)
		}
		if _, err := r.Query(now); err != nil && !strings.Contains(err.Error(), "before since") {
			// A relative and an absolute bound may cross between Validate's now and this one.
			t.Fatalf("valid request, but Query: %v", err)
		}
	})
}
