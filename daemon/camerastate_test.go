package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/capture"
	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/server"
)

// cameraMessage reads until a camera message for name.
func cameraMessage(t *testing.T, c *server.Client, name string) server.CameraState {
	t.Helper()
	for {
		m := next(t, c, "camera")
		var cs server.CameraState
		if err := m.Decode(&cs); err != nil {
			t.Fatal(err)
		}
		if cs.Camera == name {
			return cs
		}
	}
}

// waitStatus polls status until ok says the camera is as wanted.
func waitStatus(t *testing.T, c *server.Client, what string, ok func(server.CameraStatus) bool) server.CameraStatus {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		st := status(t, c)
		if len(st.Cameras) == 1 && ok(st.Cameras[0]) {
			return st.Cameras[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s: %+v", what, st.Cameras)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A camera whose device does not exist (the real V4L2 source, which waits
// for it) is serving-but-retrying: the log says it waits and why, never
// that it started; status and a camera message say retrying.
func TestMissingDeviceIsRetryingNotStarted(t *testing.T) {
	defer verifyNoLeaks(t)
	const device = "/dev/clipd-test-video9"
	h := newHarness(t, cameraTOML("front", device, "a.labels", ""), func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		h.openSource = func(cfg capture.Config, log *slog.Logger) (capture.Source, error) {
			cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 50*time.Millisecond
			return capture.Open(cfg, log)
		}
	})
	c := h.dial()
	if got := c.Hello().Cameras; len(got) != 1 || got[0] != "front" {
		t.Errorf("hello cameras %q", got)
	}
	cs := cameraMessage(t, c, "front")
	if cs.State != server.CameraRetrying || !strings.Contains(cs.Error, device) {
		t.Errorf("camera message %+v, want retrying with the device's error", cs)
	}
	cam := waitStatus(t, c, "retrying", func(s server.CameraStatus) bool { return s.State == server.CameraRetrying })
	if !strings.Contains(cam.LastError, device) || cam.LastErrorTime == "" || cam.CaptureFPS != 0 {
		t.Errorf("status of the missing camera: %+v", cam)
	}
	logs := h.logs.String()
	serving := strings.Index(logs, "msg=serving")
	waiting := strings.Index(logs, `msg="camera waiting for its source"`)
	if serving < 0 || waiting < serving || !strings.Contains(logs[waiting:], "source="+device) {
		t.Errorf("want serving, then camera waiting for its source with source=%s:\n%s", device, logs)
	}
	if strings.Contains(logs, "camera started") {
		t.Errorf("a camera without a frame was logged as started:\n%s", logs)
	}
	h.stop()
}

// A source that goes down and comes back: a camera message for each
// change, "camera started" only at the first frame, and status follows.
func TestCameraStateFollowsTheSource(t *testing.T) {
	defer verifyNoLeaks(t)
	h := newHarness(t, "", func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		h.sources.setDown("pattern", "open /dev/video9: no such file or directory")
	})
	c := h.dial()
	if cs := cameraMessage(t, c, "front"); cs.State != server.CameraRetrying || cs.Error != "open /dev/video9: no such file or directory" {
		t.Fatalf("first camera message %+v", cs)
	}
	if strings.Contains(h.logs.String(), "camera started") {
		t.Fatalf("camera started logged before a frame:\n%s", h.logs)
	}

	h.sources.setDown("pattern", "")
	if cs := cameraMessage(t, c, "front"); cs.State != server.CameraRunning || cs.Error != "" {
		t.Fatalf("camera message after the source came back: %+v", cs)
	}
	if n := strings.Count(h.logs.String(), `msg="camera started"`); n != 1 {
		t.Errorf("camera started logged %d times:\n%s", n, h.logs)
	}
	resultOf(t, c)
	cam := waitStatus(t, c, "rates", func(s server.CameraStatus) bool { return s.CaptureFPS > 0 && s.ClassifiedPerS > 0 })
	if cam.State != server.CameraRunning || cam.FPS != cam.ClassifiedPerS {
		t.Errorf("status of the running camera: %+v", cam)
	}
	// The fake source delivers a frame about every 5 ms.
	if cam.CaptureFPS < 20 || cam.CaptureFPS > 400 {
		t.Errorf("capture_fps %.1f, want about 200", cam.CaptureFPS)
	}

	h.sources.setDown("pattern", "device unplugged")
	if cs := cameraMessage(t, c, "front"); cs.State != server.CameraRetrying || cs.Error != "device unplugged" {
		t.Fatalf("camera message after unplugging: %+v", cs)
	}
	h.sources.setDown("pattern", "")
	if cs := cameraMessage(t, c, "front"); cs.State != server.CameraRunning {
		t.Fatalf("camera message after replugging: %+v", cs)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, `msg="camera started"`); n != 1 || !strings.Contains(logs, `msg="camera running again"`) {
		t.Errorf("want one camera started and a camera running again:\n%s", logs)
	}

	h.sources.end("pattern")
	if cs := cameraMessage(t, c, "front"); cs.State != server.CameraEnded {
		t.Fatalf("camera message at the end of the source: %+v", cs)
	}
	waitStatus(t, c, "ended", func(s server.CameraStatus) bool { return s.State == server.CameraEnded })
	h.stop()
}

// A labels file that stops parsing shows in status, with its line, while
// the previous set stays in use; fixing it clears it.
func TestStatusShowsALabelsFileThatFailsToParse(t *testing.T) {
	defer verifyNoLeaks(t)
	var labels string
	h := newHarness(t, "", func(h *harness) {
		labels = filepath.Join(h.dir, "a.labels")
		writeFile(t, labels, "dog\ncat\n")
	})
	c := h.dial()
	resultOf(t, c)
	if cam := status(t, c).Cameras[0]; cam.LabelsError != "" || cam.LabelsVersion != 1 {
		t.Fatalf("status before the edit: %+v", cam)
	}
	writeFile(t, labels, "dog\ncat\ndog\n")
	cam := waitStatus(t, c, "labels_error", func(s server.CameraStatus) bool { return s.LabelsError != "" })
	if !strings.Contains(cam.LabelsError, labels+":3: duplicate label") || cam.LabelsVersion != 1 {
		t.Errorf("status after a bad edit: labels_error %q, version %d", cam.LabelsError, cam.LabelsVersion)
	}
	writeFile(t, labels, "dog\nowl\n")
	cam = waitStatus(t, c, "the fixed labels", func(s server.CameraStatus) bool { return s.LabelsVersion == 2 })
	if cam.LabelsError != "" {
		t.Errorf("labels_error after the fix: %q", cam.LabelsError)
	}
	h.stop()
}

// statusSequence waits until the payloads on topic have included want, in
// order (others may come between).
func statusSequence(t *testing.T, sub *mqtttest.Subscriber, topic string, want ...string) {
	t.Helper()
	i := 0
	sub.Wait(fmt.Sprintf("%q on %s", want, topic), guard, func(m mqtttest.Msg) bool {
		if m.Topic == topic && string(m.Payload) == want[i] {
			i++
		}
		return i == len(want)
	})
}

// cameraUp reads clipd_camera_up for camera from /metrics.
func cameraUp(t *testing.T, addr, camera string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	prefix := `clipd_camera_up{camera="` + camera + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", prefix, body)
	return ""
}

// MQTT's camera status and clipd_camera_up follow the source, by one
// rule: online while it delivers, offline while it is retrying, and
// offline when a reload replaces it by a source that does not deliver.
func TestCameraOnlineFollowsTheSource(t *testing.T) {
	defer verifyNoLeaks(t)
	broker := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, broker.ConnArgs(), "clipd/box/#")
	addr := fmt.Sprintf("127.0.0.1:%d", mqtttest.FreePort(t))
	outputs := fmt.Sprintf("[mqtt]\nbroker = %q\ndevice = \"box\"\nhome_assistant = false\n[http]\nlisten = %q\n", broker.URL(), addr)
	h := newHarness(t, cameraTOML("front", "pattern", "a.labels", "")+outputs, func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
	})
	c := h.dial()
	const topic = "clipd/box/front/status"
	statusSequence(t, sub, topic, "online")
	if up := cameraUp(t, addr, "front"); up != "1" {
		t.Errorf("clipd_camera_up %s while MQTT says online", up)
	}

	h.sources.setDown("pattern", "device unplugged")
	statusSequence(t, sub, topic, "online", "offline")
	waitStatus(t, c, "retrying", func(s server.CameraStatus) bool { return s.State == server.CameraRetrying })
	if up := cameraUp(t, addr, "front"); up != "0" {
		t.Errorf("clipd_camera_up %s while the source is down", up)
	}
	h.sources.setDown("pattern", "")
	statusSequence(t, sub, topic, "online", "offline", "online")

	// The replacement's source never delivers: the old camera's online
	// must not stand for it.
	h.sources.setDown("pattern?seed=2", "no signal")
	h.writeConfig(cameraTOML("front", "pattern?seed=2", "a.labels", "") + outputs)
	h.hup()
	statusSequence(t, sub, topic, "online", "offline", "online", "offline")
	waitStatus(t, c, "the new source retrying", func(s server.CameraStatus) bool {
		return s.Source == "pattern?seed=2" && s.State == server.CameraRetrying
	})
	if up := cameraUp(t, addr, "front"); up != "0" {
		t.Errorf("clipd_camera_up %s while the new source is down", up)
	}
	h.stop()
}

// A labels edit that failed for a reason the file does not show (the
// encoder) is retried by a SIGHUP, without another edit.
func TestSIGHUPRetriesALabelsFileThatFailedToLoad(t *testing.T) {
	defer verifyNoLeaks(t)
	var labels string
	h := newHarness(t, "", func(h *harness) {
		labels = filepath.Join(h.dir, "a.labels")
		writeFile(t, labels, "dog\ncat\n")
	})
	c := h.dial()
	resultOf(t, c)
	h.enc.textFails.Store(true)
	writeFile(t, labels, "dog\ncat\nowl\n")
	cam := waitStatus(t, c, "labels_error", func(s server.CameraStatus) bool { return s.LabelsError != "" })
	if !strings.Contains(cam.LabelsError, "out of memory") || cam.LabelsVersion != 1 {
		t.Fatalf("status after the failed load: labels_error %q, version %d", cam.LabelsError, cam.LabelsVersion)
	}
	h.enc.textFails.Store(false)
	h.hup()
	cam = waitStatus(t, c, "the edit loaded", func(s server.CameraStatus) bool { return s.LabelsVersion == 2 })
	if cam.LabelsError != "" || cam.Labels != 3 {
		t.Errorf("status after the SIGHUP: labels_error %q, %d labels", cam.LabelsError, cam.Labels)
	}
	h.stop()
}

// A camera URL's password is in neither status nor the daemon's log.
func TestStatusAndLogHideTheSourcePassword(t *testing.T) {
	defer verifyNoLeaks(t)
	const source = "rtsp://admin:s3cret@cam.lan/stream1"
	h := newHarness(t, cameraTOML("front", source, "a.labels", ""), func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
	})
	c := h.dial()
	h.sources.setDown(source, "connection refused")
	cam := waitStatus(t, c, "retrying", func(s server.CameraStatus) bool { return s.State == server.CameraRetrying })
	if cam.Source != "rtsp://admin:xxxxx@cam.lan/stream1" {
		t.Errorf("status source %q", cam.Source)
	}
	h.sources.setDown(source, "")
	cameraMessage(t, c, "front")
	h.stop()
	if logs := h.logs.String(); strings.Contains(logs, "s3cret") || !strings.Contains(logs, "admin:xxxxx@cam.lan") {
		t.Errorf("the log shows the password, or no source:\n%s", logs)
	}
}
