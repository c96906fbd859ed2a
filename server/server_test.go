package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/engine"
)

// guard bounds waits that only a bug would exceed; it is not a speed check.
const guard = 10 * time.Second

// sockDir is short because socket paths are limited to 107 bytes and
// t.TempDir() paths can exceed that.
func sockDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testHandler struct {
	mu       sync.Mutex
	requests []ClassifyRequest
	// block makes Classify wait for its context, to test Close; hold,
	// when set, makes it wait until hold is closed. Both close started.
	block   bool
	hold    chan struct{}
	started chan struct{}
}

func (h *testHandler) Status() any { return map[string]any{"cameras": 2, "ok": true} }

func (h *testHandler) Search(_ context.Context, req SearchRequest) (any, error) {
	return map[string]any{"text": req.Text, "bytes": len(req.ImageData), "label": req.Label}, nil
}

func (h *testHandler) Snapshot(_ context.Context, target string) (any, error) {
	if target != "front" {
		return nil, errors.New("no camera " + Quote(target))
	}
	return SnapshotReply{Camera: "front", Seq: 7, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}, nil
}

func (h *testHandler) Classify(ctx context.Context, req ClassifyRequest) (any, error) {
	h.mu.Lock()
	h.requests = append(h.requests, req)
	h.mu.Unlock()
	if h.block {
		close(h.started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if h.hold != nil {
		close(h.started)
		<-h.hold
	}
	if string(req.ImageData) == "fail" {
		return nil, errors.New("cannot decode image")
	}
	return map[string]any{"bytes": len(req.ImageData), "path": req.ImagePath, "labels": req.Labels, "top_k": req.TopK}, nil
}

// count is how many requests reached Classify.
func (h *testHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.requests)
}

func startServer(t testing.TB, conf Config) *Server {
	t.Helper()
	if conf.Path == "" && conf.Listener == nil {
		conf.Path = filepath.Join(sockDir(t), "c.sock")
	}
	if conf.Hello == nil {
		conf.Hello = func() Hello {
			return Hello{Version: "test", Model: "tiny", Backend: "onnxruntime", Cameras: []string{"front", "back"}}
		}
	}
	s, err := New(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, s *Server) *Client {
	t.Helper()
	c, err := Dial(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next reads with a deadline so that a missing message fails the test
// instead of hanging it.
func next(t testing.TB, c *Client) Message {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(guard))
	m, err := c.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return m
}

func result(camera string, seq uint64) *Result {
	return &Result{Camera: camera, Seq: seq, Time: time.Unix(1700000000, 123456789).UTC(), LabelsVersion: 3,
		Top: []engine.Match{{Label: "dog", Score: 0.9}, {Label: "cat", Score: 0.1}}, LatencyMS: map[string]float64{"total": 12.5}}
}

func TestHelloAndResultWireFormat(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s)
	want := Hello{Version: "test", Model: "tiny", Backend: "onnxruntime", Cameras: []string{"front", "back"}}
	if !reflect.DeepEqual(c.Hello(), want) {
		t.Errorf("hello = %+v", c.Hello())
	}
	if err := s.Publish(result("front", 7)); err != nil {
		t.Fatal(err)
	}
	m := next(t, c)
	wantLine := `{"type":"result","camera":"front","seq":7,"time":"2023-11-14T22:13:20.123456789Z","labels_version":3,"top":[{"label":"dog","score":0.9},{"label":"cat","score":0.1}],"latency_ms":{"total":12.5}}`
	if string(m.Raw) != wantLine {
		t.Errorf("line =\n%s\nwant\n%s", m.Raw, wantLine)
	}
	var r Result
	if err := m.Decode(&r); err != nil || r.Seq != 7 || r.Top[0].Label != "dog" {
		t.Errorf("Decode: %+v, %v", r, err)
	}
}

func TestFanOutToManyClients(t *testing.T) {
	s := startServer(t, Config{})
	clients := make([]*Client, 8)
	for i := range clients {
		clients[i] = dial(t, s)
	}
	for seq := uint64(1); seq <= 100; seq++ {
		s.Publish(result("front", seq))
	}
	for i, c := range clients {
		for seq := uint64(1); seq <= 100; seq++ {
			m := next(t, c)
			var r Result
			m.Decode(&r)
			if m.Type != "result" || r.Seq != seq {
				t.Fatalf("client %d: got %s, want result %d", i, m.Raw, seq)
			}
		}
	}
}

func TestSubscribeFilter(t *testing.T) {
	s := startServer(t, Config{})
	frontOnly, all := dial(t, s), dial(t, s)
	if err := frontOnly.Subscribe([]string{"front"}); err != nil {
		t.Fatal(err)
	}
	s.Publish(result("back", 1))
	s.Publish(result("front", 2))
	s.Publish(&ErrorReport{File: "/etc/clipd/home.labels", Line: 4, Message: "duplicate label"})
	s.Publish(&LabelsUpdate{Camera: "back", Version: 2, Labels: []string{"dog"}})
	s.Publish(result("front", 3))

	var got []string
	for range 3 {
		m := next(t, frontOnly)
		got = append(got, m.Type+":"+m.Camera)
	}
	if want := []string{"result:front", "error:", "result:front"}; !reflect.DeepEqual(got, want) {
		t.Errorf("front-only client got %q, want %q", got, want)
	}
	got = nil
	for range 5 {
		m := next(t, all)
		got = append(got, m.Type+":"+m.Camera)
	}
	if want := []string{"result:back", "result:front", "error:", "labels:back", "result:front"}; !reflect.DeepEqual(got, want) {
		t.Errorf("unfiltered client got %q, want %q", got, want)
	}
	// An empty subscription means all cameras again.
	if err := frontOnly.Subscribe(nil); err != nil {
		t.Fatal(err)
	}
	s.Publish(result("back", 4))
	if m := next(t, frontOnly); m.Camera != "back" {
		t.Errorf("after resubscribing to all: %s", m.Raw)
	}
}

// A camera's state change is a "camera" line, for that camera's
// subscribers, and is not dropped for a slow client like results are.
func TestCameraStateMessage(t *testing.T) {
	s := startServer(t, Config{ClientQueue: 4})
	front, back := dial(t, s), dial(t, s)
	if err := back.Subscribe([]string{"back"}); err != nil {
		t.Fatal(err)
	}
	s.Publish(&CameraState{Camera: "front", State: CameraRetrying, Error: "open /dev/video9: no such file or directory"})
	for seq := uint64(1); seq <= 20; seq++ {
		s.Publish(result("front", seq))
	}
	s.Publish(&CameraState{Camera: "back", State: CameraRunning})
	var lines []string
	for {
		m := next(t, front)
		if m.Type == "camera" {
			lines = append(lines, string(m.Raw))
			if m.Camera == "back" {
				break
			}
		}
	}
	want := []string{
		`{"type":"camera","camera":"front","state":"retrying","error":"open /dev/video9: no such file or directory"}`,
		`{"type":"camera","camera":"back","state":"running"}`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("camera lines\n%q\nwant\n%q", lines, want)
	}
	if m := next(t, back); string(m.Raw) != want[1] {
		t.Errorf("the back-only client got %s first", m.Raw)
	}
}

// A client that never reads must lose its oldest results, be told how many,
// and neither slow Publish nor starve a client that keeps up.
func TestSlowClientDropsOldestFastClientGetsAll(t *testing.T) {
	const queue, total, batch = 64, 20000, 50
	s := startServer(t, Config{ClientQueue: queue})
	slow := dial(t, s)
	fast := dial(t, s)

	// fastErr receives the fast reader's outcome: an error, or nil once it
	// has read every result. progress reports the last seq it has read.
	fastErr := make(chan error, 1)
	progress := make(chan uint64, total)
	go func() {
		for want := uint64(1); want <= total; want++ {
			fast.nc.SetReadDeadline(time.Now().Add(guard))
			m, err := fast.Next()
			if err != nil {
				fastErr <- err
				return
			}
			var r Result
			m.Decode(&r)
			if m.Type != "result" || r.Seq != want {
				fastErr <- fmt.Errorf("fast client got %s, want result %d", m.Raw, want)
				return
			}
			progress <- want
		}
		fastErr <- nil
	}()

	// Pad results so that the slow client's socket buffer fills quickly.
	pad := strings.Repeat("x", 200)
	for seq := uint64(1); seq <= total; seq++ {
		r := result("front", seq)
		r.Top[1].Label = pad
		s.Publish(r)
		// Pace the publisher to the fast reader only: its queue never
		// overflows, while the slow one's must.
		if seq%batch == 0 {
			for got := uint64(0); got < seq; {
				select {
				case got = <-progress:
				case err := <-fastErr:
					if err != nil {
						t.Fatalf("fast client stopped: %v", err)
					}
					fastErr <- nil // finished; let the final wait see it
					got = seq
				}
			}
		}
	}
	if err := <-fastErr; err != nil {
		t.Fatal(err)
	}
	s.Publish(&LabelsUpdate{Version: 9, Labels: []string{"end"}})

	var info ClientInfo
	for _, ci := range s.Clients() {
		if ci.Dropped > 0 {
			info = ci
		}
	}
	if info.Dropped == 0 || info.Queued > queue {
		t.Fatalf("client stats %+v: want drops and at most %d queued", s.Clients(), queue)
	}

	// Now the slow client reads: results in increasing order with gaps, and
	// dropped notices that account for every missing one.
	var results, dropped, last uint64
	for {
		m := next(t, slow)
		switch m.Type {
		case "result":
			var r Result
			m.Decode(&r)
			if r.Seq <= last {
				t.Fatalf("result %d after %d", r.Seq, last)
			}
			last = r.Seq
			results++
		case "dropped":
			if m.Count == 0 {
				t.Errorf("dropped notice with count 0: %s", m.Raw)
			}
			dropped += m.Count
		case "labels":
			if results+dropped != total {
				t.Errorf("slow client: %d results + %d dropped = %d, want %d", results, dropped, results+dropped, total)
			}
			if dropped == 0 || last != total {
				t.Errorf("slow client: dropped %d, last seq %d; want drops and the newest result %d kept", dropped, last, total)
			}
			return
		default:
			t.Fatalf("unexpected %s", m.Raw)
		}
	}
}

func rawConn(t *testing.T, s *Server) (net.Conn, *Client) {
	t.Helper()
	c := dial(t, s)
	return c.nc, c
}

func TestGarbageCommandKeepsConnection(t *testing.T) {
	s := startServer(t, Config{Handler: &testHandler{}})
	nc, c := rawConn(t, s)
	io.WriteString(nc, "this is not json\n")
	m := next(t, c)
	if m.Type != "error" || !strings.Contains(m.Message, "line 1: malformed command") {
		t.Errorf("got %s", m.Raw)
	}
	io.WriteString(nc, `{"cmd":"fly","id":42}`+"\n")
	m = next(t, c)
	if m.Type != "error" || string(m.ID) != "42" || !strings.Contains(m.Message, `unknown command "fly"`) {
		t.Errorf("got %s", m.Raw)
	}
	io.WriteString(nc, `{"id":"x"}`+"\n")
	if m = next(t, c); m.Type != "error" || !strings.Contains(m.Message, `missing "cmd"`) {
		t.Errorf("got %s", m.Raw)
	}
	reply, err := c.Command(Command{Cmd: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.Data) != `{"cameras":2,"ok":true}` || reply.Cmd != "status" {
		t.Errorf("status reply %s", reply.Raw)
	}
}

func TestClassify(t *testing.T) {
	h := &testHandler{}
	s := startServer(t, Config{Handler: h})
	c := dial(t, s)
	img := []byte{0xff, 0xd8, 0xff, 0x00, 0x01}
	reply, err := c.Command(Command{ID: json.RawMessage(`{"n":1}`), Cmd: "classify",
		ImageB64: base64.StdEncoding.EncodeToString(img), Labels: []string{"dog", "cat"}, TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.ID) != `{"n":1}` || string(reply.Data) != `{"bytes":5,"labels":["dog","cat"],"path":"","top_k":2}` {
		t.Errorf("reply %s", reply.Raw)
	}
	if !reflect.DeepEqual(h.requests[0].ImageData, img) {
		t.Errorf("handler got %v", h.requests[0].ImageData)
	}

	cases := []struct {
		cmd  Command
		want string
	}{
		{Command{Cmd: "classify"}, `missing "image"`},
		{Command{Cmd: "classify", Image: "/a.jpg", ImageB64: "AA=="}, "not both"},
		{Command{Cmd: "classify", Image: "/a.jpg"}, "classify_dirs is empty"},
		{Command{Cmd: "classify", Image: "/a.jpg", Camera: "front", Labels: []string{"x"}}, "not both"},
		{Command{Cmd: "classify", ImageB64: "%%%"}, "image_b64"},
		{Command{Cmd: "classify", ImageB64: base64.StdEncoding.EncodeToString([]byte("fail"))}, "cannot decode image"},
	}
	for _, tc := range cases {
		_, err := c.Command(tc.cmd)
		var ce *CommandError
		if !errors.As(err, &ce) || !strings.Contains(ce.Message, tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cmd, err, tc.want)
		}
	}
}

func TestSnapshotCommand(t *testing.T) {
	s := startServer(t, Config{Handler: &testHandler{}})
	c := dial(t, s)
	reply, err := c.Command(Command{Cmd: "snapshot", Camera: "front"})
	if err != nil {
		t.Fatal(err)
	}
	var got SnapshotReply
	if err := json.Unmarshal(reply.Data, &got); err != nil || got.Seq != 7 || !reflect.DeepEqual(got.JPEG, []byte{0xff, 0xd8, 0xff, 0xd9}) {
		t.Fatalf("reply %s: %+v, %v", reply.Data, got, err)
	}
	if !strings.Contains(string(reply.Data), `"jpeg_b64":"/9j/2Q=="`) {
		t.Errorf("reply %s does not carry standard base64", reply.Data)
	}
	for cmd, want := range map[string]string{"": `missing "camera"`, "back": `no camera "back"`} {
		if _, err := c.Command(Command{Cmd: "snapshot", Camera: cmd}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("snapshot %q: %v, want %q", cmd, err, want)
		}
	}
}

// Subscriptions name cameras, regions ("cam/region") or whole frames
// ("cam/"); what concerns a camera as a whole reaches its targets'
// subscribers.
func TestSubscribeToRegions(t *testing.T) {
	s := startServer(t, Config{})
	sub := func(names ...string) *Client {
		c := dial(t, s)
		if err := c.Subscribe(names); err != nil {
			t.Fatal(err)
		}
		return c
	}
	whole, gate, all := sub("front/"), sub("front/gate"), sub("front")
	events := []Event{
		&Result{Camera: "front", Seq: 1},
		&Result{Camera: "front", Region: "gate", Seq: 2},
		&Result{Camera: "front", Region: "step", Seq: 3},
		&Result{Camera: "back", Seq: 4},
		&ErrorReport{Camera: "front", Message: "source down"},
		&ErrorReport{Camera: "front", Region: "step", Message: "step labels broken"},
		&LabelsUpdate{Camera: "front", Region: "gate", Version: 2},
		&LabelsUpdate{Version: 9},
	}
	for _, ev := range events {
		s.Publish(ev)
	}
	read := func(c *Client, n int) []string {
		var got []string
		for range n {
			got = append(got, string(next(t, c).Raw))
		}
		return got
	}
	has := func(lines []string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, w) }) {
				t.Errorf("lines %q lack %q", lines, w)
			}
		}
	}
	has(read(whole, 3), `"seq":1`, "source down", `"version":9`)
	has(read(gate, 4), `"seq":2`, "source down", `"region":"gate","version":2`, `"version":9`)
	has(read(all, 7), `"seq":1`, `"seq":2`, `"seq":3`, "source down", "step labels broken", `"version":2`, `"version":9`)
	for _, bad := range [][]string{{"Front"}, {"front/Gate"}, {"a/b/c"}, {strings.Repeat("x", 65)}} {
		c := dial(t, s)
		if err := c.Subscribe(bad); err == nil {
			t.Errorf("subscribe %q accepted", bad)
		}
	}
}

func TestOversizeLineClosesOnlyThatClient(t *testing.T) {
	s := startServer(t, Config{MaxLineBytes: 1024})
	bad := dial(t, s)
	good := dial(t, s)
	io.WriteString(bad.nc, `{"cmd":"classify","image_b64":"`+strings.Repeat("A", 4096)+"\"}\n")
	m := next(t, bad)
	if m.Type != "error" || !strings.Contains(m.Message, "longer than 1024 bytes") {
		t.Errorf("got %s", m.Raw)
	}
	bad.nc.SetReadDeadline(time.Now().Add(guard))
	if _, err := bad.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after oversize line: %v, want EOF", err)
	}
	s.Publish(result("front", 1))
	if m := next(t, good); m.Type != "result" {
		t.Errorf("other client got %s", m.Raw)
	}
	if err := good.Subscribe([]string{"front"}); err != nil {
		t.Errorf("other client no longer usable: %v", err)
	}
}

func TestMaxClients(t *testing.T) {
	s := startServer(t, Config{MaxClients: 2})
	dial(t, s)
	dial(t, s)
	_, err := Dial(s.Path())
	if err == nil || !strings.Contains(err.Error(), "too many clients (max 2)") {
		t.Errorf("third client: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves the file behind, like a crashed daemon
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{Path: path})
	dial(t, s)
}

func TestLiveSocketRefused(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Path: path})
	if err == nil || !strings.Contains(err.Error(), "another clipd is serving on "+path) {
		t.Fatalf("err = %v", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the live socket was disturbed: %v", err)
	} else {
		c.Close()
	}
}

func TestNonSocketFileRefused(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	os.WriteFile(path, []byte("precious"), 0o644)
	if _, err := New(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file was replaced")
	}
}

func TestPathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("d", 120) + "/c.sock"
	if _, err := New(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "at most 107") {
		t.Fatalf("err = %v", err)
	}
}

// CheckPath refuses what New would, before anything is created: New
// itself asks it first.
func TestCheckPath(t *testing.T) {
	dir := sockDir(t)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "c.sock"):                    "",
		filepath.Join(dir, "run", "clipd", "c.sock"):    "", // created by New
		"/" + strings.Repeat("d", 101) + "/c.sock":      "is 109 bytes; unix sockets allow at most 107",
		filepath.Join(file, "c.sock"):                   file + " is not a directory",
		filepath.Join(file, "run", "c.sock"):            file + " is not a directory",
		"/" + strings.Repeat("d", 93) + "/abcdefg.sock": "leaves no room for a temporary name",
	} {
		err := CheckPath(path)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckPath(%s) = %v, want %q", path, err, want)
		}
		if want == "" {
			continue
		}
		if _, err := New(Config{Path: path}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%s) = %v, want %q", path, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
		t.Error("CheckPath created the socket's directory")
	}
}

func TestSocketModeGroupAndRemoval(t *testing.T) {
	dir := filepath.Join(sockDir(t), "run", "clipd") // parent dirs created
	path := filepath.Join(dir, "c.sock")
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("environment: no name for own group %d: %v", os.Getgid(), err)
	}
	s, err := New(Config{Path: path, Group: g.Name})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, want socket 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; int(gid) != os.Getgid() {
		t.Errorf("gid = %d, want %d", gid, os.Getgid())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want just the socket", len(entries))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still present after Close: %v", err)
	}

	s = startServer(t, Config{Path: path, Mode: 0o600})
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode())
	}
	if _, err := New(Config{Path: filepath.Join(dir, "d.sock"), Group: "no-such-group-clipd"}); err == nil || !strings.Contains(err.Error(), "no-such-group-clipd") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestAdoptedListener(t *testing.T) {
	path := filepath.Join(sockDir(t), "act.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{Listener: ln})
	if s.Path() != path {
		t.Errorf("Path() = %q", s.Path())
	}
	c := dial(t, s)
	s.Publish(result("front", 1))
	if m := next(t, c); m.Type != "result" {
		t.Errorf("got %s", m.Raw)
	}
}

// Close must not wait for clients: not for one that never reads while its
// writer is blocked, nor for a classify in progress.
func TestClosePromptWithClients(t *testing.T) {
	h := &testHandler{block: true, started: make(chan struct{})}
	s, err := New(Config{Path: filepath.Join(sockDir(t), "c.sock"), Handler: h, ClientQueue: 8})
	if err != nil {
		t.Fatal(err)
	}
	idle := dial(t, s)
	busy := dial(t, s)
	if err := busy.Send(Command{Cmd: "classify", ImageB64: "AA=="}); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("y", 4096)
	for seq := uint64(1); seq <= 2000; seq++ {
		r := result("front", seq)
		r.Top[0].Label = pad
		s.Publish(r)
	}
	select {
	case <-h.started:
	case <-time.After(guard):
		t.Fatal("classify never started")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("Close hung with connected clients")
	}
	for _, c := range []*Client{idle, busy} {
		c.nc.SetReadDeadline(time.Now().Add(guard))
		var err error
		for err == nil {
			_, err = c.Next()
		}
		// A client that was behind may see the line in flight cut off;
		// either way the stream ends cleanly, never as a JSON error.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("client read after Close: %v, want EOF or ErrUnexpectedEOF", err)
		}
	}
}

// A line cut off by the server's going away is reported as such, and
// complete lines before it are still delivered.
func TestClientTruncatedLine(t *testing.T) {
	srv, cli := net.Pipe()
	go func() {
		srv.Write([]byte(`{"type":"hello","version":"x"}` + "\n" + `{"type":"result","seq":1}` + "\n" + `{"type":"res`))
		srv.Close()
	}()
	c := newClient(cli)
	for _, want := range []string{"hello", "result"} {
		m, err := c.Next()
		if err != nil || m.Type != want {
			t.Fatalf("Next = %q, %v; want %q", m.Type, err, want)
		}
	}
	if _, err := c.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated tail: %v, want ErrUnexpectedEOF", err)
	}
}

func BenchmarkPublishTo8Clients(b *testing.B) {
	s := startServer(b, Config{ClientQueue: 4096})
	var wg sync.WaitGroup
	for range 8 {
		c := dial(b, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := c.Next(); err != nil {
					return
				}
			}
		}()
	}
	r := result("front", 1)
	b.ResetTimer()
	for b.Loop() {
		r.Seq++
		s.Publish(r)
	}
	b.StopTimer()
	s.Close()
	wg.Wait()
}

// Publish's own cost (encode once, enqueue per client) when no client reads,
// so every enqueue also evicts the oldest result.
func BenchmarkPublishTo8StalledClients(b *testing.B) {
	s := startServer(b, Config{ClientQueue: 256})
	for range 8 {
		dial(b, s)
	}
	r := result("front", 1)
	for b.Loop() {
		r.Seq++
		s.Publish(r)
	}
}
