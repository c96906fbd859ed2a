// Package web is clipd's [http] listener: Prometheus metrics (/metrics),
// a health check (/healthz), a page that shows every camera live with its
// regions, states, recent events and a search of the camera memory (/),
// and the JSON and image endpoints behind it (/api/). docs/http.md
// describes the routes and the rules below.
//
// Every request is treated as hostile. Beyond /metrics, /healthz and the
// page's static files, a request needs the bearer token of token_file
// (compared in constant time; a browser logs in once and keeps a cookie
// derived from it) whenever one is configured, and one must be beyond
// loopback. Without a token, only requests naming a loopback host are
// served, so that a web page in the operator's browser cannot reach the
// listener through DNS rebinding. Names in paths are checked before they
// reach the backend (camera names, snapshot names, numeric thumbnail
// ids), queries and bodies are bounded, and errors that are not the
// client's say only "internal error" (the details go to the log).
//
// A Server is a component of clipd's one shape: New listens (and fails if
// it cannot), one goroutine serves, Close stops it and waits for every
// request in flight.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clipd/clipd/internal/lifecycle"
)

// Options are the parts of a Server that do not come from [http].
type Options struct {
	// Metrics serves GET /metrics (metrics.Metrics.Handler); nil leaves
	// the route out.
	Metrics http.Handler
	// Log receives request failures; nil discards them.
	Log *slog.Logger
}

// Limits on what one request may cost.
const (
	maxHeaderBytes   = 16 << 10
	maxSearchBody    = 8<<20 + 64<<10
	maxLoginBody     = 4 << 10
	searchTimeout    = 30 * time.Second
	maxSearches      = 2
	searchQueueWait  = 10 * time.Second
	frameCacheFor    = 200 * time.Millisecond
	shutdownGrace    = 2 * time.Second
	maxErrorTextSize = 300
)

var errNoBackend = errors.New("web: no backend")

// Server is the running listener.
type Server struct {
	cfg     Config
	backend Backend
	opts    Options
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	loop    *lifecycle.Loop
	auth    *authenticator
	page    *pageRenderer

	searches chan struct{}
	frames   frameCache

	mu       sync.Mutex
	inflight int
	closing  bool
	idle     chan struct{}
}

// New validates cfg, reads the token, listens on cfg.Listen and starts
// serving.
func New(cfg Config, b Backend, opts Options) (*Server, error) {
	if b == nil {
		return nil, errNoBackend
	}
	if cfg.Events == 0 {
		cfg.Events = DefaultEvents
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, backend: b, opts: opts, log: log,
		searches: make(chan struct{}, maxSearches),
		idle:     make(chan struct{}),
	}
	s.frames.entries = map[string]cachedFrame{}
	var err error
	if s.auth, err = newAuthenticator(cfg); err != nil {
		return nil, err
	}
	if s.page, err = newPageRenderer(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		// net's error already names the address and the cause
		// ("listen tcp 127.0.0.1:9464: bind: address already in use").
		return nil, &KeyError{Key: "listen", Msg: err.Error()}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.loop = lifecycle.Go(s.run)
	return s, nil
}

// Addr is the address listened on (with the port chosen when Listen's
// port is 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening and cancels the contexts of the requests in
// flight at once (they are the serving loop's), so that a search ends
// early; it gives their replies shutdownGrace to go out, then closes the
// connections left, and waits until every handler has returned.
func (s *Server) Close() error {
	s.loop.Close()
	return nil
}

func (s *Server) run(ctx context.Context) {
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	// Serve blocks; it runs beside this loop, which owns its end.
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	returned := false
	select {
	case err := <-served:
		returned = true
		if !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "err", err)
		}
		<-ctx.Done()
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if err := s.srv.Shutdown(grace); err != nil {
		s.srv.Close()
	}
	cancel()
	if !returned {
		<-served
	}
	s.waitIdle()
}

// enter counts a request in; false once Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.inflight++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.inflight == 0 && s.closing {
		close(s.idle)
	}
}

func (s *Server) waitIdle() {
	s.mu.Lock()
	s.closing = true
	n := s.inflight
	s.mu.Unlock()
	if n > 0 {
		<-s.idle
	}
}

// routes is the whole URL space; anything else is a 404.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /static/{file}", s.static)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)

	private := http.NewServeMux()
	private.HandleFunc("GET /{$}", s.index)
	private.HandleFunc("GET /api/status", s.apiStatus)
	private.HandleFunc("GET /api/cameras", s.apiCameras)
	private.HandleFunc("GET /api/events", s.apiEvents)
	private.HandleFunc("GET /api/search", s.apiSearch)
	private.HandleFunc("POST /api/search", s.apiSearch)
	private.HandleFunc("GET /api/frame/{camera}", s.apiFrame)
	private.HandleFunc("GET /api/thumbnail/{id}", s.apiThumbnail)
	private.HandleFunc("GET /api/snapshot/{name}", s.apiSnapshot)
	mux.Handle("/", s.auth.require(private))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.enter() {
			w.Header().Set("Connection", "close")
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer s.leave()
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ok, reason := s.backend.Health()
	if ok {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "unhealthy: "+clip(reason))
}

// clip bounds a text sent back and keeps it to one printable line.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxErrorTextSize {
		cut := maxErrorTextSize
		for cut > 0 && s[cut]&0xc0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
