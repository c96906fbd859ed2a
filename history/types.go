package history

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clipd/clipd/engine"
	"github.com/clipd/clipd/internal/units"
)

// Target is what a record describes: a camera's whole frame (Region "")
// or one region of it.
type Target struct {
	Camera string `json:"camera"`
	Region string `json:"region,omitempty"`
}

func (t Target) String() string {
	if t.Region == "" {
		return t.Camera
	}
	return t.Camera + "/" + t.Region
}

const maxNameLen = 64

func checkName(kind, s string, empty bool) error {
	switch {
	case s == "" && empty:
		return nil
	case s == "":
		return fmt.Errorf("%s is empty", kind)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s is longer than %d bytes", kind, maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", kind)
	case strings.ContainsRune(s, '/'):
		return fmt.Errorf("%s %q contains '/'", kind, s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %q contains a control character", kind, s)
	}
	return nil
}

func (t Target) validate() error {
	if err := checkName("camera", t.Camera, false); err != nil {
		return err
	}
	return checkName("region", t.Region, true)
}

// Record is one classified frame of one target.
type Record struct {
	Target
	// Time is when the frame was captured, Seq its number in its camera.
	Time time.Time
	Seq  uint64
	// Model is the content hash of the image model that made Embedding;
	// searches only compare records of one model.
	Model string
	// Embedding is the image embedding, normalized or not (it is stored
	// normalized). Add copies it.
	Embedding []float32
	// LabelsVersion and TopLabel are the target's label set and its best
	// label when the frame was scored.
	LabelsVersion uint64
	TopLabel      string
	// Changed marks a frame that changed the target's state: it is stored
	// even within Every, with its thumbnail.
	Changed bool
	// Thumbnail is a small JPEG of the frame, or nil. Add keeps the slice
	// without copying it, so the caller must not modify it afterwards.
	// Call Wants first so as to encode one only when it will be kept.
	Thumbnail []byte
}

const maxLabelLen = 256

func (r *Record) validate() error {
	if err := r.Target.validate(); err != nil {
		return err
	}
	switch {
	case r.Model == "":
		return errors.New("no model hash")
	case len(r.Model) > maxModelLen || !utf8.ValidString(r.Model):
		return fmt.Errorf("model hash must be UTF-8 of at most %d bytes", maxModelLen)
	case len(r.Embedding) == 0 || len(r.Embedding) > maxDim:
		return fmt.Errorf("embedding of %d values (1 to %d)", len(r.Embedding), maxDim)
	case len(r.TopLabel) > maxLabelLen || !utf8.ValidString(r.TopLabel):
		return fmt.Errorf("top label must be UTF-8 of at most %d bytes", maxLabelLen)
	case r.Time.IsZero():
		return errors.New("no capture time")
	case len(r.Thumbnail) > MaxThumbnailBytes:
		return fmt.Errorf("thumbnail of %d bytes (at most %d)", len(r.Thumbnail), MaxThumbnailBytes)
	}
	n := engine.Norm(r.Embedding)
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return fmt.Errorf("embedding has norm %v", n)
	}
	return nil
}

// Want is what Add would keep of a frame: its embedding, and a thumbnail
// if the caller supplies one.
type Want struct {
	Record    bool
	Thumbnail bool
}

// TargetFilter selects targets in a search: Camera alone is every target
// of that camera (its whole frame and its regions); with Region set, only
// that region; with WholeFrame, only the camera's whole frame.
type TargetFilter struct {
	Camera     string
	Region     string
	WholeFrame bool
}

func (f TargetFilter) matches(t Target) bool {
	switch {
	case t.Camera != f.Camera:
		return false
	case f.WholeFrame:
		return t.Region == ""
	case f.Region != "":
		return t.Region == f.Region
	}
	return true
}

// ParseTargets reads the "cameras" filter of a search: "drive" is every
// target of camera drive, "drive/gate" its region gate, "drive/" its whole
// frame only.
func ParseTargets(specs []string) ([]TargetFilter, error) {
	var out []TargetFilter
	for _, s := range specs {
		cam, region, hasSlash := strings.Cut(s, "/")
		if err := checkName("camera", cam, false); err != nil {
			return nil, fmt.Errorf("target %.80q: %w", s, err)
		}
		if err := checkName("region", region, true); err != nil {
			return nil, fmt.Errorf("target %.80q: %w", s, err)
		}
		out = append(out, TargetFilter{Camera: cam, Region: region, WholeFrame: hasSlash && region == ""})
	}
	return out, nil
}

// ParseTime reads a search's since/until: an RFC 3339 time, or a duration
// back from now ("2h", "90m", "3d"; days are 24 hours). "" is the zero
// time (no bound).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := units.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %.40q: not RFC 3339 (2006-01-02T15:04:05Z07:00) nor a duration like \"2h\" or \"3d\"", s)
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("time %.40q: a duration back from now must not be negative", s)
	}
	return now.Add(-d), nil
}

// Status is the store's state for the daemon's status reply and metrics.
type Status struct {
	Dir          string `json:"dir"`
	Records      int64  `json:"records"`
	Thumbnails   int64  `json:"thumbnails"`
	Bytes        int64  `json:"bytes"`
	MaxBytes     int64  `json:"max_bytes"`
	CatalogBytes int64  `json:"catalog_bytes"`
	Segments     int    `json:"segments"`
	// Oldest and Newest are capture times of the records kept.
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// Paused is set while writes fail (a full disk); records are dropped
	// meanwhile and classification goes on.
	Paused      bool   `json:"paused"`
	PauseReason string `json:"pause_reason,omitempty"`
	Pauses      uint64 `json:"pauses"`
	// Stored counts records written; Skipped those not due (Every);
	// Dropped those lost to a full queue, DroppedPaused those lost while
	// paused, Invalid those Add refused.
	Stored        uint64 `json:"stored"`
	Skipped       uint64 `json:"skipped"`
	Dropped       uint64 `json:"dropped"`
	DroppedPaused uint64 `json:"dropped_paused"`
	Invalid       uint64 `json:"invalid"`
	QueuedBytes   int64  `json:"queued_bytes"`
	// TornBytes is what was discarded at Open from tails torn by a crash;
	// BadSegments are segment files that failed validation and are left
	// out (kept on disk until retention removes them).
	TornBytes   int64        `json:"torn_bytes"`
	BadSegments int          `json:"bad_segments"`
	Models      []ModelCount `json:"models"`
	Kernel      string       `json:"kernel"`
}

// ModelCount is how many records one image model made.
type ModelCount struct {
	Model   string `json:"model"`
	Dim     int    `json:"dim"`
	Records int64  `json:"records"`
}

// Query is one search. Exactly one of Embedding and Label is set.
type Query struct {
	// Model is the current image model's hash; records of other models
	// are left out and counted in Result.Excluded.
	Model string
	// Embedding ranks frames by cosine similarity to it (a text or image
	// embedding; normalized here).
	Embedding []float32
	// Label ranks frames by that label's zero-shot probability.
	Label *LabelQuery
	// Targets restricts the search; none means every target.
	Targets []TargetFilter
	// Since and Until bound capture times (inclusive); zero is unbounded.
	Since, Until time.Time
	// K is how many episodes to return (default 20, at most 1000).
	K int
	// MinScore drops frames scoring below it; nil keeps every frame.
	MinScore *float32
	// Gap: hits of one target closer than this are one episode
	// (default 10 s).
	Gap time.Duration
	// MaxHits is how many of the best frames are grouped into episodes
	// (default 1000, at most 100000); Result.Truncated says when more
	// frames passed MinScore.
	MaxHits int
	// Frames lists each episode's frames.
	Frames bool
}

// LabelQuery scores a frame as CLIP does: softmax over the classifier's
// labels of Scale × cosine, taking label Index's probability.
type LabelQuery struct {
	Classifier *engine.Classifier
	Index      int
}

// Defaults and bounds of Query.
const (
	DefaultK       = 20
	MaxK           = 1000
	DefaultGap     = 10 * time.Second
	DefaultMaxHits = 1000
	MaxMaxHits     = 100000
)

// Result is a search's reply, ready to be sent as JSON.
type Result struct {
	// Score is "cosine" or "probability".
	Score string `json:"score"`
	Label string `json:"label,omitempty"`
	Model string `json:"model"`
	// Scanned is how many records of the model (within the time range)
	// were scored, Matched how many passed MinScore.
	Scanned   int64 `json:"scanned"`
	Matched   int64 `json:"matched"`
	Truncated bool  `json:"truncated,omitempty"`
	// Excluded are the records within the time range and targets that
	// another model made.
	Excluded []Excluded `json:"excluded,omitempty"`
	Episodes []Episode  `json:"episodes"`
	TookMS   float64    `json:"took_ms"`
}

// Excluded counts records left out of a search, and says why.
type Excluded struct {
	Model   string `json:"model"`
	Records int64  `json:"records"`
	Reason  string `json:"reason"`
}

// Episode is a run of hits of one target, each less than the gap from the
// next.
type Episode struct {
	Target
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	BestTime  time.Time `json:"best_time"`
	BestSeq   uint64    `json:"best_seq"`
	BestScore float32   `json:"best_score"`
	// Matched is how many hits the episode has.
	Matched   int        `json:"matched"`
	Thumbnail *Thumbnail `json:"thumbnail,omitempty"`
	Frames    []Frame    `json:"frames,omitempty"`
}

// Frame is one hit.
type Frame struct {
	Time          time.Time `json:"time"`
	Seq           uint64    `json:"seq"`
	Score         float32   `json:"score"`
	TopLabel      string    `json:"top_label,omitempty"`
	LabelsVersion uint64    `json:"labels_version,omitempty"`
	Changed       bool      `json:"changed,omitempty"`
}

// Thumbnail is the stored picture of the target nearest in time to an
// episode's best frame; Store.Thumbnail(ID) returns its JPEG.
type Thumbnail struct {
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	Seq  uint64    `json:"seq"`
	// OffsetMS is the picture's time minus the best frame's.
	OffsetMS int64 `json:"offset_ms"`
}
