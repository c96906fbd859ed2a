package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/internal/quote"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
)

// assets are the page's template, script and style: no build step, all
// in the binary.
//
//go:embed assets
var assets embed.FS

// contentSecurityPolicy allows the page its own script, style and images
// (and the blob: URLs the script makes of fresh frames), nothing else.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type pageRenderer struct {
	index, login *template.Template
	static       map[string]staticFile
}

type staticFile struct {
	body []byte
	typ  string
}

var funcs = template.FuncMap{
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	},
	"score": func(v float32) string { return strconv.FormatFloat(float64(v), 'f', 3, 32) },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return roundAgo(time.Since(t))
	},
	"span":  func(a, b time.Time) string { return roundAgo(b.Sub(a)) },
	"state": stateLabel,
	"targetName": func(region string) string {
		if region == "" {
			return "whole frame"
		}
		return region
	},
}

func roundAgo(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func newPageRenderer() (*pageRenderer, error) {
	p := &pageRenderer{static: map[string]staticFile{}}
	var err error
	if p.index, err = template.New("index.html").Funcs(funcs).ParseFS(assets, "assets/index.html"); err != nil {
		return nil, fmt.Errorf("web: page template: %w", err)
	}
	if p.login, err = template.New("login.html").Funcs(funcs).ParseFS(assets, "assets/login.html"); err != nil {
		return nil, fmt.Errorf("web: login template: %w", err)
	}
	for name, typ := range map[string]string{
		"app.js":    "text/javascript; charset=utf-8",
		"style.css": "text/css; charset=utf-8",
	} {
		body, err := fs.ReadFile(assets, path.Join("assets", name))
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		p.static[name] = staticFile{body, typ}
	}
	return p, nil
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	f, ok := s.page.static[r.PathValue("file")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "not found")
		return
	}
	w.Header().Set("Content-Type", f.typ)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(f.body)
}

// render executes a template into a buffer first, so that a failure is a
// clean 500 and not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		s.log.Warn("http page failed", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal error (see clipd's log)")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// pageData is what the page template shows.
type pageData struct {
	Status  server.Status
	Uptime  string
	Cameras []cameraView
	Events  []eventJSON
	// Targets are the choices of the search's camera filter.
	Targets []string
	Form    searchForm
	Search  *searchView
	// SearchError explains a search that could not run.
	SearchError string
}

type searchForm struct {
	Q, Since, Camera string
}

type cameraView struct {
	cameraJSON
	Regions []regionView
	// FontSize is the regions' name size in frame pixels, so that it
	// looks the same on every camera.
	FontSize int
}

type regionView struct {
	Name           string
	X, Y, W, H     int
	LabelX, LabelY int
}

type searchView struct {
	Result   *history.Result
	Episodes []episodeView
}

type episodeView struct {
	history.Episode
	Target   string
	ThumbURL string
}

// Since choices of the page's search form.
var sinceChoices = []struct{ Value, Text string }{
	{"1h", "last hour"}, {"6h", "last 6 hours"}, {"24h", "last day"}, {"7d", "last week"}, {"", "all"},
}

func (d pageData) SinceChoices() []struct{ Value, Text string } { return sinceChoices }

// stateLabel shows a state: "" (before the first) is "unknown".
func stateLabel(c state.Current) string {
	if c.Label == "" {
		return "unknown"
	}
	return c.Label
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	st := s.backend.Status()
	d := pageData{
		Status: st,
		Uptime: roundAgo(time.Duration(st.UptimeS * float64(time.Second))),
		Events: s.events(s.cfg.Events),
	}
	for _, c := range s.cameras() {
		cv := cameraView{cameraJSON: c, FontSize: max(12, c.Height/16)}
		d.Targets = append(d.Targets, c.Name)
		for _, t := range c.Targets {
			if t.Box == nil {
				continue
			}
			b := t.Box
			cv.Regions = append(cv.Regions, regionView{
				Name: t.Region, X: b[0], Y: b[1], W: b[2] - b[0], H: b[3] - b[1],
				LabelX: b[0] + cv.FontSize/4, LabelY: b[1] + cv.FontSize*5/4,
			})
			d.Targets = append(d.Targets, c.Name+"/"+t.Region)
		}
		d.Cameras = append(d.Cameras, cv)
	}
	q := r.URL.Query()
	d.Form = searchForm{Q: q.Get("q"), Since: q.Get("since"), Camera: q.Get("camera")}
	if _, given := q["since"]; !given {
		d.Form.Since = "24h"
	}
	if d.Form.Q != "" {
		req := server.SearchRequest{Text: d.Form.Q, Since: d.Form.Since, Frames: true}
		if d.Form.Camera != "" {
			req.Cameras = []string{d.Form.Camera}
		}
		// The page repeats the text (in the box, in the heading): never
		// more of it than a search may hold, however long the URL was.
		d.Form.Q = quote.Truncate(d.Form.Q, server.MaxSearchTextBytes)
		res, err := s.search(r.Context(), req)
		switch {
		case err == nil:
			sv := &searchView{Result: res}
			for _, ep := range res.Episodes {
				ev := episodeView{Episode: ep, Target: ep.Target.String()}
				if ep.Thumbnail != nil {
					ev.ThumbURL = "/api/thumbnail/" + strconv.FormatInt(ep.Thumbnail.ID, 10)
				}
				sv.Episodes = append(sv.Episodes, ev)
			}
			d.Search = sv
		default:
			_, msg := s.errorStatus(r, "search", err)
			d.SearchError = clip(msg)
		}
	}
	s.render(w, r, http.StatusOK, s.page.index, d)
}

type loginData struct{ Failed bool }

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if len(s.auth.token) == 0 {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, s.page.login, loginData{})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if len(s.auth.token) == 0 {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	// A form posted from another site is refused: the browser names it.
	if o := r.Header.Get("Origin"); o != "" && o != "null" && o != "http://"+r.Host && o != "https://"+r.Host {
		writeError(w, r, http.StatusForbidden, "cross-origin login refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad login form")
		return
	}
	if !s.auth.loginAllowed(r.PostForm.Get("token")) {
		s.render(w, r, http.StatusUnauthorized, s.page.login, loginData{Failed: true})
		return
	}
	s.auth.setSession(w)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
