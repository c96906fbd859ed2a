package systemd

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifyServer is a real unixgram socket standing in for systemd's.
func notifyServer(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn, wait time.Duration) (string, bool) {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(buf)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return "", false
		}
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Ready()
	if sent || err != nil {
		t.Fatalf("Ready() = %v, %v; want false, nil", sent, err)
	}
}

func TestNotifyPathSocket(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	srv := notifyServer(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)

	for _, tc := range []struct {
		send func() (bool, error)
		want string
	}{
		{Ready, "READY=1"},
		{Stopping, "STOPPING=1"},
		{func() (bool, error) { return Status("2 cameras\nREADY=1") }, "STATUS=2 cameras READY=1"},
	} {
		sent, err := tc.send()
		if !sent || err != nil {
			t.Fatalf("send %q: %v, %v", tc.want, sent, err)
		}
		if got, ok := receive(t, srv, 5*time.Second); !ok || got != tc.want {
			t.Fatalf("received %q, want %q", got, tc.want)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	addr := fmt.Sprintf("@clipd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	srv := notifyServer(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	if sent, err := Ready(); !sent || err != nil {
		t.Fatalf("Ready() = %v, %v", sent, err)
	}
	if got, ok := receive(t, srv, 5*time.Second); got != "READY=1" || !ok {
		t.Fatalf("received %q", got)
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	srv := notifyServer(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	before := monotonicMicros()
	if sent, err := Reloading(); !sent || err != nil {
		t.Fatalf("Reloading() = %v, %v", sent, err)
	}
	after := monotonicMicros()
	got, _ := receive(t, srv, 5*time.Second)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("received %q", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Fatalf("MONOTONIC_USEC %q not within [%d, %d]", lines[1], before, after)
	}
}

func TestNotifyErrors(t *testing.T) {
	if _, err := NotifySocket(filepath.Join(t.TempDir(), "absent"), "READY=1"); err == nil {
		t.Error("no error for a socket nobody listens on")
	}
	if _, err := NotifySocket("vsock:2:1234", "READY=1"); err == nil || !strings.Contains(err.Error(), "vsock:2:1234") {
		t.Errorf("vsock address: err = %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := os.Getpid()
	cases := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, true},
		{"30000000", strconv.Itoa(self), 30 * time.Second, true},
		{"30000000", strconv.Itoa(self + 1), 0, false},
		{"abc", "", 0, false},
		{"-5", "", 0, false},
	}
	for _, tc := range cases {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, ok := WatchdogInterval()
		if got != tc.want || ok != tc.ok {
			t.Errorf("USEC=%q PID=%q: got %v, %v; want %v, %v", tc.usec, tc.pid, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	srv := notifyServer(t, addr)
	var healthy atomic.Bool
	healthy.Store(true)
	var unhealthyCalls atomic.Int32
	wd := &Watchdog{
		Interval:    40 * time.Millisecond,
		Healthy:     healthy.Load,
		Socket:      addr,
		OnUnhealthy: func() { unhealthyCalls.Add(1) },
	}
	if err := wd.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer wd.Close()

	for i := 0; i < 3; i++ {
		if got, ok := receive(t, srv, 5*time.Second); got != "WATCHDOG=1" || !ok {
			t.Fatalf("ping %d: received %q", i, got)
		}
	}

	healthy.Store(false)
	// A ping already past its health check may still arrive, late on a
	// loaded machine; drain until a quiet spell of several intervals.
	for {
		if _, ok := receive(t, srv, 300*time.Millisecond); !ok {
			break
		}
	}
	if got, ok := receive(t, srv, 200*time.Millisecond); ok {
		t.Fatalf("pinged %q while unhealthy", got)
	}
	if n := unhealthyCalls.Load(); n != 1 {
		t.Fatalf("OnUnhealthy called %d times, want 1", n)
	}

	healthy.Store(true)
	if got, ok := receive(t, srv, 5*time.Second); got != "WATCHDOG=1" || !ok {
		t.Fatalf("no ping after recovery (%q)", got)
	}
	wd.Close() // waits for the last ping to be counted
	if wd.Pings() < 4 || wd.Err() != nil {
		t.Fatalf("Pings() = %d, Err() = %v", wd.Pings(), wd.Err())
	}
}

func TestWatchdogDisabled(t *testing.T) {
	wd := &Watchdog{Healthy: func() bool { t.Error("Healthy called with the watchdog off"); return true }}
	if err := wd.Initialize(); err != nil {
		t.Fatal(err)
	}
	wd.Close()
}

// The child side of the socket-activation tests: run as a separate process
// so that the sockets arrive as real inherited descriptors 3, 4, ...
func TestMain(m *testing.M) {
	switch os.Getenv("CLIPD_SYSTEMD_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "serve":
		os.Exit(childServe())
	case "count":
		ls, err := NamedListeners()
		fmt.Printf("%d %v\n", len(ls), err)
		os.Exit(0)
	}
}

// childServe accepts one connection on each passed socket and answers with
// the socket's name and whether the activation variables are still set.
func childServe() int {
	ls, err := NamedListeners()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	leftover := os.Getenv("LISTEN_FDS") + os.Getenv("LISTEN_PID") + os.Getenv("LISTEN_FDNAMES")
	for _, l := range ls {
		conn, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(conn, "%s env=%q\n", l.Name, leftover)
		conn.Close()
		l.Close()
	}
	return 0
}

// startActivated runs the test binary the way systemd starts a socket-
// activated service: the sockets as fds 3.., LISTEN_PID set to the child's
// own pid (by a shell that then execs, keeping its pid).
func startActivated(t *testing.T, mode, pid string, env []string, files ...*os.File) *exec.Cmd {
	t.Helper()
	script := `LISTEN_PID=$$ exec "$0" "$@"`
	if pid != "" {
		script = `LISTEN_PID=` + pid + ` exec "$0" "$@"`
	}
	cmd := exec.Command("/bin/sh", "-c", script, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "CLIPD_SYSTEMD_TEST_CHILD="+mode), env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	return cmd
}

func listenerFile(t *testing.T, path string) *os.File {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	// The child now owns the socket; closing our copy must keep its path.
	l.SetUnlinkOnClose(false)
	l.Close()
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "results.sock"), filepath.Join(dir, "control.sock")}
	files := []*os.File{listenerFile(t, paths[0]), listenerFile(t, paths[1])}

	cmd := startActivated(t, "serve", "", []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=results:control"}, files...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for i, want := range []string{"results", "control"} {
		conn, err := net.Dial("unix", paths[i])
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil {
			t.Fatalf("socket %s: %v", want, err)
		}
		if line != want+" env=\"\"\n" {
			t.Fatalf("socket %s answered %q", want, line)
		}
	}
	exited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

func TestSocketActivationForOtherProcess(t *testing.T) {
	f := listenerFile(t, filepath.Join(t.TempDir(), "s.sock"))
	cmd := startActivated(t, "count", "1", []string{"LISTEN_FDS=1"}, f)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "0 <nil>\n" {
		t.Fatalf("child took sockets meant for pid 1: %q", out)
	}
}

func TestSocketActivationRejectsDatagramSocket(t *testing.T) {
	conn := notifyServer(t, filepath.Join(t.TempDir(), "dgram"))
	f, err := conn.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := startActivated(t, "count", "", []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=clipd.socket"}, f)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "0 systemd: passed fd 3 (clipd.socket) is not a listening stream socket") {
		t.Fatalf("child said %q", out)
	}
}

func TestNotActivated(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	t.Setenv("LISTEN_PID", "")
	ls, err := Listeners()
	if len(ls) != 0 || err != nil {
		t.Fatalf("Listeners() = %v, %v", ls, err)
	}
}
