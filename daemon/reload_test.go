package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/server"
)

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// verifyNoLeaks runs after the daemon has stopped: every goroutine it
// started (cameras, watchers, batcher, server, telemetry) must be gone.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// waitErrorContaining reads until an error message containing every want.
func waitErrorContaining(t *testing.T, c *server.Client, want ...string) server.Message {
	t.Helper()
	for {
		m := next(t, c, "error")
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(m.Message, w)
		}
		if ok {
			return m
		}
	}
}

// A camera whose new settings cannot be prepared keeps running on its
// old ones, is reported, and is retried by the next reload.
func TestReloadKeepsCameraWhoseReplacementFails(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		writeFile(t, filepath.Join(h.dir, "b.labels"), "owl\nowl\n")
	})
	c := h.dial()
	first := resultOf(t, c)
	if first.Camera != "front" || first.LabelsVersion != 1 {
		t.Fatalf("first result %+v", first)
	}

	h.writeConfig(cameraTOML("front", "pattern", "b.labels", "fps = 10"))
	h.hup()
	m := waitErrorContaining(t, c, "b.labels:2", "duplicate label", "keeps running with its previous settings")
	if m.Camera != "front" {
		t.Errorf("error %s does not name the camera", m.Raw)
	}
	// Results go on, from the same source, with the old labels.
	for i := 0; i < 3; i++ {
		r := resultOf(t, c)
		if r.Top[0].Label != "dog" && r.Top[0].Label != "cat" {
			t.Fatalf("result after the failed reload: %+v", r)
		}
	}
	if n := h.sources.count(); n != 1 {
		t.Errorf("%d sources opened; the running camera must not have been touched", n)
	}
	st := status(t, c)
	if st.Reload == nil || st.Reload.OK || len(st.Reload.Errors) != 1 || len(st.Cameras) != 1 {
		t.Fatalf("status after the failed reload: reload %+v, %d cameras", st.Reload, len(st.Cameras))
	}

	// Fixed, the same reload now applies: the retry needs no other change.
	writeFile(t, filepath.Join(h.dir, "b.labels"), "owl\nyak\n")
	h.hup()
	for {
		r := resultOf(t, c)
		if r.Top[0].Label == "owl" || r.Top[0].Label == "yak" {
			break
		}
	}
	if n := h.sources.count(); n != 2 {
		t.Errorf("%d sources opened, want 2 (fps changed, so the source restarts once)", n)
	}
	if st := status(t, c); st.Reload == nil || !st.Reload.OK {
		t.Errorf("status after the good reload: %+v", st.Reload)
	}
	h.stop()
}

// A source that cannot be opened leaves the old camera running on a
// reopened source of its own.
func TestReloadKeepsCameraWhoseSourceFails(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n") })
	c := h.dial()
	resultOf(t, c)
	h.sources.setFail("pattern?seed=2", errors.New("device busy"))
	h.writeConfig(cameraTOML("front", "pattern?seed=2", "a.labels", ""))
	h.hup()
	waitErrorContaining(t, c, "device busy", "keeps running")
	before := resultOf(t, c).Seq
	if r := resultOf(t, c); r.Seq <= before {
		t.Errorf("results stopped after the failed swap")
	}
	if st := status(t, c); len(st.Cameras) != 1 || st.Cameras[0].Source != "pattern" {
		t.Errorf("status cameras %+v, want front on its old source", st.Cameras)
	}
	h.stop()
}

// Changing only what classification does (top_k, labels) hands the
// running source to the new camera instead of reopening the device.
func TestReloadOfLabelsAndTopKKeepsTheSource(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\nowl\n")
		writeFile(t, filepath.Join(h.dir, "b.labels"), "emu\nyak\nbee\nant\n")
	})
	c := h.dial()
	resultOf(t, c)
	h.writeConfig(cameraTOML("front", "pattern", "b.labels", "top_k = 2"))
	h.hup()
	for {
		r := resultOf(t, c)
		if len(r.Top) == 2 && strings.Contains("emu yak bee ant", r.Top[0].Label) {
			break
		}
	}
	if n := h.sources.count(); n != 1 {
		t.Errorf("%d sources opened; a labels change must not reopen the source", n)
	}
	h.stop()
}

// An emptied config file, or one with no camera, changes nothing.
func TestReloadWithoutCamerasChangesNothing(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\n") })
	c := h.dial()
	resultOf(t, c)
	writeFile(t, h.conf, "")
	h.hup()
	waitErrorContaining(t, c, "no [[camera]] tables", "nothing changed")
	resultOf(t, c)
	if st := status(t, c); len(st.Cameras) != 1 {
		t.Errorf("%d cameras after reloading an empty file", len(st.Cameras))
	}
	h.stop()
}

// A labels path that becomes a FIFO fails the reload at once; stopping
// still works.
func TestReloadWithLabelsFIFO(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\n") })
	c := h.dial()
	resultOf(t, c)
	fifo := filepath.Join(h.dir, "fifo.labels")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(cameraTOML("front", "pattern", "fifo.labels", "") + cameraTOML("back", "pattern?seed=3", "fifo.labels", ""))
	h.hup()
	waitErrorContaining(t, c, "not a regular file (a FIFO)", `camera "front"`)
	waitErrorContaining(t, c, "not a regular file (a FIFO)", `camera "back"`, "not started")
	resultOf(t, c)
	if took := h.stop(); took > 3*time.Second {
		t.Errorf("stop took %v", took)
	}
}

// SIGTERM ends the daemon within its stop timeout while a reload is
// embedding a large label set.
func TestStopIsBoundedDuringAReload(t *testing.T) {
	defer verifyNoLeaks(t)
	var big strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&big, "label %d\n", i)
	}
	h := newHarness(t, "", func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\n")
		writeFile(t, filepath.Join(h.dir, "big.labels"), big.String())
	})
	c := h.dial()
	resultOf(t, c)
	// 3000 prompts in batches of 64, 200 ms a batch: about ten seconds.
	h.enc.textDelay.Store(int64(200 * time.Millisecond))
	calls := h.enc.textCalls.Load()
	h.writeConfig(cameraTOML("front", "pattern", "a.labels", "") + cameraTOML("big", "pattern?seed=5", "big.labels", ""))
	h.hup()
	for h.enc.textCalls.Load() == calls {
		time.Sleep(10 * time.Millisecond)
	}
	if took := h.stop(); took > 3*time.Second+time.Second {
		t.Errorf("stopping during a reload took %v; the stop timeout is 3s", took)
	}
}

// The same while the daemon is still starting.
func TestStopIsBoundedDuringStartup(t *testing.T) {
	defer verifyNoLeaks(t)
	var big strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&big, "label %d\n", i)
	}
	h := newHarness(t, cameraTOML("big", "pattern", "big.labels", ""), func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "big.labels"), big.String())
		h.enc.textDelay.Store(int64(200 * time.Millisecond))
	})
	for h.enc.textCalls.Load() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	if took := h.stop(); took > 4*time.Second {
		t.Errorf("stopping during start-up took %v; the stop timeout is 3s", took)
	}
}

// A model that starts producing NaN: clients get an error and no results,
// status counts the frames.
func TestNonFiniteEmbeddingsAreReported(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n") })
	c := h.dial()
	resultOf(t, c)
	h.enc.nan.Store(true)
	m := waitErrorContaining(t, c, "not scored", "NaN", "non_finite")
	if m.Camera != "front" {
		t.Errorf("error %s does not name the camera", m.Raw)
	}
	deadline := time.Now().Add(guard)
	for status(t, c).Cameras[0].NonFinite < 3 {
		if time.Now().After(deadline) {
			t.Fatal("non_finite does not count")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.stop()
}

// hello names every configured camera, even before it is ready.
func TestHelloListsConfiguredCameras(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) { writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\n") })
	if got := h.dial().Hello().Cameras; len(got) != 1 || got[0] != "front" {
		t.Errorf("hello cameras %q", got)
	}
	h.stop()
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// A reload applies the cameras and the log level; [mqtt], [http] and
// [history] are only warned about, and stay pending: the next reload
// warns again, and none of them starts.
func TestReloadLeavesOtherTablesPending(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		h.logLevel = new(slog.LevelVar)
		h.logLevel.Set(slog.LevelDebug)
	})
	c := h.dial()
	resultOf(t, c)
	h.writeConfig(cameraTOML("front", "pattern", "a.labels", "") + `
[log]
level = "warn"
[history]
enabled = true
[mqtt]
broker = "mqtt://127.0.0.1:1"
[http]
listen = "127.0.0.1:0"
`)
	const warning = `msg="these tables' changes take effect at the next restart" tables="[[history] [mqtt] [http]]"`
	h.hup()
	h.waitLogCount(warning, 1)
	if got := h.logLevel.Level(); got != slog.LevelWarn {
		t.Errorf("log level after the reload: %v, want WARN", got)
	}
	h.hup()
	h.waitLogCount(warning, 2)
	// At warn, the reloads' info lines are gone from the moment the
	// level changed.
	logs := h.logs.String()
	if !strings.Contains(logs, `msg="log level changed" level=warn`) || strings.Contains(logs, `msg="configuration reloaded"`) {
		t.Errorf("want the level change logged and no info line after it:\n%s", logs)
	}
	st := status(t, c)
	if st.MQTT != nil || st.History != nil || st.Reload == nil || !st.Reload.OK {
		t.Errorf("after two reloads: mqtt %+v, history %+v, reload %+v; want neither started and the reloads ok", st.MQTT, st.History, st.Reload)
	}
	if strings.Contains(h.logs.String(), "http listening") {
		t.Error("a reload started the [http] listener")
	}
	h.stop()
}

// A start-up that fails stops what it started within the stop timeout,
// even with an encoder call that never returns: the error says both.
func TestFailedStartStopsWithinTheStopTimeout(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, cameraTOML("front", "pattern", "a.labels", "")+cameraTOML("back", "pattern?seed=2", "a.labels", ""), func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\n")
		h.enc.hold = make(chan struct{})
		open := h.openSource
		var calls int64
		h.openSource = func(cfg capture.Config, log *slog.Logger) (capture.Source, error) {
			if cfg.Source != "pattern?seed=2" {
				// The model is loaded (its probe encoded): from now on
				// the encoder hangs.
				calls = h.enc.imageCalls.Load()
				h.enc.holding.Store(true)
				return open(cfg, log)
			}
			// Fail once front's first frame is stuck in the encoder.
			for h.enc.imageCalls.Load() == calls {
				time.Sleep(time.Millisecond)
			}
			return nil, errors.New("device busy")
		}
	})
	h.stopped = true
	defer close(h.enc.hold)
	start := time.Now()
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "device busy") || !strings.Contains(err.Error(), "shutdown took longer than 3s") {
			t.Errorf("Run: %v; want the camera's error and the shutdown's", err)
		}
		if took := time.Since(start); took > 3*time.Second+time.Second {
			t.Errorf("the failed start took %v to stop; the stop timeout is 3s", took)
		}
	case <-time.After(guard):
		t.Fatal("Run did not return after a failed start")
	}
}
