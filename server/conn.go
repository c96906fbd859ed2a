package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// lastWordTimeout bounds how long a client being disconnected for a protocol
// violation gets to read the error explaining why.
const lastWordTimeout = 2 * time.Second

// maxIDBytes bounds a command's id: it is echoed in the reply, and an
// unbounded echo lets a client that never reads make the daemon hold
// megabytes per command.
const maxIDBytes = 128

// maxMessageBytes bounds the text of an error sent to a client.
const maxMessageBytes = 4096

type queued struct {
	line      []byte
	droppable bool
	// last closes the connection once written.
	last bool
}

// conn is one client: a reader goroutine for commands and a writer
// goroutine draining the client's queue, so that a client that does not
// read only ever blocks its own writer.
type conn struct {
	s   *Server
	nc  net.Conn
	id  uint64
	ctx context.Context
	// cancel ends a Classify running for this client.
	cancel context.CancelFunc

	// filter is the subscription; nil means everything.
	filter atomic.Pointer[subscription]

	mu           sync.Mutex
	queue        []queued
	queueBytes   int
	dropped      uint64 // since the last notice
	droppedTotal uint64
	closed       bool
	// finishing: the client has closed its side; what is queued is still
	// written, nothing more is queued, then the connection closes.
	finishing bool
	wake      chan struct{}

	done      chan struct{}
	closeOnce sync.Once
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &conn{s: s, nc: nc, id: id, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *conn) wants(camera, region string, perTarget bool) bool {
	f := c.filter.Load()
	return f == nil || camera == "" || f.wants(camera, region, perTarget)
}

// enqueue never blocks. When the queue is full, in messages or in bytes,
// the oldest droppable message makes room; if none is droppable the oldest
// message does.
func (c *conn) enqueue(line []byte, droppable bool) {
	c.push(queued{line: line, droppable: droppable})
}

func (c *conn) push(q queued) {
	c.mu.Lock()
	if c.closed || c.finishing {
		c.mu.Unlock()
		return
	}
	for len(c.queue) > 0 && (len(c.queue) >= c.s.conf.ClientQueue || c.queueBytes+len(q.line) > c.s.conf.ClientQueueBytes) {
		victim := max(slices.IndexFunc(c.queue, func(q queued) bool { return q.droppable }), 0)
		c.queueBytes -= len(c.queue[victim].line)
		if victim == 0 {
			// The usual case: the head is the oldest result. Reslicing
			// instead of shifting keeps a stalled client's eviction O(1).
			c.queue[0] = queued{}
			c.queue = c.queue[1:]
		} else {
			c.queue = slices.Delete(c.queue, victim, victim+1)
		}
		c.dropped++
		c.droppedTotal++
	}
	c.queue = append(c.queue, q)
	c.queueBytes += len(q.line)
	if q.last {
		c.finishing = true
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// next pops the next line to write; a pending drop count comes first, so
// that the client learns of a gap before the messages that follow it.
func (c *conn) next() (queued, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		line, _ := encodeLine("dropped", droppedNotice{Count: c.dropped})
		c.dropped = 0
		return queued{line: line}, true
	}
	if len(c.queue) == 0 {
		return queued{}, false
	}
	q := c.queue[0]
	c.queue[0] = queued{}
	c.queue = c.queue[1:]
	c.queueBytes -= len(q.line)
	return q, true
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	defer c.close()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		for {
			q, ok := c.next()
			if !ok {
				break
			}
			if _, err := w.Write(q.line); err != nil {
				return
			}
			if q.last {
				if w.Flush() == nil && q.line != nil {
					c.linger()
				}
				return
			}
		}
		// Flush only when the queue is empty: bursts go out in few writes.
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// linger half-closes the connection and discards what the client is still
// sending, briefly: closing with unread input would make the kernel reset
// the connection, and the client could lose the error just written.
func (c *conn) linger() {
	uc, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || uc.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(lastWordTimeout))
	io.Copy(io.Discard, io.LimitReader(c.nc, int64(c.s.conf.MaxLineBytes)+1<<20))
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	sc := bufio.NewScanner(c.nc)
	// Scanner honours the larger of the initial capacity and the limit.
	sc.Buffer(make([]byte, 0, min(64<<10, c.s.conf.MaxLineBytes)), c.s.conf.MaxLineBytes)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		c.handle(line, lineNo)
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		c.lastWord(commandError{Message: fmt.Sprintf("line %d is longer than %d bytes; closing the connection", lineNo+1, c.s.conf.MaxLineBytes)})
	case err == nil:
		// The client closed its side (`echo '{"cmd":"status"}' | nc -U`):
		// it still gets the replies to what it sent, then the connection
		// closes.
		c.push(queued{last: true})
	default:
		c.close()
	}
}

// lastWord queues an error and closes the connection once it is written,
// or after lastWordTimeout if the client does not read.
func (c *conn) lastWord(e commandError) {
	line, _ := encodeLine("error", e)
	c.push(queued{line: line, last: true})
	c.nc.SetWriteDeadline(time.Now().Add(lastWordTimeout))
}

func (c *conn) handle(line []byte, lineNo int) {
	var cmd Command
	if err := json.Unmarshal(line, &cmd); err != nil {
		c.replyError(nil, "", fmt.Sprintf("line %d: malformed command: %s", lineNo, malformed(err)))
		return
	}
	if err := checkID(cmd.ID); err != nil {
		cmd.ID = nil
		c.replyError(nil, "", fmt.Sprintf("line %d: %v", lineNo, err))
		return
	}
	if len(cmd.Cmd) > maxCommandName || !utf8.ValidString(cmd.Cmd) {
		c.replyError(cmd.ID, "", fmt.Sprintf("line %d: unknown command %s (known: %s)", lineNo, Quote(cmd.Cmd), knownCommands))
		return
	}
	switch cmd.Cmd {
	case "subscribe":
		sub, err := parseSubscription(cmd.Cameras)
		if err != nil {
			c.replyError(cmd.ID, cmd.Cmd, err.Error())
			return
		}
		c.filter.Store(sub)
		c.reply(cmd, map[string]any{"cameras": cmd.Cameras})
	case "status", "classify", "search", "snapshot":
		if c.s.conf.Handler == nil {
			c.replyError(cmd.ID, cmd.Cmd, cmd.Cmd+" is not available")
			return
		}
		data, err := c.run(&cmd)
		if err != nil {
			c.replyError(cmd.ID, cmd.Cmd, err.Error())
			return
		}
		c.reply(cmd, data)
	case "":
		c.replyError(cmd.ID, "", fmt.Sprintf("line %d: missing \"cmd\"", lineNo))
	default:
		c.replyError(cmd.ID, "", fmt.Sprintf("unknown command %s (known: %s)", Quote(cmd.Cmd), knownCommands))
	}
}

// malformed says why a line is not a Command without encoding/json's
// text, which repeats the offending literal: a number of any length
// (`{"top_k":999…}` with 300 digits). The kind of problem, the field and
// the byte offset are enough to find it.
func malformed(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		// Value is encoding/json's word for the JSON found ("number",
		// "string", "array"), with the literal after it when a number
		// does not fit: only the word is repeated.
		got, _, _ := strings.Cut(typ.Value, " ")
		got = truncateUTF8(got, 16)
		if typ.Field == "" {
			return fmt.Sprintf("want a JSON object, got %s", got)
		}
		return fmt.Sprintf("field %s: want %s, got %s (at byte %d)", Quote(typ.Field), jsonKind(typ.Type), got, typ.Offset)
	}
	return "not a command object"
}

// jsonKind names what JSON a Command field takes, in JSON's words.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

const knownCommands = "subscribe, status, classify, snapshot, search"

// maxCommandName is longer than any command's name.
const maxCommandName = 32

// checkID admits ids that are short enough to echo and valid UTF-8, so
// that every line the server writes is valid UTF-8 JSON.
func checkID(id json.RawMessage) error {
	if len(id) > maxIDBytes {
		return fmt.Errorf("id is %d bytes; at most %d are echoed", len(id), maxIDBytes)
	}
	if !utf8.Valid(id) {
		return errors.New("id is not valid UTF-8")
	}
	return nil
}

// run answers a command that needs the Handler. It may clear fields of
// cmd that are no longer needed (an image's base64, once decoded).
func (c *conn) run(cmd *Command) (any, error) {
	switch cmd.Cmd {
	case "status":
		return c.s.conf.Handler.Status(), nil
	case "classify":
		return c.classify(cmd)
	case "search":
		return c.search(cmd)
	}
	if cmd.Camera == "" {
		return nil, errors.New(`missing "camera" (a camera, or "camera/region")`)
	}
	return c.s.conf.Handler.Snapshot(c.ctx, cmd.Camera)
}

// exclusive waits for the one turn at reading and decoding an image that
// the server gives at a time, and returns its release.
func (c *conn) exclusive() (release func(), err error) {
	select {
	case c.s.classifying <- struct{}{}:
		return func() { <-c.s.classifying }, nil
	case <-c.ctx.Done():
		return nil, c.ctx.Err()
	}
}

// classify reads the request's image (confined to ClassifyDirs when it
// is a path) and runs it, one request at a time across all clients. The
// image is decoded only in its turn, and its base64 dropped then: a client
// waiting holds its command line, not also a copy and the decoded bytes
// (three times 8 MiB, for each of up to max_clients clients).
func (c *conn) classify(cmd *Command) (any, error) {
	req, err := classifyRequest(*cmd)
	if err != nil {
		return nil, err
	}
	release, err := c.exclusive()
	if err != nil {
		return nil, err
	}
	defer release()
	switch {
	case req.ImagePath != "":
		req.ImageData, err = c.s.readImage(req.ImagePath)
	case cmd.ImageB64 != "":
		req.ImageData, err = decodeImageB64(cmd)
	}
	if err != nil {
		return nil, err
	}
	return c.s.conf.Handler.Classify(c.ctx, req)
}

// decodeImageB64 decodes cmd's image_b64 and clears it, so that only the
// decoded bytes stay while the Handler runs.
func decodeImageB64(cmd *Command) ([]byte, error) {
	data, err := base64.StdEncoding.DecodeString(cmd.ImageB64)
	cmd.ImageB64 = ""
	if err != nil {
		return nil, fmt.Errorf("image_b64: %v", err)
	}
	return data, nil
}

// search validates a search, reads its image like classify's, and runs it
// (one at a time with classify: both may decode an image).
func (c *conn) search(cmd *Command) (any, error) {
	req := SearchRequest{Text: cmd.Text, Image: cmd.Image, ImageB64: cmd.ImageB64, Label: cmd.Label,
		Camera: cmd.Camera, Region: cmd.Region, Cameras: cmd.Cameras, Since: cmd.Since, Until: cmd.Until,
		K: cmd.K, MinScore: cmd.MinScore, Frames: cmd.Frames}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	release, err := c.exclusive()
	if err != nil {
		return nil, err
	}
	defer release()
	switch {
	case req.Image != "":
		req.ImageData, err = c.s.readImage(req.Image)
	case req.ImageB64 != "":
		req.ImageB64 = ""
		req.ImageData, err = decodeImageB64(cmd)
	}
	if err != nil {
		return nil, err
	}
	return c.s.conf.Handler.Search(c.ctx, req)
}

// Ad-hoc labels are encoded for the request (a prompt each) and then
// forgotten; these bounds keep one command line, which holds a million
// short labels, from occupying the text encoder for hours. CLIP's largest
// label set, ImageNet's, has 1,000 classes.
const (
	MaxClassifyLabels = 1000
	MaxLabelBytes     = 256
)

func classifyRequest(cmd Command) (ClassifyRequest, error) {
	req := ClassifyRequest{ImagePath: cmd.Image, Camera: cmd.Camera, Labels: cmd.Labels, TopK: cmd.TopK}
	switch {
	case cmd.Image != "" && cmd.ImageB64 != "":
		return req, errors.New("give either \"image\" or \"image_b64\", not both")
	case cmd.Image == "" && cmd.ImageB64 == "":
		return req, errors.New("missing \"image\" (a path) or \"image_b64\"")
	case cmd.Camera != "" && len(cmd.Labels) > 0:
		return req, errors.New("give either \"camera\" (its labels) or \"labels\", not both")
	case cmd.TopK < 0:
		return req, fmt.Errorf("top_k %d is negative", cmd.TopK)
	case len(cmd.Labels) > MaxClassifyLabels:
		return req, fmt.Errorf("%d labels; at most %d per request", len(cmd.Labels), MaxClassifyLabels)
	}
	for i, l := range cmd.Labels {
		if len(l) > MaxLabelBytes {
			return req, fmt.Errorf("labels[%d] is %d bytes; at most %d", i, len(l), MaxLabelBytes)
		}
	}
	return req, nil
}

func (c *conn) reply(cmd Command, data any) {
	line, err := encodeLine("reply", reply{ID: cmd.ID, Cmd: cmd.Cmd, Data: data})
	if err != nil {
		c.replyError(cmd.ID, cmd.Cmd, err.Error())
		return
	}
	c.enqueue(line, false)
}

func (c *conn) replyError(id json.RawMessage, cmd, msg string) {
	if len(msg) > maxMessageBytes {
		msg = truncateUTF8(msg, maxMessageBytes) + "…"
	}
	line, err := encodeLine("error", commandError{ID: id, Cmd: cmd, Message: msg})
	if err != nil {
		// Only an id that is not valid JSON can get here.
		line, _ = encodeLine("error", commandError{Cmd: cmd, Message: msg})
	}
	c.enqueue(line, false)
}

func (c *conn) info() ClientInfo {
	info := ClientInfo{ID: c.id}
	if f := c.filter.Load(); f != nil {
		info.Cameras = f.names
	}
	c.mu.Lock()
	info.Queued, info.QueuedBytes, info.Dropped = len(c.queue), c.queueBytes, c.droppedTotal
	c.mu.Unlock()
	return info
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.queue = nil
		c.mu.Unlock()
		c.cancel()
		close(c.done)
		c.nc.Close()
		c.s.remove(c)
	})
}
