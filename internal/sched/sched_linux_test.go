package sched

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRunIdleSetsThreadAndChildren(t *testing.T) {
	var inside, child Priority
	var insideErr, childErr error
	var cmd *exec.Cmd
	err := Run(Idle, func() {
		inside, insideErr = ThreadPriority(unix.Gettid())
		cmd = exec.Command("sleep", "5")
		if childErr = cmd.Start(); childErr == nil {
			child, childErr = ThreadPriority(cmd.Process.Pid)
		}
	})
	if cmd != nil && cmd.Process != nil {
		defer cmd.Wait()
		defer cmd.Process.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
	if insideErr != nil || childErr != nil {
		t.Fatal(insideErr, childErr)
	}
	if inside != Idle {
		t.Errorf("thread inside Run(Idle) is %v", inside)
	}
	if child != Idle {
		t.Errorf("a process started inside Run(Idle) is %v", child)
	}
	// The caller's thread and the process keep their priority.
	if p, err := ThreadPriority(os.Getpid()); err != nil || p != Normal {
		t.Errorf("process main thread: %v, %v", p, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if p, err := ThreadPriority(unix.Gettid()); err != nil || p != Normal {
		t.Errorf("caller's thread after Run: %v, %v", p, err)
	}
}

// The Go runtime must not give the idle thread to other goroutines: many
// goroutines scheduled after Run(Idle) returned all run at Normal.
func TestIdleThreadNotReused(t *testing.T) {
	for range 20 {
		if err := Run(Idle, func() {}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan Priority, 200)
	for range cap(done) {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			p, _ := ThreadPriority(unix.Gettid())
			done <- p
		}()
	}
	for range cap(done) {
		if p := <-done; p != Normal {
			t.Fatalf("a goroutine ran on a thread at %v after Run(Idle) returned", p)
		}
	}
}

func TestThreadCPUCountsWork(t *testing.T) {
	var spent, slept time.Duration
	Run(Idle, func() {
		start := ThreadCPU()
		time.Sleep(50 * time.Millisecond)
		slept = ThreadCPU() - start
		start = ThreadCPU()
		for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
		}
		spent = ThreadCPU() - start
	})
	if slept >= 20*time.Millisecond {
		t.Errorf("sleeping 50 ms counted %v of CPU", slept)
	}
	if spent <= 0 {
		t.Errorf("30 ms of spinning counted %v of CPU", spent)
	}
}
