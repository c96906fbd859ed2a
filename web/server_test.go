package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/jpegturbo"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/server"
)

const testToken = "s3cret-Token_0123456789abcdef"

// start runs a Server on a free loopback port, closed with the test.
func start(t *testing.T, cfg Config, b Backend) (*Server, string) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	m, err := metrics.New(metrics.Options{Snapshot: func() metrics.Snapshot { return metrics.Snapshot{Status: b.Status()} }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, b, Options{Metrics: m.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, port, _ := net.SplitHostPort(s.Addr().String())
	return s, "http://127.0.0.1:" + port
}

func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// client never follows redirects, so that tests see them.
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       2 * time.Minute,
}

type reply struct {
	code   int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, u string, body io.Reader, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, data}
}

func get(t *testing.T, u string, header ...string) reply {
	t.Helper()
	return do(t, "GET", u, nil, header...)
}

func (r reply) expect(t *testing.T, code int, contentType string) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d: %.300s", r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); contentType != "" && !strings.HasPrefix(ct, contentType) {
		t.Fatalf("content type %q, want %s", ct, contentType)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("no X-Content-Type-Options: nosniff")
	}
	return r
}

func TestHealthz(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	if r := get(t, base+"/healthz").expect(t, 200, "text/plain"); string(r.body) != "ok\n" {
		t.Errorf("healthy: %q", r.body)
	}
	b.setHealth(false, "camera drive: preprocessing stuck for 45s\nsecond line "+strings.Repeat("x", 1000))
	r := get(t, base+"/healthz").expect(t, 503, "text/plain")
	body := string(r.body)
	if !strings.HasPrefix(body, "unhealthy: camera drive: preprocessing stuck for 45s second line") || strings.Count(body, "\n") != 1 || len(body) > 400 {
		t.Errorf("unhealthy: %q, want the reason on one bounded line", body)
	}
	b.setHealth(true, "")
	get(t, base+"/healthz").expect(t, 200, "text/plain")
}

func TestMetricsRoute(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	r := get(t, base+"/metrics").expect(t, 200, "text/plain")
	for _, want := range []string{`clipd_build_info{backend="onnxruntime",version="v9.9.9-test"} 1`, `clipd_frames_captured_total{camera="drive"} 100`} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestPage(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	r := get(t, base+"/").expect(t, 200, "text/html")
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	page := string(r.body)
	for _, want := range []string{
		`data-camera="drive"`, `data-camera="yard"`, `src="/api/frame/drive"`,
		`viewBox="0 0 320 240"`, `<rect x="160" y="60" width="140" height="160">`, ">gate</text>",
		"a red circle", "a blue square", "a yellow square", "whole frame",
		"/static/app.js", "v9.9.9-test", "up 1h02m",
		// The camera's error is one line.
		"source restarted",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Every event is listed with its snapshot, and no path of the daemon.
	for _, ev := range b.events {
		name := filepath.Base(ev.Snapshot)
		if !strings.Contains(page, `src="/api/snapshot/`+name+`"`) {
			t.Errorf("event snapshot %s not on the page", name)
		}
		if strings.Contains(page, filepath.Dir(ev.Snapshot)) {
			t.Errorf("the page shows the snapshot directory %s", filepath.Dir(ev.Snapshot))
		}
	}
	for _, f := range []struct{ name, typ string }{{"app.js", "text/javascript"}, {"style.css", "text/css"}} {
		r := get(t, base+"/static/"+f.name).expect(t, 200, f.typ)
		if len(r.body) < 100 {
			t.Errorf("%s is %d bytes", f.name, len(r.body))
		}
	}
	get(t, base+"/static/nothing.js").expect(t, 404, "")
	get(t, base+"/nothing").expect(t, 404, "")
	if r := do(t, "POST", base+"/", nil); r.code != 405 {
		t.Errorf("POST /: %d, want 405", r.code)
	}
}

// TestPageEscapes: names and labels from the daemon are text on the page.
func TestPageEscapes(t *testing.T) {
	b := newTestBackend(t, false)
	b.cameras[0].Targets[0].State.Label = `<script>alert(1)</script>`
	b.events[0].Label = `"><img src=x onerror=alert(2)>`
	_, base := start(t, Config{}, b)
	page := string(get(t, base+"/").expect(t, 200, "text/html").body)
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img src=x") {
		t.Fatal("a label reached the page as markup")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the label is not shown as text")
	}
}

func TestCamerasAndEventsAPI(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	var cams []struct {
		Name      string  `json:"name"`
		Width     int     `json:"width"`
		Height    int     `json:"height"`
		FPS       float64 `json:"fps"`
		LastError string  `json:"last_error"`
		FrameURL  string  `json:"frame_url"`
		Targets   []struct {
			Region string  `json:"region"`
			Box    *[4]int `json:"box"`
			State  struct {
				Label string    `json:"label"`
				Since time.Time `json:"since"`
			} `json:"state"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(get(t, base+"/api/cameras").expect(t, 200, "application/json").body, &cams); err != nil {
		t.Fatal(err)
	}
	if len(cams) != 2 || cams[0].Name != "drive" || cams[0].Width != 320 || cams[0].FPS != 4.5 || len(cams[0].Targets) != 2 {
		t.Fatalf("cameras %+v", cams)
	}
	gate := cams[0].Targets[1]
	if gate.Region != "gate" || gate.Box == nil || *gate.Box != [4]int{160, 60, 300, 220} || gate.State.Label != "a blue square" ||
		!gate.State.Since.Equal(b.cameras[0].Targets[1].State.Since) {
		t.Errorf("gate %+v", gate)
	}
	if cams[0].Targets[0].Box != nil || cams[1].LastError != "source restarted" {
		t.Errorf("whole frame box %v, yard error %q", cams[0].Targets[0].Box, cams[1].LastError)
	}

	var events []map[string]any
	if err := json.Unmarshal(get(t, base+"/api/events?n=2").expect(t, 200, "application/json").body, &events); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("%d events, want 2", len(events))
	}
	for i, ev := range events {
		want := b.events[i]
		name := filepath.Base(want.Snapshot)
		if ev["camera"] != want.Camera || ev["label"] != want.Label || ev["snapshot"] != name || ev["snapshot_url"] != "/api/snapshot/"+name {
			t.Errorf("event %d: %v, want %+v", i, ev, want)
		}
		jpg := get(t, base+ev["snapshot_url"].(string)).expect(t, 200, "image/jpeg").body
		onDisk, _ := os.ReadFile(want.Snapshot)
		if !bytes.Equal(jpg, onDisk) {
			t.Errorf("snapshot %s: other bytes than the file", name)
		}
	}
	for _, bad := range []string{"0", "-1", "x", "201", strings.Repeat("9", 30)} {
		get(t, base+"/api/events?n="+bad).expect(t, 400, "application/json")
	}

	r := get(t, base+"/api/frame/drive").expect(t, 200, "image/jpeg")
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("frame Cache-Control %q", r.header.Get("Cache-Control"))
	}
	if h, err := jpegturbo.DecodeHeader(r.body); err != nil || h.Width != 320 || h.Height != 240 {
		t.Errorf("frame: %+v, %v", h, err)
	}
	get(t, base+"/api/frame/nosuch").expect(t, 404, "application/json")

	var st server.Status
	if err := json.Unmarshal(get(t, base+"/api/status").expect(t, 200, "application/json").body, &st); err != nil || st.Version != "v9.9.9-test" {
		t.Errorf("status %+v, %v", st, err)
	}
}

// TestAuthLoopback: without a token, only loopback Host names are
// served beyond /metrics and /healthz (DNS rebinding).
func TestAuthLoopback(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	for _, host := range []string{"127.0.0.1", "localhost:9464", "LOCALHOST", "[::1]:80", "127.1.2.3:1"} {
		get(t, base+"/api/cameras", "Host", host).expect(t, 200, "application/json")
	}
	for _, host := range []string{"evil.example", "evil.example:9464", "127.0.0.1.evil.example", "192.168.1.5:9464", "localhost.evil"} {
		get(t, base+"/api/cameras", "Host", host).expect(t, 421, "application/json")
		get(t, base+"/", "Host", host).expect(t, 421, "text/plain")
		get(t, base+"/metrics", "Host", host).expect(t, 200, "text/plain")
		get(t, base+"/healthz", "Host", host).expect(t, 200, "text/plain")
	}
	// No token configured: the login page leads to the page.
	if r := get(t, base+"/login"); r.code != 303 {
		t.Errorf("/login without a token: %d", r.code)
	}
}

func TestAuthToken(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{TokenFile: writeToken(t, testToken)}, b)

	// Public routes need nothing.
	get(t, base+"/metrics").expect(t, 200, "text/plain")
	get(t, base+"/healthz").expect(t, 200, "text/plain")
	get(t, base+"/static/style.css").expect(t, 200, "text/css")

	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken[:len(testToken)-1],
		"Bearer " + testToken + "x", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+testToken)), testToken} {
		for _, path := range []string{"/api/cameras", "/api/frame/drive", "/api/snapshot/x.jpg", "/api/search?q=x", "/api/status"} {
			r := get(t, base+path, "Authorization", auth).expect(t, 401, "application/json")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %q: no WWW-Authenticate", path, auth)
			}
			if bytes.Contains(r.body, []byte(testToken[:8])) {
				t.Errorf("%s: the reply holds the token", path)
			}
		}
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "Bearer  " + testToken + " "} {
		get(t, base+"/api/cameras", "Authorization", auth).expect(t, 200, "application/json")
	}
	// With a token, any Host is fine (the token is the proof).
	get(t, base+"/api/cameras", "Authorization", "Bearer "+testToken, "Host", "clipd.lan:9464").expect(t, 200, "application/json")
	// Only the refused requests asked for frames, snapshots or searches.
	for _, c := range b.recorded() {
		t.Errorf("an unauthorized request reached the backend: %s", c)
	}

	// A browser: / leads to the login form, whose cookie opens the page.
	r := get(t, base+"/")
	if r.code != 303 || r.header.Get("Location") != "/login" {
		t.Fatalf("GET / without a token: %d %q", r.code, r.header.Get("Location"))
	}
	get(t, base+"/login").expect(t, 200, "text/html")
	form := func(token string, header ...string) reply {
		return do(t, "POST", base+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()),
			append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
	}
	if r := form("wrong"); r.code != 401 || !bytes.Contains(r.body, []byte("not the token")) || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("a wrong login: %d %q", r.code, r.header.Values("Set-Cookie"))
	}
	if r := form(testToken, "Origin", "http://evil.example"); r.code != 403 {
		t.Errorf("a login posted from another site: %d", r.code)
	}
	r = form(testToken, "Origin", base)
	if r.code != 303 {
		t.Fatalf("login: %d %s", r.code, r.body)
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || strings.Contains(cookie.Value, testToken) {
		t.Fatalf("session cookie %+v", cookie)
	}
	get(t, base+"/", "Cookie", cookie.String()).expect(t, 200, "text/html")
	get(t, base+"/api/frame/drive", "Cookie", cookie.String()).expect(t, 200, "image/jpeg")
	get(t, base+"/api/cameras", "Cookie", sessionCookie+"="+strings.Repeat("0", len(cookie.Value))).expect(t, 401, "application/json")

	// A huge form is refused, not read.
	if r := form(strings.Repeat("a", 10<<10)); r.code != 400 {
		t.Errorf("a 10 KiB login form: %d", r.code)
	}
}

// TestNonLoopbackListen: beyond loopback the token is required by the
// config, and enforced even for requests that arrive over loopback.
func TestNonLoopbackListen(t *testing.T) {
	cfg := Defaults()
	cfg.Listen = "0.0.0.0:0"
	var ke *KeyError
	if err := cfg.Validate(); !errors.As(err, &ke) || ke.Key != "token_file" || !strings.Contains(err.Error(), "http.token_file: required") {
		t.Fatalf("non-loopback listen without a token: %v", err)
	}
	b := newTestBackend(t, false)
	if _, err := New(cfg, b, Options{}); err == nil {
		t.Fatal("New accepted a non-loopback listen without a token")
	}
	cfg.TokenFile = writeToken(t, testToken)
	_, base := start(t, cfg, b)
	get(t, base+"/api/cameras").expect(t, 401, "application/json")
	get(t, base+"/api/cameras", "Authorization", "Bearer "+testToken).expect(t, 200, "application/json")
	get(t, base+"/metrics").expect(t, 200, "text/plain")
}

// TestHostileRequests: names are checked before the backend sees them,
// queries and bodies are bounded, errors are short and hold no paths.
func TestHostileRequests(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{}, b)
	notFound := []string{
		"/api/snapshot/..%2F..%2Fetc%2Fpasswd", "/api/snapshot/%2e%2e", "/api/snapshot/.tmp-drive-20250304T050607.890Z-1.jpg",
		"/api/snapshot/" + strings.Repeat("a", 300) + ".jpg", "/api/snapshot/drive-20250304T050607.890Z-1.jpg%00",
		"/api/snapshot/drive-20990101T000000.000Z-1.jpg", // well-formed, absent
		"/api/thumbnail/0", "/api/thumbnail/-1", "/api/thumbnail/abc", "/api/thumbnail/1e3", "/api/thumbnail/99999999999999999999",
		"/api/thumbnail/" + strings.Repeat("0", 40) + "1",
		"/api/frame/..", "/api/frame/DRIVE", "/api/frame/" + strings.Repeat("a", 65), "/api/frame/a%2Fb",
		"/api/frame/%00", "/api/../etc/passwd", "/static/../server.go", "/static/%2e%2e%2fserver.go",
	}
	for _, p := range notFound {
		r := get(t, base+p)
		if r.code != 404 && !(r.code == 301 || r.code == 307) {
			t.Errorf("%s: %d, want 404", p, r.code)
		}
		if bytes.Contains(r.body, []byte("root:")) || bytes.Contains(r.body, []byte("package web")) {
			t.Errorf("%s: served a file", p)
		}
	}
	for _, c := range b.recorded() {
		if c != "snapshot drive-20990101T000000.000Z-1.jpg" {
			t.Errorf("a bad name reached the backend: %s", c)
		}
	}

	badSearches := map[string]string{
		"/api/search": "give one of",
		"/api/search?q=" + strings.Repeat("a", 5000): "text is longer",
		"/api/search?q=a&since=yesterday":            "since:",
		"/api/search?q=a&k=abc":                      "k is not a number",
		"/api/search?q=a&k=100000":                   "k must be",
		"/api/search?q=a&frames=maybe":               "frames must be",
		"/api/search?q=a&min_score=NaN":              "min_score",
		"/api/search?q=a&label=b&camera=drive":       "only one of",
		"/api/search?image=/etc/passwd":              "images go in a POST",
		"/api/search?q=a&cameras=a/b/c":              "cameras:",
		"/api/search?q=%ff":                          "not UTF-8",
	}
	for p, want := range badSearches {
		r := get(t, base+p).expect(t, 400, "application/json")
		var e struct{ Error string }
		if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, want) || len(e.Error) > 310 {
			t.Errorf("%.60s: %q, want a short error saying %q", p, e.Error, want)
		}
	}
	post := func(body io.Reader, ct string) reply {
		return do(t, "POST", base+"/api/search", body, "Content-Type", ct)
	}
	if r := post(strings.NewReader(`{"text":"a"}`), "text/plain"); r.code != 415 {
		t.Errorf("text/plain body: %d", r.code)
	}
	if r := post(io.LimitReader(zeros{}, 9<<20), "application/json"); r.code != 413 && r.code != 400 {
		t.Errorf("a 9 MiB body: %d", r.code)
	}
	for body, want := range map[string]string{
		`{"text":"a","secret":"x"}`:          `unknown field`,
		`{"text":"a"} {"text":"b"}`:          "more than one JSON value",
		`{"text":`:                           "ends early",
		`{"text":5}`:                         "wrong type",
		`not json <script>alert(1)</script>`: "invalid JSON",
		`{"image":"/etc/passwd"}`:            "image paths are for the socket",
	} {
		r := post(strings.NewReader(body), "application/json; charset=utf-8")
		if r.code != 400 || !bytes.Contains(r.body, []byte(want)) || bytes.Contains(r.body, []byte("<script>")) {
			t.Errorf("body %.40q: %d %s, want 400 saying %s", body, r.code, r.body, want)
		}
	}
	// Huge headers are refused by the server itself.
	r := get(t, base+"/api/cameras", "X-Junk", strings.Repeat("a", 64<<10))
	if r.code != 431 {
		t.Errorf("64 KiB header: %d, want 431", r.code)
	}
	// History off: a search says so.
	r = get(t, base+"/api/search?q=a").expect(t, 503, "application/json")
	if !bytes.Contains(r.body, []byte("history is off")) {
		t.Errorf("history off: %s", r.body)
	}
	// An internal error tells nothing of the daemon.
	b.thumbnailErr = errors.New("open /var/lib/clipd/history/secret.db: permission denied")
	r = get(t, base+"/api/thumbnail/5").expect(t, 500, "application/json")
	if bytes.Contains(r.body, []byte("/var/lib")) || !bytes.Contains(r.body, []byte("internal error")) {
		t.Errorf("internal error reply: %s", r.body)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// searchResult fetches and decodes /api/search.
func searchResult(t *testing.T, base, query string) *history.Result {
	t.Helper()
	var res history.Result
	if err := json.Unmarshal(get(t, base+"/api/search?"+query).expect(t, 200, "application/json").body, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func TestSearchAPI(t *testing.T) {
	b := newTestBackend(t, true)
	_, base := start(t, Config{}, b)

	res := searchResult(t, base, url.Values{"q": {"a red shape"}, "since": {"24h"}, "frames": {"true"}}.Encode())
	if res.Score != "cosine" || res.Scanned != 48 || len(res.Episodes) != len(testRuns) {
		t.Fatalf("result: score %q, scanned %d, %d episodes; want cosine, 48, %d", res.Score, res.Scanned, len(res.Episodes), len(testRuns))
	}
	best := res.Episodes[0]
	if r, err := runOf(best.Camera, best.BestSeq); err != nil || r.color != "red" {
		t.Errorf("best episode for red: %s seq %d (%v, %s)", best.Camera, best.BestSeq, err, r.color)
	}
	if len(best.Frames) != best.Matched || best.Matched != 12 || best.Thumbnail == nil {
		t.Fatalf("best episode: %d frames of %d, thumbnail %v", len(best.Frames), best.Matched, best.Thumbnail)
	}
	thumb := get(t, fmt.Sprintf("%s/api/thumbnail/%d", base, best.Thumbnail.ID)).expect(t, 200, "image/jpeg")
	jpg := thumb.body
	// Cached by id, with an ETag of the bytes for a browser asking again.
	etag := thumb.header.Get("ETag")
	if len(etag) != 34 || !strings.Contains(thumb.header.Get("Cache-Control"), "max-age=86400") {
		t.Errorf("thumbnail ETag %q, Cache-Control %q", etag, thumb.header.Get("Cache-Control"))
	}
	if r := get(t, fmt.Sprintf("%s/api/thumbnail/%d", base, best.Thumbnail.ID), "If-None-Match", etag); r.code != 304 || len(r.body) != 0 {
		t.Errorf("thumbnail with its ETag: %d, %d bytes; want 304 and none", r.code, len(r.body))
	}
	if r := get(t, fmt.Sprintf("%s/api/thumbnail/%d", base, best.Thumbnail.ID), "If-None-Match", `"0123"`); r.code != 200 || !bytes.Equal(r.body, jpg) {
		t.Errorf("thumbnail with another ETag: %d", r.code)
	}
	if h, err := jpegturbo.DecodeHeader(jpg); err != nil || h.Width != 224 {
		t.Errorf("thumbnail: %+v, %v", h, err)
	}
	get(t, base+"/api/thumbnail/999999").expect(t, 404, "application/json")

	// The camera filter, and the same search as the socket would send.
	res = searchResult(t, base, "q=a+red+shape&camera=yard")
	if len(res.Episodes) != 1 || res.Episodes[0].Camera != "yard" {
		t.Errorf("camera=yard: %+v", res.Episodes)
	}
	res = searchResult(t, base, "q=a+blue+shape&cameras=drive/&k=1")
	if len(res.Episodes) != 1 {
		t.Fatalf("k=1: %d episodes", len(res.Episodes))
	}
	if r, _ := runOf(res.Episodes[0].Camera, res.Episodes[0].BestSeq); r.color != "blue" {
		t.Errorf("blue search found %s", r.color)
	}

	// An image query over POST: a green scene finds the green run.
	green, err := jpegturbo.Encode(jpegturbo.Image{Width: 224, Height: 224, Channels: 3, Pix: scene("green", 4242, 224, 224)}, 90, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(server.SearchRequest{ImageB64: base64.StdEncoding.EncodeToString(green), K: 1})
	r := do(t, "POST", base+"/api/search", bytes.NewReader(body), "Content-Type", "application/json").expect(t, 200, "application/json")
	var img history.Result
	if err := json.Unmarshal(r.body, &img); err != nil || len(img.Episodes) != 1 {
		t.Fatalf("image search: %v, %s", err, r.body)
	}
	if r, _ := runOf(img.Episodes[0].Camera, img.Episodes[0].BestSeq); r.color != "green" {
		t.Errorf("a green picture found the %s run", r.color)
	}

	// The page renders the same search.
	page := string(get(t, base+"/?q=a+red+shape&since=24h").expect(t, 200, "text/html").body)
	if n := strings.Count(page, `<details class="episode">`); n != len(testRuns) {
		t.Errorf("page shows %d episodes, want %d", n, len(testRuns))
	}
	if !strings.Contains(page, fmt.Sprintf(`src="/api/thumbnail/%d"`, best.Thumbnail.ID)) {
		t.Error("the page lacks the best episode's picture")
	}
	page = string(get(t, base+"/?q=a&since=nonsense").expect(t, 200, "text/html").body)
	if !strings.Contains(page, `class="error"`) || !strings.Contains(page, "since:") {
		t.Error("a bad search does not explain itself on the page")
	}
	// A text over the bound is refused, and the page repeats no more of
	// it than a search may hold (it would be twice the URL otherwise).
	// (Two-byte characters, cut at a character boundary; 2300 of them
	// fit the listener's 16 KiB of headers escaped.)
	long := strings.Repeat("ж", 2300)
	r = get(t, base+"/?"+url.Values{"q": {long}}.Encode()).expect(t, 200, "text/html")
	page = string(r.body)
	if !strings.Contains(page, "text is longer than 4096 bytes") {
		t.Error("the page does not say the text is too long")
	}
	if n := strings.Count(page, "ж"); n != 2*server.MaxSearchTextBytes/2 {
		t.Errorf("the page repeats %d characters of the text's 2300, want twice %d", n, server.MaxSearchTextBytes/2)
	}
	// The daemon's explanation is one bounded line on the page too.
	b.searchErr = fmt.Errorf("%w: label %s\nis not known", server.ErrBadSearch, strings.Repeat("x", 5000))
	page = string(get(t, base+"/?q=a").expect(t, 200, "text/html").body)
	i := strings.Index(page, `<p class="error">`)
	if i < 0 {
		t.Fatal("no error on the page")
	}
	if end := strings.Index(page[i:], "</p>"); end < 0 || end > 400 || strings.Contains(page[i:i+end], "\n") {
		t.Errorf("the page's error is not one short line: %.500q", page[i:])
	}
	b.searchErr = nil
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Listen: ln.Addr().String()}, newTestBackend(t, false), Options{})
	if err == nil || !strings.Contains(err.Error(), "http.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a taken port: %v", err)
	}
}

// TestCloseWaits: Close cancels a request in flight and returns only once
// it has returned; nothing of the server is left running.
func TestCloseWaits(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	b := newTestBackend(t, false)
	entered := make(chan struct{})
	var returned atomic.Bool
	b.searchHook = func(ctx context.Context) {
		close(entered)
		<-ctx.Done()
		returned.Store(true)
	}
	s, err := New(Config{Listen: "127.0.0.1:0"}, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + s.Addr().String() + "/api/search?q=x"
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(u)
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-entered
	s.Close()
	if !returned.Load() {
		t.Fatal("Close returned while a request was still in the backend")
	}
	if code := <-got; code != 503 && code != -1 {
		t.Errorf("the cancelled request got %d", code)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Close")
	}
	http.DefaultClient.CloseIdleConnections()
	client.CloseIdleConnections()
}

func TestFrameCache(t *testing.T) {
	var c frameCache
	c.entries = map[string]cachedFrame{}
	calls := 0
	load := func() ([]byte, time.Time, error) { calls++; return []byte{byte(calls)}, time.Time{}, nil }
	t0 := time.Now()
	c.get("a", t0, load)
	c.get("a", t0.Add(frameCacheFor/2), load)
	if calls != 1 {
		t.Errorf("%d loads within the cache time, want 1", calls)
	}
	jpg, _, _ := c.get("a", t0.Add(frameCacheFor), load)
	if calls != 2 || jpg[0] != 2 {
		t.Errorf("after the cache time: %d loads, frame %d", calls, jpg[0])
	}
	failing := func() ([]byte, time.Time, error) { return nil, time.Time{}, ErrNotFound }
	if _, _, err := c.get("b", t0, failing); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed load: %v", err)
	}
	if _, ok := c.entries["b"]; ok {
		t.Error("a failed load was cached")
	}
	c.get("c", t0.Add(2*time.Minute), load)
	if _, ok := c.entries["a"]; ok {
		t.Error("an entry unused for two minutes stayed")
	}
}
