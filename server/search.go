package server

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clipd/clipd/history"
)

// SearchRequest is a search of the camera memory (docs/history.md), the
// wire type of the socket's "search" command and of the HTTP listener's
// /api/search: exactly one of Text, Image, ImageB64 or Label, a Label
// with the Camera (and Region) whose label set scores it.
type SearchRequest struct {
	// Text ranks frames by cosine similarity to its text embedding.
	Text string `json:"text,omitempty"`
	// Image (a path the daemon may read, as for classify) or ImageB64
	// (standard base64) ranks frames by cosine similarity to the image's
	// embedding.
	Image    string `json:"image,omitempty"`
	ImageB64 string `json:"image_b64,omitempty"`
	// Label ranks frames by that label's zero-shot probability among the
	// current labels of Camera (and Region, "" for the whole frame).
	Label  string `json:"label,omitempty"`
	Camera string `json:"camera,omitempty"`
	Region string `json:"region,omitempty"`
	// Cameras restricts the search: "drive" is every target of camera
	// drive, "drive/gate" its region gate, "drive/" its whole frame
	// (history.ParseTargets).
	Cameras []string `json:"cameras,omitempty"`
	// Since and Until bound capture times: RFC 3339, or a duration back
	// from now ("2h", "3d"); "" is unbounded (history.ParseTime).
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// K is how many episodes to return: 0 means history.DefaultK, at most
	// history.MaxK.
	K int `json:"k,omitempty"`
	// MinScore drops frames scoring below it (a cosine in -1..1, or a
	// probability in 0..1 for Label).
	MinScore *float32 `json:"min_score,omitempty"`
	// Frames lists each episode's frames in the reply.
	Frames bool `json:"frames,omitempty"`

	// ImageData is the query image, read by the server from ImageB64 or
	// the file Image names.
	ImageData []byte `json:"-"`
}

// Bounds of a SearchRequest, so that no request costs more than a
// classify does.
const (
	// MaxSearchTextBytes is far beyond CLIP's 77 tokens; longer text is
	// a mistake or an attack, not a query.
	MaxSearchTextBytes = 4 << 10
	// MaxSearchImageB64Bytes matches what a socket command line may carry.
	MaxSearchImageB64Bytes = 8 << 20
	MaxSearchPathBytes     = 4 << 10
	MaxSearchCameras       = 256
	maxSearchNameBytes     = 256
	maxSearchTimeBytes     = 64
)

// ErrBadSearch is wrapped by every error of Validate, so that a listener
// can tell a client's mistake from a failure of the daemon.
var ErrBadSearch = errors.New("bad search")

func badSearch(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSearch, fmt.Sprintf(format, args...))
}

// Validate says what is wrong with the request, if anything. It checks
// the syntax of every field (times and cameras included) without reading
// any file or decoding the image.
func (r *SearchRequest) Validate() error {
	var given []string
	for _, f := range []struct{ key, val string }{
		{"text", r.Text}, {"image", r.Image}, {"image_b64", r.ImageB64}, {"label", r.Label},
	} {
		if f.val != "" {
			given = append(given, f.key)
		}
	}
	switch len(given) {
	case 0:
		return badSearch("give one of text, image, image_b64 or label")
	case 1:
	default:
		return badSearch("give only one of text, image, image_b64 or label, not %s", strings.Join(given, " and "))
	}
	switch {
	case len(r.Text) > MaxSearchTextBytes:
		return badSearch("text is longer than %d bytes", MaxSearchTextBytes)
	case !utf8.ValidString(r.Text):
		return badSearch("text is not UTF-8")
	case len(r.Image) > MaxSearchPathBytes:
		return badSearch("image path is longer than %d bytes", MaxSearchPathBytes)
	case len(r.ImageB64) > MaxSearchImageB64Bytes:
		return badSearch("image_b64 is longer than %d bytes", MaxSearchImageB64Bytes)
	}
	if err := checkSearchName("label", r.Label); err != nil {
		return err
	}
	if err := checkSearchName("camera", r.Camera); err != nil {
		return err
	}
	if err := checkSearchName("region", r.Region); err != nil {
		return err
	}
	switch {
	case r.Label != "" && r.Camera == "":
		return badSearch("label needs the camera (and region) whose labels score it")
	case r.Label == "" && r.Camera != "":
		return badSearch("camera goes with label; to restrict a text or image search use cameras")
	case r.Region != "" && r.Camera == "":
		return badSearch("region needs camera")
	case len(r.Cameras) > MaxSearchCameras:
		return badSearch("cameras lists more than %d targets", MaxSearchCameras)
	}
	if _, err := history.ParseTargets(r.Cameras); err != nil {
		return badSearch("cameras: %v", err)
	}
	if _, _, err := r.Range(time.Now()); err != nil {
		return err
	}
	switch {
	case r.K < 0 || r.K > history.MaxK:
		return badSearch("k must be between 1 and %d, got %d", history.MaxK, r.K)
	case r.MinScore != nil && !(*r.MinScore >= -1 && *r.MinScore <= 1):
		// The negated test also refuses NaN.
		return badSearch("min_score must be between -1 and 1")
	}
	return nil
}

func checkSearchName(key, s string) error {
	switch {
	case len(s) > maxSearchNameBytes:
		return badSearch("%s is longer than %d bytes", key, maxSearchNameBytes)
	case !utf8.ValidString(s):
		return badSearch("%s is not UTF-8", key)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return badSearch("%s contains a control character", key)
	}
	return nil
}

// Range returns the request's time bounds, durations taken back from now.
// A zero time is unbounded.
func (r *SearchRequest) Range(now time.Time) (since, until time.Time, err error) {
	for _, f := range []struct{ key, val string }{{"since", r.Since}, {"until", r.Until}} {
		if len(f.val) > maxSearchTimeBytes {
			return time.Time{}, time.Time{}, badSearch("%s is longer than %d bytes", f.key, maxSearchTimeBytes)
		}
	}
	if since, err = history.ParseTime(r.Since, now); err != nil {
		return time.Time{}, time.Time{}, badSearch("since: %v", err)
	}
	if until, err = history.ParseTime(r.Until, now); err != nil {
		return time.Time{}, time.Time{}, badSearch("until: %v", err)
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return time.Time{}, time.Time{}, badSearch("until (%s) is before since (%s)",
			until.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339))
	}
	return since, until, nil
}

// Targets returns the parsed Cameras filter.
func (r *SearchRequest) Targets() ([]history.TargetFilter, error) {
	t, err := history.ParseTargets(r.Cameras)
	if err != nil {
		return nil, badSearch("cameras: %v", err)
	}
	return t, nil
}

// Query fills the parts of a history.Query that come from the request
// alone: time range, targets, K, MinScore and Frames. The caller adds the
// model hash and the embedding or label classifier.
func (r *SearchRequest) Query(now time.Time) (history.Query, error) {
	var q history.Query
	var err error
	if q.Since, q.Until, err = r.Range(now); err != nil {
		return q, err
	}
	if q.Targets, err = r.Targets(); err != nil {
		return q, err
	}
	q.K = r.K
	if r.MinScore != nil {
		v := *r.MinScore
		if math.IsNaN(float64(v)) {
			return q, badSearch("min_score is not a number")
		}
		q.MinScore = &v
	}
	q.Frames = r.Frames
	return q, nil
}
