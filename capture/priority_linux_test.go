package capture

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/sched"
)

// helperPriority is the priority every thread of process pid runs at,
// as the kernel reports it; the test fails if the threads disagree.
func helperPriority(t *testing.T, pid int) sched.Priority {
	t.Helper()
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of helper %d: %v", pid, err)
	}
	var first sched.Priority
	for i, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			t.Fatal(err)
		}
		p, err := sched.ThreadPriority(tid)
		if err != nil {
			t.Fatalf("priority of thread %d of helper %d: %v", tid, pid, err)
		}
		if i == 0 {
			first = p
		} else if p != first {
			t.Fatalf("helper %d: thread %d at %v, thread %s at %v", pid, tid, p, tasks[0].Name(), first)
		}
	}
	return first
}

func TestFFmpegRunsAtTheConfiguredPriority(t *testing.T) {
	needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "clip.mkv", "64x48", 25, 1)
	for _, want := range []sched.Priority{sched.Idle, sched.Normal} {
		s := openFFmpeg(t, Config{Source: video, Loop: true, Priority: want})
		nextFrames(t, s, 2)
		if got := helperPriority(t, int(s.pid.Load())); got != want {
			t.Errorf("ffmpeg asked to run at %v runs at %v", want, got)
		}
		s.Close()
	}
	if p, err := sched.ThreadPriority(os.Getpid()); err != nil || p != sched.Normal {
		t.Errorf("the test process itself is at %v (%v): an idle helper's priority leaked", p, err)
	}
}

func TestFFmpegStalledAtIdleRestartsAtNormal(t *testing.T) {
	real := needFFmpeg(t)
	video := makeVideo(t, t.TempDir(), "short.mkv", "64x48", 25, 0.2) // 5 frames
	s := openFFmpeg(t, fastRetry(Config{
		Source: video, Width: 64, Height: 48, Unthrottled: true, Priority: sched.Idle,
		FFmpegPath: stallingFFmpeg(t, real), StallTimeout: 300 * time.Millisecond,
	}))
	nextFrames(t, s, 5)
	if got := helperPriority(t, int(s.pid.Load())); got != sched.Idle {
		t.Fatalf("first run at %v, want idle", got)
	}
	nextFrames(t, s, 10)
	if st := s.Stats(); st.Restarts < 1 {
		t.Fatalf("stats %+v: want a restart after the stall", st)
	}
	if got := helperPriority(t, int(s.pid.Load())); got != sched.Normal {
		t.Errorf("run after a stall at idle is at %v, want normal", got)
	}
}
