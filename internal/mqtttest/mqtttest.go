// Package mqtttest runs a real mosquitto Broker and a mosquitto_sub
// Subscriber for tests (Debian's mosquitto and mosquitto-clients, which
// `make deps` installs): the mqtt package's tests and the daemon's
// end-to-end tests share them.
package mqtttest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/syncbuf"
)

// LookTool finds a mosquitto program on PATH or in Debian's directories,
// failing the test when it is not installed.
func LookTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Debian installs the Broker in /usr/sbin, which a user's PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install mosquitto and mosquitto-clients (make deps)", name)
	return ""
}

// DiesWithTest makes the kernel kill a helper process when the test
// binary dies, so that a crashed test leaves no Broker running.
func DiesWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Broker is a mosquitto process on 127.0.0.1:Port.
type Broker struct {
	t      testing.TB
	Dir    string
	Port   int
	conf   string
	log    *syncbuf.Buffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartBroker runs mosquitto with a plain listener on a free port; extra
// lines are appended to its configuration (more listeners, TLS).
func StartBroker(t testing.TB, extra ...string) *Broker {
	t.Helper()
	b := &Broker{t: t, Dir: t.TempDir(), Port: FreePort(t), log: &syncbuf.Buffer{}}
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	lines := []string{
		// Each listener has its own authentication (the TLS test adds
		// listeners that require a password or a client certificate).
		"per_listener_settings true",
		fmt.Sprintf("listener %d 127.0.0.1", b.Port),
		"allow_anonymous true",
		// Losing retained messages on a restart is the worst case the
		// publisher must repair by republishing.
		"persistence false",
		// A Subscriber in a test must not lose what the publisher sent.
		"max_queued_messages 0",
		"max_inflight_messages 1000",
		// When run as root mosquitto drops to this user; staying the
		// test's user keeps the temporary files readable.
		"user " + name,
		"log_dest stderr",
		"log_type error", "log_type warning", "log_type notice",
	}
	lines = append(lines, extra...)
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// URL is the Broker's address as clipd's [mqtt] broker key takes it.
func (b *Broker) URL() string { return fmt.Sprintf("mqtt://127.0.0.1:%d", b.Port) }

// Start runs mosquitto and waits until it listens; StartBroker calls it,
// a test calls it again to restart a Broker it killed or stopped.
func (b *Broker) Start() {
	b.t.Helper()
	b.cmd = exec.Command(LookTool(b.t, "mosquitto"), "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.SysProcAttr = DiesWithTest()
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(b.cmd, b.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.exited:
			b.t.Fatalf("mosquitto exited at start:\n%s", b.log)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not listening on %d after 10s:\n%s", b.Port, b.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the Broker with SIGKILL, as a crash would.
func (b *Broker) Kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
	b.cmd = nil
}

// Stop stops the Broker with SIGTERM (SIGKILL after 5 s); the test's
// cleanup calls it.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

// Msg is one message as mosquitto_sub printed it.
type Msg struct {
	Retained bool
	Topic    string
	Payload  []byte
}

// Subscriber is a mosquitto_sub process: an MQTT client that is not Paho,
// reading what the publisher really put on the Broker.
type Subscriber struct {
	t      testing.TB
	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []Msg
	stderr *syncbuf.Buffer
	cmd    *exec.Cmd
	args   []string
}

// Subscribe starts mosquitto_sub on the topics and returns once it is
// subscribed (it has seen a marker published after it started).
func Subscribe(t testing.TB, connArgs []string, topics ...string) *Subscriber {
	t.Helper()
	s := &Subscriber{t: t, stderr: &syncbuf.Buffer{}, args: connArgs}
	s.cond = sync.NewCond(&s.mu)
	args := append([]string{"-F", "%r %t %x", "-q", "1", "-t", "clipd-test/ready"}, connArgs...)
	for _, tp := range topics {
		args = append(args, "-t", tp)
	}
	s.cmd = exec.Command(LookTool(t, "mosquitto_sub"), args...)
	s.cmd.SysProcAttr = DiesWithTest()
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go s.read(out, done)
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-done
		s.cmd.Wait()
	})
	marker := fmt.Sprintf("%d", time.Now().UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for {
		pub := exec.Command(LookTool(t, "mosquitto_pub"), append([]string{"-t", "clipd-test/ready", "-m", marker}, connArgs...)...)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		if s.WaitQuiet(func(m Msg) bool { return m.Topic == "clipd-test/ready" && string(m.Payload) == marker }, 200*time.Millisecond) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub did not subscribe within 10s: %s", s.stderr)
		}
	}
}

func (s *Subscriber) read(r io.Reader, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) < 2 {
			continue
		}
		m := Msg{Retained: f[0] == "1", Topic: f[1]}
		if len(f) == 3 {
			m.Payload, _ = hex.DecodeString(f[2])
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// WaitQuiet waits up to d for a message matching pred, without failing.
func (s *Subscriber) WaitQuiet(pred func(Msg) bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for seen := 0; ; {
		for ; seen < len(s.msgs); seen++ {
			if pred(s.msgs[seen]) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		s.cond.Wait()
	}
}

// Wait fails the test unless a message matching pred arrives within d.
func (s *Subscriber) Wait(what string, d time.Duration, pred func(Msg) bool) Msg {
	s.t.Helper()
	var found Msg
	if !s.WaitQuiet(func(m Msg) bool {
		if pred(m) {
			found = m
			return true
		}
		return false
	}, d) {
		s.t.Fatalf("no %s within %v; got:\n%s", what, d, s.dump())
	}
	return found
}

// WaitPayload waits for a message on topic with exactly payload.
func (s *Subscriber) WaitPayload(topic, payload string, d time.Duration) Msg {
	s.t.Helper()
	return s.Wait(fmt.Sprintf("%q on %s", payload, topic), d, func(m Msg) bool {
		return m.Topic == topic && string(m.Payload) == payload
	})
}

// All returns the messages so far on topic.
func (s *Subscriber) All(topic string) []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Msg
	for _, m := range s.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// AllLocked is All for use inside a Wait predicate, which runs with the
// subscriber's lock held.
func (s *Subscriber) AllLocked(topic string) []Msg {
	var out []Msg
	for _, m := range s.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func (s *Subscriber) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, m := range s.msgs {
		if i == 200 {
			fmt.Fprintf(&b, "... %d more\n", len(s.msgs)-i)
			break
		}
		p := string(m.Payload)
		if len(p) > 120 {
			p = p[:120] + "…(" + strconv.Itoa(len(m.Payload)) + " bytes)"
		}
		fmt.Fprintf(&b, "  retained=%v %s %s\n", m.Retained, m.Topic, p)
	}
	return b.String() + s.stderr.String()
}

// ConnArgs are the mosquitto_sub and mosquitto_pub options that reach the
// Broker.
func (b *Broker) ConnArgs() []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port)}
}

// Link is a TCP forwarder between publishers and a Broker that can be cut,
// to make the Broker unreachable without stopping it (subscribers on the
// Broker directly keep their subscriptions).
type Link struct {
	t      testing.TB
	l      net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
}

// NewLink listens on a free port and forwards to target (host:port) once
// SetUp(true); it starts down.
func NewLink(t testing.TB, target string) *Link {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &Link{t: t, l: l, target: target}
	go k.accept()
	t.Cleanup(func() { l.Close(); k.SetUp(false) })
	return k
}

// URL is the Link's address as clipd's [mqtt] broker key takes it.
func (k *Link) URL() string { return "mqtt://" + k.l.Addr().String() }

// SetUp lets connections through (true) or cuts those open and refuses
// new ones (false).
func (k *Link) SetUp(up bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.up = up
	if !up {
		for _, c := range k.conns {
			c.Close()
		}
		k.conns = nil
	}
}

func (k *Link) accept() {
	for {
		c, err := k.l.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		if !k.up {
			k.mu.Unlock()
			c.Close()
			continue
		}
		d, err := net.Dial("tcp", k.target)
		if err != nil {
			k.mu.Unlock()
			c.Close()
			continue
		}
		k.conns = append(k.conns, c, d)
		k.mu.Unlock()
		go func() { io.Copy(d, c); d.Close() }()
		go func() { io.Copy(c, d); c.Close() }()
	}
}
