package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clipd/clipd/frame"
	"github.com/clipd/clipd/internal/sched"
)

// The ffmpeg and GStreamer sources run a helper process that writes frames
// to its standard output; pipeSource is what they share: starting the
// process with a pipe, a watchdog that kills it when frames stop, the read
// loop into the mailbox, and its stderr in the log.

const (
	// helperKillGrace is how long a helper may take to exit after SIGTERM
	// before it is killed.
	helperKillGrace = 2 * time.Second
	// stderrLinesPerWindow limits how many stderr lines of a helper reach
	// the log per stderrWindow; a broken stream can print one a frame.
	stderrLinesPerWindow = 10
	stderrWindow         = 10 * time.Second
)

type pipeSource struct {
	runner
	log          *slog.Logger
	stallTimeout time.Duration
	// priority is the next run's: the configured one until a run stalls
	// at Idle.
	priority sched.Priority
	seq      uint64
	// pid is the running helper's process id (0 between runs); tests use
	// it to kill the process from outside.
	pid atomic.Int64
}

func newPipeSource(log *slog.Logger, cfg Config) pipeSource {
	return pipeSource{runner: newRunner(), log: log, stallTimeout: cfg.StallTimeout, priority: cfg.Priority}
}

// frameReader fills buf (storage it may reuse) with the next frame and
// returns the frame's data and size.
type frameReader func(buf []byte) (data []byte, width, height int, err error)

// rawFrames reads fixed-size raw frames of one format and size.
func rawFrames(format frame.Format, width, height int) func(io.Reader) frameReader {
	size := width * height * 3
	switch format {
	case frame.YUYV:
		size = width * height * 2
	case frame.NV12:
		size = width * height * 3 / 2
	}
	return func(r io.Reader) frameReader {
		return func(buf []byte) ([]byte, int, int, error) {
			if len(buf) != size {
				buf = make([]byte, size)
			}
			_, err := io.ReadFull(r, buf)
			return buf, width, height, err
		}
	}
}

// pipeRun is one run of a helper.
type pipeRun struct {
	what   string // the helper's name, for the log and errors
	path   string
	args   []string
	format frame.Format
	read   func(io.Reader) frameReader
	gate   *rateGate

	// Filled in by runPipe.
	frames  int
	readErr error // why reading stopped (io.EOF: the helper closed its output)
	waitErr error // the helper's exit
	stalled bool  // the watchdog killed it
	stderr  *stderrLog
}

// runPipe runs the helper to its end, delivering its frames.
func (s *pipeSource) runPipe(run pipeRun) pipeRun {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, run.path, run.args...)
	// SIGTERM lets the helper close its input cleanly (an RTSP TEARDOWN,
	// a camera released); WaitDelay escalates to SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = helperKillGrace
	run.stderr = newStderrLog(run.what, s.log)
	// Once clipd stops the helper (Close, or a stall), it closes the pipe
	// under it, and ffmpeg reports "Broken pipe" for what it still had to
	// write: expected, not a warning.
	run.stderr.stopping = func() bool { return ctx.Err() != nil }
	cmd.Stderr = run.stderr
	// Our own pipe rather than StdoutPipe: Wait would close StdoutPipe
	// as soon as the helper exits, losing the frames still buffered in it.
	pr, pw, err := os.Pipe()
	if err != nil {
		run.waitErr = fmt.Errorf("pipe: %w", err)
		return run
	}
	cmd.Stdout = pw
	if perr := sched.Run(s.priority, func() { err = cmd.Start() }); perr != nil {
		s.log.Warn(run.what+" runs at normal CPU priority", "err", perr)
		s.priority = sched.Normal
		err = cmd.Start()
	}
	pw.Close()
	if err != nil {
		pr.Close()
		run.waitErr = fmt.Errorf("start %s: %w", run.path, err)
		return run
	}
	s.pid.Store(int64(cmd.Process.Pid))
	defer s.pid.Store(0)

	var lastFrame atomic.Int64
	lastFrame.Store(time.Now().UnixNano())
	var stalled atomic.Bool
	readerDone := make(chan struct{})
	var watchdog sync.WaitGroup
	watchdog.Add(1)
	go func() {
		defer watchdog.Done()
		tick := time.NewTicker(max(s.stallTimeout/4, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-readerDone:
				return
			case <-ctx.Done():
				// Close, or the reader's cancel; unblock a read that a
				// lingering grandchild could otherwise hold open.
				pr.Close()
				return
			case <-tick.C:
				idle := time.Since(time.Unix(0, lastFrame.Load()))
				if idle >= s.stallTimeout {
					stalled.Store(true)
					s.log.Warn(run.what+" stalled, killing it", "no_frame_for", idle.Round(time.Millisecond))
					cancel()
					pr.Close()
					return
				}
			}
		}
	}()

	read := run.read(pr)
	var spare []byte
	for {
		var data []byte
		var width, height int
		if data, width, height, run.readErr = read(spare); run.readErr != nil {
			break
		}
		spare = nil
		lastFrame.Store(time.Now().UnixNano())
		if !run.gate.admit(time.Now()) {
			spare = data
			continue
		}
		s.seq++
		f := &frame.Frame{Format: run.format, Width: width, Height: height, Data: data, Seq: s.seq, Time: time.Now()}
		if old := s.box.put(f); old != nil {
			spare = old.Data
		}
		run.frames++
	}
	close(readerDone)
	watchdog.Wait()
	pr.Close()
	run.waitErr = cmd.Wait()
	run.stalled = stalled.Load()
	if run.stalled && s.priority != sched.Normal && !s.closing() {
		// Busy processes at normal priority can starve an idle helper
		// outright; a stall for any other reason costs nothing at normal.
		s.log.Warn(run.what + " stalled at " + s.priority.String() + " CPU priority: it runs at normal priority from now on")
		s.priority = sched.Normal
	}
	return run
}

// endOf says how a run ended where that does not depend on the helper:
// Close, a stall, a failed exit. decided is false for a clean exit, which
// each source judges for itself.
func (s *pipeSource) endOf(run pipeRun) (decided bool, err error) {
	switch {
	case s.closing():
		return true, nil
	case run.stalled:
		return true, fmt.Errorf("no frame for %v", s.stallTimeout)
	case errors.Is(run.readErr, io.ErrUnexpectedEOF):
		s.box.corrupt()
		s.log.Debug("last frame was cut short")
	}
	if run.waitErr != nil {
		return true, fmt.Errorf("%s: %w%s", run.what, run.waitErr, run.stderr.lastLine())
	}
	return false, nil
}

// stderrLog forwards a helper's stderr lines to the log, at most
// stderrLinesPerWindow a window, and remembers the last line for error
// messages.
type stderrLog struct {
	what string
	log  *slog.Logger
	// stopping, if set, reports that clipd is stopping the helper: its
	// lines then go to the debug log.
	stopping func() bool

	mu          sync.Mutex
	partial     []byte
	last        string
	windowStart time.Time
	inWindow    int
	suppressed  int
}

func newStderrLog(what string, log *slog.Logger) *stderrLog {
	return &stderrLog{what: what, log: log}
}

func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexAny(l.partial, "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		if line != "" {
			l.emit(line)
		}
	}
	// A process printing without newlines must not grow this forever.
	if len(l.partial) > 4096 {
		l.emit(string(l.partial))
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

// harmlessLines are helper warnings that say nothing a user can act
// on; swscale prints this one for every JPEG-range (yuvj*) stream it
// converts, which is every MJPEG camera.
var harmlessLines = []string{"deprecated pixel format used, make sure you did set range correctly"}

func (l *stderrLog) emit(line string) {
	for _, harmless := range harmlessLines {
		if strings.Contains(line, harmless) {
			return
		}
	}
	l.last = line
	if l.stopping != nil && l.stopping() {
		l.log.Debug(l.what+" while stopping", "stderr", line)
		return
	}
	now := time.Now()
	if now.Sub(l.windowStart) >= stderrWindow {
		if l.suppressed > 0 {
			l.log.Warn(l.what+" output suppressed", "lines", l.suppressed)
		}
		l.windowStart, l.inWindow, l.suppressed = now, 0, 0
	}
	if l.inWindow >= stderrLinesPerWindow {
		l.suppressed++
		return
	}
	l.inWindow++
	l.log.Warn(l.what, "stderr", line)
}

// lastLine returns ": <last stderr line>" or "".
func (l *stderrLog) lastLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == "" {
		return ""
	}
	return ": " + l.last
}
