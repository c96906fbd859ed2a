package daemon

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/mqtttest"
)

// httpSearch asks the daemon's /api/search and returns the status and
// the error text of the reply (empty for a 200).
func httpSearch(t *testing.T, base string, post string, query url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if post != "" {
		resp, err = http.Post(base+"/api/search", "application/json", strings.NewReader(post))
	} else {
		resp, err = http.Get(base + "/api/search?" + query.Encode())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%d reply is not an error object: %q", resp.StatusCode, body)
	}
	return resp.StatusCode, e.Error
}

// A search's mistakes reach an HTTP client as what they are, through the
// real daemon and listener: a label or camera the daemon does not know,
// or an image that is not a picture, is a 400 that says so, not a 500;
// with the camera memory off, a 503 that says it is off.
func TestSearchErrorsOverHTTP(t *testing.T) {
	port := mqtttest.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	h := newHarness(t, cameraTOML("front", "pattern", "a.labels", "")+
		fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n[history]\nenabled = true\nevery = \"0s\"\nthumbnail_every = \"0s\"\n", port),
		func(h *harness) {
			writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
			// One picture throughout: one state, so no state change
			// brings a thumbnail of its own.
			h.sources.scene = new(atomic.Int64)
		})
	c := h.dial()
	resultOf(t, c)
	for _, tc := range []struct {
		name  string
		post  string
		query url.Values
		code  int
		want  string
	}{
		{"unknown label", "", url.Values{"label": {"horse"}, "camera": {"front"}}, 400, `label "horse" is not one of front's labels`},
		{"unknown camera", "", url.Values{"label": {"dog"}, "camera": {"back"}}, 400, `no camera "back"`},
		{"unknown region", "", url.Values{"label": {"dog"}, "camera": {"front"}, "region": {"gate"}}, 400, `camera "front" has no region "gate"`},
		{"not a picture", fmt.Sprintf(`{"image_b64":%q}`, base64.StdEncoding.EncodeToString([]byte("this is no picture"))), nil, 400, "bad search: image: "},
		{"a label search", "", url.Values{"label": {"dog"}, "camera": {"front"}}, 200, ""},
	} {
		code, msg := httpSearch(t, base, tc.post, tc.query)
		if code != tc.code || !strings.Contains(msg, tc.want) || tc.want == "" && msg != "" {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, code, msg, tc.code, tc.want)
		}
	}
	// thumbnail_every = "0s" keeps a thumbnail with every stored record
	// (it once meant the 5 s default, one in the first 5 s here): at 200
	// frames a second, nearly as many thumbnails as records within the
	// first second or two.
	deadline := time.Now().Add(guard)
	for {
		st := status(t, c).History
		if st == nil {
			t.Fatal("status has no history")
		}
		if st.Records >= 100 {
			t.Logf("%d records, %d thumbnails", st.Records, st.Thumbnails)
			if st.Thumbnails < st.Records*9/10 {
				t.Fatalf("%d thumbnails for %d records with thumbnail_every = \"0s\"", st.Thumbnails, st.Records)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d records stored in %s", st.Records, guard)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.stop()

	port = mqtttest.FreePort(t)
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	off := newHarness(t, cameraTOML("front", "pattern", "a.labels", "")+fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port),
		func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n") })
	off.dial()
	if code, msg := httpSearch(t, base, "", url.Values{"q": {"a dog"}}); code != 503 || !strings.Contains(msg, "the camera memory is off") {
		t.Errorf("search with history off: %d %q, want 503 saying it is off", code, msg)
	}
	off.stop()
}
