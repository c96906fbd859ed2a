// Package systemd speaks the service manager's protocols directly, without
// libsystemd: readiness and status notification (sd_notify), the service
// watchdog, and socket activation (sd_listen_fds). Every function is a
// no-op reporting sent=false / no listeners when clipd is not run by systemd,
// so the daemon calls them unconditionally.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends state (newline-separated VAR=value assignments, see
// sd_notify(3)) to the socket named by $NOTIFY_SOCKET. It returns sent=false
// and no error when the variable is unset, i.e. when not run by systemd as
// Type=notify.
func Notify(state string) (sent bool, err error) {
	return NotifySocket(os.Getenv("NOTIFY_SOCKET"), state)
}

// NotifySocket is Notify with an explicit socket address: a filesystem path
// or an abstract socket name starting with '@'. An empty address sends
// nothing.
func NotifySocket(addr, state string) (sent bool, err error) {
	if addr == "" {
		return false, nil
	}
	if addr[0] != '/' && addr[0] != '@' {
		// systemd also knows vsock: addresses (for VMs); clipd runs on the host.
		return false, fmt.Errorf("systemd: NOTIFY_SOCKET %q: only unix socket paths and @abstract names are supported", addr)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL byte).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("systemd: notify %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("systemd: notify %s: %w", addr, err)
	}
	return true, nil
}

// Ready tells systemd that start-up (or a reload) finished.
func Ready() (bool, error) { return Notify("READY=1") }

// Stopping tells systemd that shutdown began.
func Stopping() (bool, error) { return Notify("STOPPING=1") }

// Status sets the one-line status shown by `systemctl status`.
func Status(msg string) (bool, error) {
	// A newline would end the assignment and start an unintended one.
	return Notify("STATUS=" + strings.ReplaceAll(msg, "\n", " "))
}

// Reloading tells systemd that a configuration reload began; send Ready
// when it is done. systemd ≥ 253 (Type=notify-reload) requires the
// MONOTONIC_USEC timestamp to match the reload to the request.
func Reloading() (bool, error) {
	return Notify(reloadingState())
}

func reloadingState() string {
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicMicros(), 10)
}

func monotonicMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// WatchdogInterval returns the watchdog timeout systemd set for this process
// (WatchdogSec=), from $WATCHDOG_USEC, and ok=false when the watchdog is off
// or the variables belong to another process ($WATCHDOG_PID differs).
// Callers should ping at half this interval.
func WatchdogInterval() (time.Duration, bool) {
	d, err := watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	return d, err == nil && d > 0
}

var errNoWatchdog = errors.New("watchdog not enabled")

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, errNoWatchdog
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("systemd: WATCHDOG_PID %q: %w", pid, err)
		}
		if p != self {
			return 0, errNoWatchdog
		}
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || u <= 0 {
		return 0, fmt.Errorf("systemd: WATCHDOG_USEC %q is not a positive integer", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}
