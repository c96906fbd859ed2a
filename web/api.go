package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/snapshot"
	"github.com/clipd/clipd/state"
)

// cameraName is config's rule for camera names, bounded.
var cameraName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// writeError answers with a status and a short text: JSON under /api/,
// plain text elsewhere.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	msg = clip(msg)
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, struct {
			Error string `json:"error"`
		}{msg})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// backendError answers with errorStatus's status and text.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, what string, err error) {
	code, msg := s.errorStatus(r, what, err)
	writeError(w, r, code, msg)
}

// errorStatus turns a backend's error into a status and a text: only the
// client's mistakes and "unavailable" are explained, anything else is
// logged and called an internal error.
func (s *Server) errorStatus(r *http.Request, what string, err error) (int, string) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, snapshot.ErrNotFound):
		return http.StatusNotFound, what + " not found"
	case errors.Is(err, server.ErrBadSearch):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, what + ": took too long or the server is stopping"
	}
	s.log.Warn("http request failed", "path", clip(r.URL.Path), "err", err)
	return http.StatusInternalServerError, "internal error (see clipd's log)"
}

func writeJPEG(w http.ResponseWriter, jpg []byte, cache string) {
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Content-Length", strconv.Itoa(len(jpg)))
	w.Header().Set("Cache-Control", cache)
	w.Write(jpg)
}

// writeStoredJPEG serves a stored picture (a thumbnail, a snapshot),
// cached for a day, with an ETag of its bytes: should a name ever come to
// mean another picture, a browser asking again after the day gets the new
// one, and otherwise a 304 without the bytes.
func writeStoredJPEG(w http.ResponseWriter, r *http.Request, jpg []byte) {
	sum := sha256.Sum256(jpg)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && len(inm) <= 4<<10 {
		for _, t := range strings.Split(inm, ",") {
			if t = strings.TrimPrefix(strings.TrimSpace(t), "W/"); t == etag || t == "*" {
				w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	writeJPEG(w, jpg, "private, max-age=86400, immutable")
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.Status())
}

// cameraJSON is a camera in /api/cameras.
type cameraJSON struct {
	Name      string       `json:"name"`
	Width     int          `json:"width"`
	Height    int          `json:"height"`
	FPS       float64      `json:"fps"`
	LastError string       `json:"last_error,omitempty"`
	FrameURL  string       `json:"frame_url"`
	Targets   []targetJSON `json:"targets"`
}

type targetJSON struct {
	Region string        `json:"region"`
	Box    *[4]int       `json:"box"`
	State  state.Current `json:"state"`
}

func boxJSON(b *frame.Box) *[4]int {
	if b == nil {
		return nil
	}
	return &[4]int{b.X1, b.Y1, b.X2, b.Y2}
}

func (s *Server) cameras() []cameraJSON {
	st := s.backend.Status()
	byName := map[string]*server.CameraStatus{}
	for i := range st.Cameras {
		byName[st.Cameras[i].Name] = &st.Cameras[i]
	}
	out := []cameraJSON{}
	for _, c := range s.backend.Cameras() {
		cj := cameraJSON{Name: c.Name, Width: c.Width, Height: c.Height, FrameURL: "/api/frame/" + c.Name, Targets: []targetJSON{}}
		if cs := byName[c.Name]; cs != nil {
			cj.FPS, cj.LastError = cs.FPS, clip(cs.LastError)
		}
		for _, t := range c.Targets {
			cj.Targets = append(cj.Targets, targetJSON{Region: t.Region, Box: boxJSON(t.Box), State: t.State})
		}
		out = append(out, cj)
	}
	return out
}

func (s *Server) apiCameras(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cameras())
}

// eventJSON is an event in /api/events: the snapshot as a base name and
// a URL, never the daemon's path.
type eventJSON struct {
	state.Event
	Snapshot    string `json:"snapshot,omitempty"`
	SnapshotURL string `json:"snapshot_url,omitempty"`
}

func (s *Server) events(n int) []eventJSON {
	evs := s.backend.Events(n)
	if len(evs) > n {
		evs = evs[:n]
	}
	out := make([]eventJSON, 0, len(evs))
	for _, ev := range evs {
		e := eventJSON{Event: ev}
		if name := filepath.Base(ev.Snapshot); ev.Snapshot != "" && snapshot.ValidName(name) {
			e.Snapshot, e.SnapshotURL = name, "/api/snapshot/"+name
		}
		out = append(out, e)
	}
	return out
}

func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	n := s.cfg.Events
	if v := r.URL.Query().Get("n"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > MaxEvents {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("n must be a number from 1 to %d", MaxEvents))
			return
		}
		n = k
	}
	writeJSON(w, http.StatusOK, s.events(n))
}

// searchFromQuery maps /api/search's (and the page's) query parameters
// onto the wire request: q is text, the others have their JSON names;
// cameras may repeat or be comma-separated, and camera without label is
// a filter (as cameras).
func searchFromQuery(q map[string][]string) (server.SearchRequest, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	req := server.SearchRequest{
		Text: get("q"), Label: get("label"), Camera: get("camera"), Region: get("region"),
		Since: get("since"), Until: get("until"),
	}
	if req.Text == "" {
		req.Text = get("text")
	}
	for _, v := range q["cameras"] {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				req.Cameras = append(req.Cameras, c)
			}
		}
	}
	if req.Label == "" && req.Camera != "" {
		target := req.Camera
		if req.Region != "" {
			target += "/" + req.Region
		}
		req.Cameras = append(req.Cameras, target)
		req.Camera, req.Region = "", ""
	}
	if v := get("k"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil {
			return req, fmt.Errorf("%w: k is not a number", server.ErrBadSearch)
		}
		req.K = k
	}
	if v := get("min_score"); v != "" {
		f, err := strconv.ParseFloat(v, 32)
		if err != nil {
			return req, fmt.Errorf("%w: min_score is not a number", server.ErrBadSearch)
		}
		m := float32(f)
		req.MinScore = &m
	}
	switch get("frames") {
	case "", "0", "false":
	case "1", "true":
		req.Frames = true
	default:
		return req, fmt.Errorf("%w: frames must be true or false", server.ErrBadSearch)
	}
	if get("image") != "" || get("image_b64") != "" {
		return req, fmt.Errorf("%w: images go in a POST of JSON (image_b64)", server.ErrBadSearch)
	}
	return req, nil
}

func (s *Server) apiSearch(w http.ResponseWriter, r *http.Request) {
	var req server.SearchRequest
	if r.Method == http.MethodPost {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeError(w, r, http.StatusUnsupportedMediaType, "POST /api/search takes application/json")
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSearchBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxSearchBody))
				return
			}
			writeError(w, r, http.StatusBadRequest, "the body is not a search request: "+jsonProblem(err))
			return
		}
		if dec.More() {
			writeError(w, r, http.StatusBadRequest, "the body holds more than one JSON value")
			return
		}
	} else {
		var err error
		if req, err = searchFromQuery(r.URL.Query()); err != nil {
			writeError(w, r, http.StatusBadRequest, err.Error())
			return
		}
	}
	res, err := s.search(r.Context(), req)
	if err != nil {
		s.backendError(w, r, "search", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// jsonProblem describes a decoding error without quoting the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %.40q has the wrong type", typ.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + clip(strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return "invalid JSON"
}

// search validates and runs one request, at most maxSearches at once:
// each scans the whole memory on every core.
func (s *Server) search(ctx context.Context, req server.SearchRequest) (*history.Result, error) {
	if req.Image != "" {
		return nil, fmt.Errorf("%w: image paths are for the socket; over HTTP send the picture as image_b64", server.ErrBadSearch)
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	wait, cancel := context.WithTimeout(ctx, searchQueueWait)
	defer cancel()
	select {
	case s.searches <- struct{}{}:
	case <-wait.Done():
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: too many searches at once; try again", ErrUnavailable)
	}
	defer func() { <-s.searches }()
	ctx, cancel = context.WithTimeout(ctx, searchTimeout)
	defer cancel()
	return s.backend.Search(ctx, req)
}

// frameCache keeps each camera's latest JPEG for a moment, so that many
// open pages cost the daemon one encoding per camera and moment.
type frameCache struct {
	mu      sync.Mutex
	entries map[string]cachedFrame
}

type cachedFrame struct {
	jpg     []byte
	at      time.Time
	fetched time.Time
}

func (c *frameCache) get(camera string, now time.Time, load func() ([]byte, time.Time, error)) ([]byte, time.Time, error) {
	c.mu.Lock()
	e, ok := c.entries[camera]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < frameCacheFor {
		return e.jpg, e.at, nil
	}
	jpg, at, err := load()
	if err != nil {
		return nil, time.Time{}, err
	}
	c.mu.Lock()
	// Cameras a reload removed leave with the next load of any camera.
	for name, old := range c.entries {
		if now.Sub(old.fetched) > time.Minute {
			delete(c.entries, name)
		}
	}
	c.entries[camera] = cachedFrame{jpg: jpg, at: at, fetched: now}
	c.mu.Unlock()
	return jpg, at, nil
}

func (s *Server) apiFrame(w http.ResponseWriter, r *http.Request) {
	camera := r.PathValue("camera")
	if !cameraName.MatchString(camera) {
		writeError(w, r, http.StatusNotFound, "no such camera")
		return
	}
	jpg, at, err := s.frames.get(camera, time.Now(), func() ([]byte, time.Time, error) { return s.backend.LatestFrame(camera) })
	if err != nil {
		s.backendError(w, r, "frame", err)
		return
	}
	if !at.IsZero() {
		w.Header().Set("Last-Modified", at.UTC().Format(http.TimeFormat))
		w.Header().Set("X-Frame-Time", at.UTC().Format(time.RFC3339Nano))
	}
	writeJPEG(w, jpg, "no-store")
}

func (s *Server) apiThumbnail(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 || len(v) > 19 {
		writeError(w, r, http.StatusNotFound, "no such thumbnail")
		return
	}
	jpg, err := s.backend.Thumbnail(r.Context(), id)
	if err != nil {
		s.backendError(w, r, "thumbnail", err)
		return
	}
	// A thumbnail never changes, and its id is never given to another
	// (the catalog's AUTOINCREMENT, and a catalog made anew starts its
	// ids at the clock's microseconds); only retention removes it.
	writeStoredJPEG(w, r, jpg)
}

func (s *Server) apiSnapshot(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !snapshot.ValidName(name) {
		writeError(w, r, http.StatusNotFound, "no such snapshot")
		return
	}
	jpg, err := s.backend.Snapshot(name)
	if err != nil {
		s.backendError(w, r, "snapshot", err)
		return
	}
	writeStoredJPEG(w, r, jpg)
}
