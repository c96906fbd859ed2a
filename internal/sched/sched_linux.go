package sched

import (
	"time"

	"golang.org/x/sys/unix"
)

func setThread(p Priority) error {
	// Pid 0 is the calling thread. Its nice value is kept: an
	// unprivileged caller may not lower it.
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return err
	}
	attr.Policy = policyOf(p)
	attr.Priority = 0
	return unix.SchedSetAttr(0, attr, 0)
}

func isMainThread() bool { return unix.Gettid() == unix.Getpid() }

func policyOf(p Priority) uint32 {
	if p == Idle {
		return unix.SCHED_IDLE
	}
	return unix.SCHED_NORMAL
}

// ThreadPriority returns the priority of thread (or process) tid: Idle
// for SCHED_IDLE, Normal for any other policy.
func ThreadPriority(tid int) (Priority, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return Normal, err
	}
	if attr.Policy == unix.SCHED_IDLE {
		return Idle, nil
	}
	return Normal, nil
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
