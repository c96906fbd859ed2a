package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenFDsStart is SD_LISTEN_FDS_START: passed sockets begin at fd 3.
const listenFDsStart = 3

// Listener is a socket passed in by systemd socket activation, with the
// name given by FileDescriptorName= (default: the .socket unit's name).
type Listener struct {
	net.Listener
	Name string
}

// Listeners returns the sockets passed by systemd socket activation, in
// the order of the .socket unit's Listen lines; see NamedListeners.
func Listeners() ([]net.Listener, error) {
	named, err := NamedListeners()
	out := make([]net.Listener, len(named))
	for i := range named {
		out[i] = named[i].Listener
	}
	return out, err
}

// NamedListeners returns the stream sockets passed by systemd socket activation
// ($LISTEN_FDS, $LISTEN_PID, $LISTEN_FDNAMES), in order, and unsets those
// variables so that child processes do not take them for theirs. It returns
// nothing, without error, when the process was not socket-activated.
func NamedListeners() ([]Listener, error) {
	fds := os.Getenv("LISTEN_FDS")
	pid := os.Getenv("LISTEN_PID")
	names := os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDNAMES")
	n, err := listenCount(fds, pid, os.Getpid())
	if err != nil || n == 0 {
		return nil, err
	}
	nameList := strings.Split(names, ":")
	out := make([]Listener, 0, n)
	for i := 0; i < n; i++ {
		fd := listenFDsStart + i
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(nameList) && nameList[i] != "" && names != "" {
			name = nameList[i]
		}
		// Once taken, the socket must not leak into processes clipd starts.
		syscall.CloseOnExec(fd)
		// net.FileListener accepts any unix socket, datagram ones included,
		// and would only fail at Accept; check up front.
		if listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || listening != 1 {
			for _, prev := range out {
				prev.Close()
			}
			return nil, fmt.Errorf("systemd: passed fd %d (%s) is not a listening stream socket", fd, name)
		}
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f)
		// FileListener duplicates the descriptor; the original is ours to close.
		f.Close()
		if err != nil {
			for _, prev := range out {
				prev.Close()
			}
			return nil, fmt.Errorf("systemd: passed fd %d (%s) is not a listening stream socket: %w", fd, name, err)
		}
		out = append(out, Listener{Listener: l, Name: name})
	}
	return out, nil
}

func listenCount(fds, pid string, self int) (int, error) {
	// Like sd_listen_fds, both variables are required: LISTEN_PID is what
	// tells our sockets from ones meant for an activated parent.
	if fds == "" || pid == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(pid)
	if err != nil {
		return 0, fmt.Errorf("systemd: LISTEN_PID %q: %w", pid, err)
	}
	if p != self {
		return 0, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("systemd: LISTEN_FDS %q is not a count", fds)
	}
	return n, nil
}
