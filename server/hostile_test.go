package server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// classifyDirs builds an allowed directory with an image, a symlink
// leading out, a FIFO and a device link in it, and a secret outside.
func classifyDirs(t *testing.T) (allowed, secret string) {
	t.Helper()
	root := t.TempDir()
	allowed = filepath.Join(root, "snapshots")
	os.Mkdir(allowed, 0o755)
	os.WriteFile(filepath.Join(allowed, "ok.jpg"), []byte("IMAGE"), 0o644)
	secret = filepath.Join(root, "secret")
	os.WriteFile(secret, []byte("root:*:2"), 0o600)
	os.Symlink(secret, filepath.Join(allowed, "abs-link.jpg"))
	os.Symlink("../secret", filepath.Join(allowed, "rel-link.jpg"))
	os.Symlink("/dev/zero", filepath.Join(allowed, "zero.jpg"))
	syscall.Mkfifo(filepath.Join(allowed, "fifo.jpg"), 0o644)
	return allowed, secret
}

func TestClassifyPathIsConfinedToClassifyDirs(t *testing.T) {
	allowed, secret := classifyDirs(t)
	h := &testHandler{}
	s := startServer(t, Config{Handler: h, ClassifyDirs: []string{allowed}})
	c := dial(t, s)

	reply, err := c.Command(Command{Cmd: "classify", Image: filepath.Join(allowed, "ok.jpg")})
	if err != nil {
		t.Fatalf("a file in the allowed directory: %v", err)
	}
	if !strings.Contains(string(reply.Data), `"bytes":5`) {
		t.Errorf("reply %s: the handler did not get the file's 5 bytes", reply.Data)
	}

	outside := "not under a directory this daemon reads images from"
	for _, tc := range []struct{ path, want string }{
		{secret, outside},
		{"/etc/shadow", outside},
		{"/nonexistent/x.jpg", outside},
		{"/proc/self/environ", outside},
		{allowed + "/../secret", outside},
		{allowed, outside},
		{"relative.jpg", "must be an absolute path"},
		{filepath.Join(allowed, "abs-link.jpg"), "leads out of"},
		{filepath.Join(allowed, "rel-link.jpg"), "leads out of"},
		{filepath.Join(allowed, "zero.jpg"), "leads out of"},
		{filepath.Join(allowed, "fifo.jpg"), "not a regular file (a FIFO)"},
		{filepath.Join(allowed, "missing.jpg"), "no such file"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := c.Command(Command{Cmd: "classify", Image: tc.path})
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(guard):
			t.Fatalf("%s: classify hung", tc.path)
		}
		var ce *CommandError
		if !errors.As(err, &ce) || !strings.Contains(ce.Message, tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
			continue
		}
		if strings.Contains(ce.Message, "root:") {
			t.Errorf("%s: the error quotes the secret: %s", tc.path, ce.Message)
		}
	}
	// Every path outside got the same words: no probing of what exists.
	if len(h.requests) != 1 {
		t.Errorf("the handler ran %d times; only the allowed file should reach it", len(h.requests))
	}
}

// readLines reads until EOF or until the deadline, returning every line.
func readLines(t *testing.T, nc net.Conn) []string {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(guard))
	var lines []string
	sc := bufio.NewScanner(nc)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading: %v", err)
	}
	return lines
}

// echo '{"cmd":"status"}' | nc -U clipd.sock
func TestHalfClosedClientGetsItsReplies(t *testing.T) {
	s := startServer(t, Config{Handler: &testHandler{}})
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, `{"id":1,"cmd":"status"}`+"\n"+`{"id":2,"cmd":"nope"}`+"\n")
		nc.(*net.UnixConn).CloseWrite()
		lines := readLines(t, nc)
		nc.Close()
		if len(lines) != 3 || !strings.Contains(lines[1], `"type":"reply","id":1,"cmd":"status"`) || !strings.Contains(lines[2], `"type":"error","id":2`) {
			t.Fatalf("run %d: lines %q, want hello, the status reply and the error", i, lines)
		}
	}
}

func TestEchoedIDsAndMessagesAreBounded(t *testing.T) {
	s := startServer(t, Config{Handler: &testHandler{}})
	nc, c := rawConn(t, s)
	bigID := `"` + strings.Repeat("i", 8<<20-100) + `"`
	badUTF8 := "\xff\xfe" + strings.Repeat("\xc3", 50)
	io.WriteString(nc, `{"id":`+bigID+`,"cmd":"status"}`+"\n")
	m := next(t, c)
	if m.Type != "error" || m.ID != nil || !strings.Contains(m.Message, "at most 128 are echoed") {
		t.Fatalf("8 MB id: %.300s", m.Raw)
	}
	cmd, _ := json.Marshal(map[string]any{"id": 7, "cmd": strings.Repeat("x", 1<<20) + badUTF8})
	nc.Write(append(cmd, '\n'))
	m = next(t, c)
	if m.Type != "error" || len(m.Raw) > 1024 || !utf8.Valid(m.Raw) {
		t.Fatalf("1 MB unknown command: %d bytes, valid UTF-8 %v: %.300s", len(m.Raw), utf8.Valid(m.Raw), m.Raw)
	}
	io.WriteString(nc, `{"id":"`+badUTF8+`","cmd":"status"}`+"\n")
	m = next(t, c)
	if m.Type != "error" || !utf8.Valid(m.Raw) || !strings.Contains(m.Message, "not valid UTF-8") {
		t.Fatalf("id with invalid UTF-8: %q", m.Raw)
	}
}

// A client that sends commands and never reads costs at most
// ClientQueueBytes, however large what it asks for.
func TestClientThatNeverReadsIsBoundedInBytes(t *testing.T) {
	const limit = 256 << 10
	s := startServer(t, Config{Handler: &testHandler{}, ClientQueueBytes: limit, ClientQueue: 1 << 20})
	nc, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Large results fill the queue, large-id commands add replies.
	pad := strings.Repeat("z", 32<<10)
	go func() {
		id := `"` + strings.Repeat("i", 120) + `"`
		for i := 0; i < 5000; i++ {
			if _, err := io.WriteString(nc, `{"id":`+id+`,"cmd":"status"}`+"\n"); err != nil {
				return
			}
		}
	}()
	for seq := uint64(1); seq <= 2000; seq++ {
		r := result("front", seq)
		r.Top[0].Label = pad
		s.Publish(r)
	}
	deadline := time.Now().Add(guard)
	for {
		infos := s.Clients()
		if len(infos) == 1 && infos[0].Dropped > 0 {
			if infos[0].QueuedBytes > limit {
				t.Fatalf("queued %d bytes, limit %d", infos[0].QueuedBytes, limit)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drops: %+v", infos)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every line the server writes is one valid UTF-8 JSON object, whatever
// a client sends.
func checkServerLines(t testing.TB, out []byte) {
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if !utf8.Valid(line) || !json.Valid(line) || line[0] != '{' {
			t.Fatalf("server wrote %q", line)
		}
		if len(line) > 8192 {
			t.Fatalf("server wrote a %d-byte line in reply to a short command", len(line))
		}
	}
}

func FuzzCommandLine(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"status"}`, `{"id":1,"cmd":"subscribe","cameras":["front"]}`,
		`{"id":"x","cmd":"classify","image_b64":"AA=="}`, `{"cmd":"classify","image":"/etc/shadow"}`,
		`{"cmd":"classify","image":"../../x","labels":["a\u0000b"]}`, `{"id":{"a":[1,2]},"cmd":"\xff"}`,
		`not json`, `{"cmd":1}`, `{"id":` + strings.Repeat("[", 200) + `}`, "",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "a.jpg"), []byte("x"), 0o644)
	s, err := New(Config{Path: filepath.Join(sockDir(f), "f.sock"), Handler: &testHandler{}, ClassifyDirs: []string{dir}})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return
		}
		nc, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write(append(line, '\n'))
		nc.(*net.UnixConn).CloseWrite()
		nc.SetReadDeadline(time.Now().Add(guard))
		out, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		checkServerLines(t, out)
	})
}

// encoding/json's errors repeat the literal they choke on, a number of any
// length; what the server says instead names the field and the offset.
func TestMalformedCommandErrorsAreBounded(t *testing.T) {
	s := startServer(t, Config{Handler: &testHandler{}})
	nc, c := rawConn(t, s)
	digits := strings.Repeat("9", 300)
	for _, tc := range []struct{ line, want string }{
		{`{"cmd":"classify","top_k":` + digits + `}`, `field "top_k": want an integer in range, got number (at byte`},
		{`{"cmd":"search","min_score":1` + digits + `e400}`, `field "min_score": want a number, got number`},
		{`{"cmd":` + digits + `}`, `field "cmd": want a string, got number`},
		{`{"cmd":"subscribe","cameras":"` + strings.Repeat("c", 300) + `"}`, `field "cameras": want an array of strings, got string`},
		{`[` + digits + `]`, `want a JSON object, got array`},
		{`{"cmd":"status",` + strings.Repeat("x", 300) + `}`, `not valid JSON (at byte 17)`},
	} {
		io.WriteString(nc, tc.line+"\n")
		m := next(t, c)
		if m.Type != "error" || !strings.Contains(m.Message, tc.want) {
			t.Errorf("%.40s…: got %.400s, want %q", tc.line, m.Raw, tc.want)
		}
		if len(m.Raw) > 200 || strings.Contains(m.Message, "99999") || strings.Contains(m.Message, "cccc") || strings.Contains(m.Message, "xxxx") {
			t.Errorf("%.40s…: %d-byte error repeats the input: %s", tc.line, len(m.Raw), m.Raw)
		}
	}
}

// Ad-hoc labels are each a prompt to encode: one 8 MiB line could hold a
// million of them.
func TestClassifyBoundsAdHocLabels(t *testing.T) {
	h := &testHandler{}
	s := startServer(t, Config{Handler: h})
	c := dial(t, s)
	img := base64.StdEncoding.EncodeToString([]byte("IMAGE"))
	many := make([]string, MaxClassifyLabels+1)
	for i := range many {
		many[i] = fmt.Sprintf("thing %d", i)
	}
	long := strings.Repeat("l", MaxLabelBytes+1)
	for _, tc := range []struct {
		labels []string
		want   string
	}{
		{many, "1001 labels; at most 1000 per request"},
		{[]string{"dog", long}, "labels[1] is 257 bytes; at most 256"},
	} {
		_, err := c.Command(Command{Cmd: "classify", ImageB64: img, Labels: tc.labels})
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Message != tc.want {
			t.Errorf("%d labels: %v, want %q", len(tc.labels), err, tc.want)
		}
	}
	if n := h.count(); n != 0 {
		t.Fatalf("the handler ran for %d refused requests", n)
	}
	// At the bounds, the request goes through.
	if _, err := c.Command(Command{Cmd: "classify", ImageB64: img, Labels: many[:MaxClassifyLabels]}); err != nil {
		t.Errorf("1000 labels: %v", err)
	}
	if _, err := c.Command(Command{Cmd: "classify", ImageB64: img, Labels: []string{long[1:]}}); err != nil {
		t.Errorf("a 256-byte label: %v", err)
	}
	if n := h.count(); n != 2 {
		t.Errorf("the handler ran %d times, want 2", n)
	}
}

// A classify waiting for its turn holds its command line only: its base64
// image is decoded once the one before has finished, so even a broken one
// is reported only then.
func TestClassifyDecodesItsImageInItsTurn(t *testing.T) {
	h := &testHandler{hold: make(chan struct{}), started: make(chan struct{})}
	s := startServer(t, Config{Handler: h})
	// Runs before the server's Close, which waits for the handler.
	release := sync.OnceFunc(func() { close(h.hold) })
	t.Cleanup(release)
	first := dial(t, s)
	img := base64.StdEncoding.EncodeToString([]byte("IMAGE"))
	if err := first.Send(Command{Cmd: "classify", ImageB64: img, ID: json.RawMessage("1")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.started:
	case <-time.After(guard):
		t.Fatal("the first classify never reached the handler")
	}

	nc, second := rawConn(t, s)
	io.WriteString(nc, `{"cmd":"classify","id":2,"image_b64":"%%%not base64"}`+"\n")
	got := make(chan Message, 1)
	go func() {
		second.nc.SetReadDeadline(time.Now().Add(guard))
		m, err := second.Next()
		if err != nil {
			t.Errorf("second client: %v", err)
		}
		got <- m
	}()
	select {
	case m := <-got:
		t.Fatalf("the waiting classify was answered before its turn: %s", m.Raw)
	case <-time.After(300 * time.Millisecond):
	}
	release() // the first classify ends, and its turn passes on
	select {
	case m := <-got:
		if m.Type != "error" || string(m.ID) != "2" || !strings.Contains(m.Message, "image_b64: illegal base64 data") {
			t.Errorf("second client: %s", m.Raw)
		}
	case <-time.After(guard):
		t.Fatal("the waiting classify never got its turn")
	}
}
