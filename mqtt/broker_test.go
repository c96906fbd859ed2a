package mqtt

import (
	"bufio"
	"bytes"
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
)

// The tests run a real mosquitto (Debian's mosquitto and mosquitto-clients,
// installed by `make deps`), started here on 127.0.0.1 and a free port.

func lookTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Debian installs the broker in /usr/sbin, which a user's PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install mosquitto and mosquitto-clients (make deps)", name)
	return ""
}

// diesWithTest makes the kernel kill a helper process when the test
// binary dies, so that a crashed test leaves no broker running.
func diesWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type broker struct {
	t      testing.TB
	dir    string
	port   int
	conf   string
	log    *syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// startBroker runs mosquitto with a plain listener on a free port; extra
// lines are appended to its configuration (more listeners, TLS).
func startBroker(t testing.TB, extra ...string) *broker {
	t.Helper()
	b := &broker{t: t, dir: t.TempDir(), port: freePort(t), log: &syncBuffer{}}
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	lines := []string{
		// Each listener has its own authentication (the TLS test adds
		// listeners that require a password or a client certificate).
		"per_listener_settings true",
		fmt.Sprintf("listener %d 127.0.0.1", b.port),
		"allow_anonymous true",
		// Losing retained messages on a restart is the worst case the
		// publisher must repair by republishing.
		"persistence false",
		// A subscriber in a test must not lose what the publisher sent.
		"max_queued_messages 0",
		"max_inflight_messages 1000",
		// When run as root mosquitto drops to this user; staying the
		// test's user keeps the temporary files readable.
		"user " + name,
		"log_dest stderr",
		"log_type error", "log_type warning", "log_type notice",
	}
	lines = append(lines, extra...)
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) url() string { return fmt.Sprintf("mqtt://127.0.0.1:%d", b.port) }

func (b *broker) start() {
	b.t.Helper()
	b.cmd = exec.Command(lookTool(b.t, "mosquitto"), "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.SysProcAttr = diesWithTest()
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
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), time.Second)
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
			b.t.Fatalf("mosquitto not listening on %d after 10s:\n%s", b.port, b.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the broker with SIGKILL, as a crash would.
func (b *broker) kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
	b.cmd = nil
}

func (b *broker) stop() {
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

// msg is one message as mosquitto_sub printed it.
type msg struct {
	retained bool
	topic    string
	payload  []byte
}

// subscriber is a mosquitto_sub process: an MQTT client that is not Paho,
// reading what the publisher really put on the broker.
type subscriber struct {
	t      testing.TB
	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []msg
	stderr *syncBuffer
	cmd    *exec.Cmd
	args   []string
}

// subscribe starts mosquitto_sub on the topics and returns once it is
// subscribed (it has seen a marker published after it started).
func subscribe(t testing.TB, connArgs []string, topics ...string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, stderr: &syncBuffer{}, args: connArgs}
	s.cond = sync.NewCond(&s.mu)
	args := append([]string{"-F", "%r %t %x", "-q", "1", "-t", "clipd-test/ready"}, connArgs...)
	for _, tp := range topics {
		args = append(args, "-t", tp)
	}
	s.cmd = exec.Command(lookTool(t, "mosquitto_sub"), args...)
	s.cmd.SysProcAttr = diesWithTest()
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
		pub := exec.Command(lookTool(t, "mosquitto_pub"), append([]string{"-t", "clipd-test/ready", "-m", marker}, connArgs...)...)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		if s.waitQuiet(func(m msg) bool { return m.topic == "clipd-test/ready" && string(m.payload) == marker }, 200*time.Millisecond) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub did not subscribe within 10s: %s", s.stderr)
		}
	}
}

func (s *subscriber) read(r io.Reader, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) < 2 {
			continue
		}
		m := msg{retained: f[0] == "1", topic: f[1]}
		if len(f) == 3 {
			m.payload, _ = hex.DecodeString(f[2])
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

// waitQuiet waits up to d for a message matching pred, without failing.
func (s *subscriber) waitQuiet(pred func(msg) bool, d time.Duration) bool {
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

// wait fails the test unless a message matching pred arrives within d.
func (s *subscriber) wait(what string, d time.Duration, pred func(msg) bool) msg {
	s.t.Helper()
	var found msg
	if !s.waitQuiet(func(m msg) bool {
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

// waitPayload waits for a message on topic with exactly payload.
func (s *subscriber) waitPayload(topic, payload string, d time.Duration) msg {
	s.t.Helper()
	return s.wait(fmt.Sprintf("%q on %s", payload, topic), d, func(m msg) bool {
		return m.topic == topic && string(m.payload) == payload
	})
}

// all returns the messages so far on topic.
func (s *subscriber) all(topic string) []msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []msg
	for _, m := range s.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func (s *subscriber) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, m := range s.msgs {
		if i == 200 {
			fmt.Fprintf(&b, "... %d more\n", len(s.msgs)-i)
			break
		}
		p := string(m.payload)
		if len(p) > 120 {
			p = p[:120] + "…(" + strconv.Itoa(len(m.payload)) + " bytes)"
		}
		fmt.Fprintf(&b, "  retained=%v %s %s\n", m.retained, m.topic, p)
	}
	return b.String() + s.stderr.String()
}

func (b *broker) connArgs() []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.port)}
}

// link is a TCP forwarder between publishers and a broker that can be cut,
// to make the broker unreachable without stopping it (subscribers on the
// broker directly keep their subscriptions).
type link struct {
	t      testing.TB
	l      net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
}

func newLink(t testing.TB, target string) *link {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &link{t: t, l: l, target: target}
	go k.accept()
	t.Cleanup(func() { l.Close(); k.setUp(false) })
	return k
}

func (k *link) url() string { return "mqtt://" + k.l.Addr().String() }

func (k *link) setUp(up bool) {
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

func (k *link) accept() {
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
