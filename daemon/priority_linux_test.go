package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/sched"
	"github.com/clipd/clipd/server"
)

func TestPreprocessingRunsAtTheCapturePriority(t *testing.T) {
	for _, c := range []struct{ setting, want string }{
		{"idle", "idle"},
		{"normal", "normal"},
		{"auto", "normal"}, // the fake encoder is not ONNX Runtime
	} {
		t.Run(c.setting, func(t *testing.T) {
			defer verifyNoLeaks(t)
			h := newHarness(t, "", func(h *harness) {
				h.modelKeys = fmt.Sprintf("capture_priority = %q", c.setting)
				writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
			})
			cl := h.dial()
			resultOf(t, cl)
			if got := status(t, cl).Cameras[0].PreprocessPriority; got != c.want {
				t.Errorf("preprocess_priority %q, want %q", got, c.want)
			}
			if p, err := sched.ThreadPriority(os.Getpid()); err != nil || p != sched.Normal {
				t.Errorf("the process's main thread is at %v (%v)", p, err)
			}
			h.stop()
		})
	}
}

// Preprocessing that other processes starve at idle goes on at normal,
// and no frame is lost on the way.
func TestStarvedPreprocessingMovesToNormal(t *testing.T) {
	defer verifyNoLeaks(t)
	var judged atomic.Int64
	h := newHarness(t, "", func(h *harness) {
		h.modelKeys = `capture_priority = "idle"`
		h.starved = func(wall, cpu time.Duration) bool {
			judged.Add(1)
			return true
		}
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
	})
	cl := h.dial()
	var seqs []uint64
	for range starvedFrames + 3 {
		seqs = append(seqs, resultOf(t, cl).Seq)
	}
	h.waitLogCount("preprocessing was starved at idle CPU priority", 1)
	cam := waitStatus(t, cl, "normal priority", func(s server.CameraStatus) bool { return s.PreprocessPriority == "normal" })
	if n := judged.Load(); n != starvedFrames {
		t.Errorf("%d frames judged for starvation, want %d: only those at idle are", n, starvedFrames)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("results out of order across the move: %v", seqs)
		}
	}
	if cam.Classified < uint64(len(seqs)) {
		t.Errorf("classified %d, results seen %d", cam.Classified, len(seqs))
	}
	if strings.Count(h.logs.String(), "preprocessing was starved") != 1 {
		t.Errorf("the move was logged more than once:\n%s", h.logs.String())
	}
	h.stop()
}
