package web

import (
	"context"
	"errors"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
)

// Backend is what the listener needs of the daemon. Every method may be
// called from many requests at once.
type Backend interface {
	// Status is the socket's status reply.
	Status() server.Status
	// Health says whether frames make progress (the watchdog's rule) and,
	// when not, why. The reason is shown to anyone who can reach the
	// port, so it must not hold secrets.
	Health() (ok bool, reason string)
	// Cameras lists every camera with its targets and their states.
	Cameras() []Camera
	// LatestFrame is a JPEG of the camera's newest frame and its capture
	// time; ErrNotFound for an unknown camera or one with no frame yet.
	LatestFrame(camera string) (jpeg []byte, at time.Time, err error)
	// Events returns the n most recent events, newest first.
	Events(n int) []state.Event
	// Search runs a validated request. Errors wrapping
	// server.ErrBadSearch are the client's (an unknown camera or label)
	// and are shown; ErrUnavailable means there is no history to search.
	Search(ctx context.Context, req server.SearchRequest) (*history.Result, error)
	// Thumbnail is the JPEG of a history thumbnail (Episode.Thumbnail.ID);
	// ErrNotFound when it is gone.
	Thumbnail(ctx context.Context, id int64) ([]byte, error)
	// Snapshot is the JPEG of the event snapshot with this base name
	// (snapshot.ValidName holds for it); snapshot.Writer.Read does it.
	Snapshot(name string) ([]byte, error)
}

// Errors a Backend wraps to choose the HTTP status; any other error is a
// 500 whose text stays in the log.
var (
	// ErrNotFound: 404.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: 503, with the error's text (e.g. "history is off").
	ErrUnavailable = errors.New("unavailable")
)

// Camera is one camera as the page shows it.
type Camera struct {
	Name string
	// Width and Height are the frame's size in pixels, 0 until known.
	Width, Height int
	// Targets are the whole frame (Region "") and the regions, each with
	// its state.
	Targets []Target
}

// Target is a camera's whole frame or one region of it.
type Target struct {
	// Region is "" for the whole frame.
	Region string
	// Box is the region in frame pixels; nil for the whole frame.
	Box *frame.Box
	// State is the tracker's current state (Label "" before the first).
	State state.Current
}
