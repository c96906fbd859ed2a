// Package sched runs clipd's own capture work at a CPU priority below the
// encoder's. With ONNX Runtime on the CPU the encoder alone keeps both
// cores of a small box about 85 % busy; capture helpers and frame
// preprocessing at the same priority preempt its threads whenever a frame
// arrives, and every preemption stalls a whole intra-op batch. At Idle
// (Linux SCHED_IDLE) they run only in the encoder's gaps instead, and
// never preempt it.
package sched

import (
	"fmt"
	"runtime"
	"time"
)

// Priority is a CPU scheduling priority for clipd's own threads and the
// helper processes they start.
type Priority int

const (
	// Normal is the process's own priority.
	Normal Priority = iota
	// Idle runs only when a core would otherwise be idle (SCHED_IDLE).
	Idle
)

func (p Priority) String() string {
	switch p {
	case Normal:
		return "normal"
	case Idle:
		return "idle"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// Names are the priorities as configuration spells them.
var Names = []string{Normal.String(), Idle.String()}

// Parse returns the priority that String spells name; ok is false for
// any other name.
func Parse(name string) (p Priority, ok bool) {
	for _, p := range []Priority{Normal, Idle} {
		if p.String() == name {
			return p, true
		}
	}
	return Normal, false
}

// Run runs f on an OS thread of its own at priority p and returns when f
// does; processes that f starts inherit p. The thread is not reused
// afterwards: an unprivileged thread cannot return from SCHED_IDLE, so
// the Go runtime must not hand it to other goroutines. At Normal, f runs
// on the calling goroutine. The error says p could not be set (an
// unsupported system, or a kernel that refuses): f has not run then.
func Run(p Priority, f func()) error {
	if p == Normal {
		f()
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: a goroutine that exits locked takes its thread
		// with it.
		runtime.LockOSThread()
		if isMainThread() {
			// The runtime parks the main thread for good rather than
			// ending it, and the process's priority is shown as its
			// main thread's: leave that one alone. While this
			// goroutine holds it, Run's goroutine lands elsewhere.
			err := Run(p, f)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := setThread(p); err != nil {
			errc <- fmt.Errorf("set CPU priority %s: %w", p, err)
			return
		}
		defer func() { errc <- nil }()
		f()
	}()
	return <-errc
}

// ThreadCPU returns the CPU time the calling thread has used; it is
// meaningful only between two calls on one locked thread (inside Run).
func ThreadCPU() time.Duration { return threadCPU() }

// Starved says whether work that took wall time and cpu CPU time on its
// thread was mostly waiting for a core: other processes at normal
// priority keep every core busy, and a thread at Idle gets almost none.
// The encoder's gaps make an Idle thread take several times its CPU time
// (5–10× measured on two cores); only far beyond that is it starvation.
func Starved(wall, cpu time.Duration) bool {
	return wall >= starvedWall && wall >= starvedRatio*max(cpu, time.Millisecond)
}

const (
	starvedWall  = time.Second
	starvedRatio = 25
)
