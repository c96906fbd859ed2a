// Package server publishes clipd's results as JSON lines over a unix socket
// and answers commands from local clients (clipd tail, scripts, home
// automation). The protocol is documented in docs/socket.md.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultPath        = "/run/clipd/clipd.sock"
	DefaultMode        = 0o660
	DefaultClientQueue = 256
	// DefaultClientQueueBytes bounds what waits for one client in bytes:
	// 256 queued status replies of a busy daemon, or a few snapshots.
	DefaultClientQueueBytes = 16 << 20
	DefaultMaxClients       = 32
	// DefaultMaxImageBytes bounds an image file read for classify.
	DefaultMaxImageBytes = 64 << 20
	// DefaultMaxLineBytes admits a classify command carrying a base64 image
	// of about 6 MiB.
	DefaultMaxLineBytes = 8 << 20
)

// MaxPathBytes is the longest socket path: the size of sun_path less its
// terminating NUL.
const MaxPathBytes = 107

// tmpNameBytes is the longest temporary name listenUnix makes beside the
// socket: ".clipd-" and a pid of up to 7 digits (pid_max is at most 2^22)
// and ".sock".
const tmpNameBytes = len(".clipd-4194304.sock")

// CheckPath says why New could not create a socket at path, as far as
// that can be told without creating it: a path too long for a unix
// socket, or a directory that cannot be made because something on the way
// is not a directory. clipd check asks it; New asks it first.
func CheckPath(path string) error {
	if len(path) > MaxPathBytes {
		return fmt.Errorf("socket path %s is %d bytes; unix sockets allow at most %d", path, len(path), MaxPathBytes)
	}
	dir := filepath.Dir(path)
	if len(filepath.Join(dir, strings.Repeat("x", tmpNameBytes))) > MaxPathBytes && len(path)+1 > MaxPathBytes {
		return fmt.Errorf("socket path %s leaves no room for a temporary name (max %d bytes)", path, MaxPathBytes)
	}
	// The nearest directory that exists must be one: New creates the
	// missing ones beneath it.
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("socket path %s: %s is not a directory", path, d)
			}
			return nil
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("socket path %s: %w", path, err)
		}
	}
}

// LookupGroup returns the gid of the group the socket is given.
func LookupGroup(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("socket group %q has non-numeric gid %q", group, g.Gid)
	}
	return gid, nil
}

// Config configures a Server.
type Config struct {
	// Path of the socket; DefaultPath if empty. Ignored when Listener is set.
	Path string
	// Mode of the socket file; DefaultMode if zero. Connecting needs write
	// permission, so 0660 admits the owner and Group.
	Mode os.FileMode
	// Group, if set, is the group name the socket is given.
	Group string
	// Listener, if set, is used instead of creating the socket, e.g. one
	// passed by systemd socket activation. The server closes it but leaves
	// its file alone.
	Listener net.Listener
	// ClientQueue bounds the messages waiting for one client; when it is
	// full the oldest results are dropped. DefaultClientQueue if zero.
	ClientQueue int
	// ClientQueueBytes bounds the same queue in bytes, so that a client
	// that never reads costs a known amount of memory whatever it asks
	// for. DefaultClientQueueBytes if zero.
	ClientQueueBytes int
	// ClassifyDirs are the directories whose files a client may name in
	// classify's "image"; nil admits no path at all (image_b64 always
	// works). Paths are resolved by the kernel beneath these directories,
	// so symlinks and ".." cannot leave them.
	ClassifyDirs []string
	// MaxImageBytes bounds an image file read for classify;
	// DefaultMaxImageBytes if zero.
	MaxImageBytes int64
	// MaxClients bounds concurrent connections; DefaultMaxClients if zero.
	MaxClients int
	// MaxLineBytes bounds one command line; a longer line closes that
	// client. DefaultMaxLineBytes if zero.
	MaxLineBytes int
	// Hello supplies the greeting for each new client.
	Hello func() Hello
	// Handler answers status and classify; without one they get an error.
	Handler Handler
	// Logf, if set, receives connection-level problems.
	Logf func(format string, args ...any)
}

// Server accepts clients on a unix socket and fans published events out to
// them.
type Server struct {
	conf Config
	ln   net.Listener
	// socketFile is the file we created and must remove, nil when the
	// listener came from outside.
	socketFile os.FileInfo
	path       string

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.RWMutex
	clients map[*conn]struct{}
	closed  bool
	nextID  uint64

	// classifying admits one classify at a time: each may hold a decoded
	// image of up to 100 megapixels, and the encoder is shared anyway.
	classifying chan struct{}

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New creates the socket (or adopts conf.Listener) and starts accepting.
func New(conf Config) (*Server, error) {
	if conf.Path == "" {
		conf.Path = DefaultPath
	}
	if conf.Mode == 0 {
		conf.Mode = DefaultMode
	}
	if conf.ClientQueue <= 0 {
		conf.ClientQueue = DefaultClientQueue
	}
	if conf.ClientQueueBytes <= 0 {
		conf.ClientQueueBytes = DefaultClientQueueBytes
	}
	if conf.MaxImageBytes <= 0 {
		conf.MaxImageBytes = DefaultMaxImageBytes
	}
	for i, d := range conf.ClassifyDirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("classify directory %q is not an absolute path", d)
		}
		conf.ClassifyDirs[i] = filepath.Clean(d)
	}
	if conf.MaxClients <= 0 {
		conf.MaxClients = DefaultMaxClients
	}
	if conf.MaxLineBytes <= 0 {
		conf.MaxLineBytes = DefaultMaxLineBytes
	}
	if conf.Hello == nil {
		conf.Hello = func() Hello { return Hello{} }
	}
	s := &Server{conf: conf, clients: make(map[*conn]struct{}), classifying: make(chan struct{}, 1)}
	if conf.Listener != nil {
		s.ln = conf.Listener
		s.path = conf.Listener.Addr().String()
	} else {
		ln, fi, err := listenUnix(conf.Path, conf.Mode, conf.Group)
		if err != nil {
			return nil, err
		}
		s.ln, s.socketFile, s.path = ln, fi, conf.Path
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// Path is where clients connect.
func (s *Server) Path() string { return s.path }

// listenUnix creates the socket under a temporary name, sets its mode and
// group, and renames it into place, so that it is never reachable with the
// wrong permissions and a stale socket is replaced atomically.
func listenUnix(path string, mode os.FileMode, group string) (net.Listener, os.FileInfo, error) {
	if err := CheckPath(path); err != nil {
		return nil, nil, err
	}
	gid := -1
	if group != "" {
		var err error
		if gid, err = LookupGroup(group); err != nil {
			return nil, nil, err
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("%s exists and is not a socket; not replacing it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, nil, fmt.Errorf("another clipd is serving on %s", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("checking whether %s is in use: %w", path, err)
		}
		// Nobody listens: a leftover of a crashed daemon. The rename
		// below replaces it.
	}

	tmp := filepath.Join(dir, fmt.Sprintf(".clipd-%d.sock", os.Getpid()))
	if len(tmp) > MaxPathBytes {
		tmp = path + "~"
		if len(tmp) > MaxPathBytes {
			return nil, nil, fmt.Errorf("socket path %s leaves no room for a temporary name (max %d bytes)", path, MaxPathBytes)
		}
	}
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, os.FileInfo, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(fmt.Errorf("setting mode of %s: %w", path, err))
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("setting group of %s to %s: %w", path, group, err))
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("moving socket into place at %s: %w", path, err))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	return ln, fi, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.conf.Logf != nil {
		s.conf.Logf(format, args...)
	}
}

func (s *Server) run() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.ctx.Done():
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Typically EMFILE: wait for descriptors to free up rather
			// than spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logf("socket: accept: %v; retrying in %v", err, backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		s.admit(nc)
	}
}

func (s *Server) admit(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.clients) >= s.conf.MaxClients {
		s.mu.Unlock()
		line, _ := encodeLine("error", commandError{Message: fmt.Sprintf("too many clients (max %d)", s.conf.MaxClients)})
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write(line)
		nc.Close()
		return
	}
	s.nextID++
	c := newConn(s, nc, s.nextID)
	hello, err := encodeLine("hello", s.conf.Hello())
	if err != nil {
		s.logf("socket: %v", err)
	} else {
		c.enqueue(hello, false)
	}
	// Registered after the hello is queued so that no result can precede it.
	s.clients[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.writeLoop()
	go c.readLoop()
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// Publish sends ev to every client subscribed to its camera. It never
// blocks on clients: each has its own bounded queue.
func (s *Server) Publish(ev Event) error {
	line, err := encodeLine(ev.eventType(), ev)
	if err != nil {
		return err
	}
	camera, region, perTarget := ev.eventTarget()
	droppable := ev.droppable()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.clients {
		if c.wants(camera, region, perTarget) {
			c.enqueue(line, droppable)
		}
	}
	return nil
}

// ClientInfo describes one connected client, for status output.
type ClientInfo struct {
	ID uint64 `json:"id"`
	// Cameras is the subscription; nil means all.
	Cameras     []string `json:"cameras,omitempty"`
	Queued      int      `json:"queued"`
	QueuedBytes int      `json:"queued_bytes"`
	Dropped     uint64   `json:"dropped"`
}

// Clients lists connected clients.
func (s *Server) Clients() []ClientInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ClientInfo, 0, len(s.clients))
	for c := range s.clients {
		out = append(out, c.info())
	}
	return out
}

// Close disconnects every client, waits for their goroutines (including a
// running Handler.Classify, whose context is cancelled) and removes the
// socket file if this server created it.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		s.mu.Lock()
		s.closed = true
		clients := make([]*conn, 0, len(s.clients))
		for c := range s.clients {
			clients = append(clients, c)
		}
		s.mu.Unlock()
		err = s.ln.Close()
		for _, c := range clients {
			c.close()
		}
		s.wg.Wait()
		if s.socketFile != nil {
			// Only remove the file if it is still ours: a second daemon
			// started with a stale check may have replaced it.
			if fi, statErr := os.Stat(s.path); statErr == nil && os.SameFile(fi, s.socketFile) {
				if rmErr := os.Remove(s.path); rmErr != nil && err == nil {
					err = rmErr
				}
			}
		}
	})
	return err
}
