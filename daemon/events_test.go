package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/metrics"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/state"
	"github.com/clipd/clipd/web"
)

func nextEvent(t *testing.T, c *server.Client) server.StateEvent {
	t.Helper()
	var ev server.StateEvent
	m := next(t, c, "event")
	if err := json.Unmarshal(m.Raw, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// A target's state: a still picture gives one event (the first state) and
// then none; a new picture held for state_hold changes it, with a
// snapshot of the deciding frame on disk.
func TestStateEventsWithSnapshots(t *testing.T) {
	defer verifyNoLeaks(t)
	var scene atomic.Int64
	scene.Store(1)
	h := newHarness(t, cameraTOML("front", "pattern", "a.labels", `state_hold = "200ms"`)+`
[[camera.region]]
name = "left"
box = [0, 0, 32, 64]
`, func(h *harness) {
		h.sources.scene = &scene
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\nowl\nemu\nyak\nbee\nant\nfox\n")
	})
	c := h.dial()
	first := map[string]server.StateEvent{}
	for len(first) < 2 {
		ev := nextEvent(t, c)
		first[ev.Region] = ev
	}
	whole := first[""]
	if whole.Previous != "" || whole.Label == "" || whole.Snapshot == "" || whole.Since.After(whole.Time) {
		t.Fatalf("first event %+v", whole)
	}
	if filepath.Dir(whole.Snapshot) != filepath.Join(h.dir, "state", "snapshots") {
		t.Errorf("snapshot %s is not under state_dir", whole.Snapshot)
	}
	// Written off the classification path: moments after the event.
	var data []byte
	for deadline := time.Now().Add(guard); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if data, err = os.ReadFile(whole.Snapshot); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the event's snapshot: %v", err)
		}
	}
	if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
		t.Fatalf("the snapshot is not a JPEG: %v", err)
	}
	if filepath.Dir(first["left"].Snapshot) != filepath.Dir(whole.Snapshot) {
		t.Errorf("region snapshot %s not beside %s", first["left"].Snapshot, whole.Snapshot)
	}
	st := status(t, c)
	if cam := st.Cameras[0]; cam.FrameState == nil || cam.FrameState.Label != whole.Label || cam.Regions[0].State == nil {
		t.Errorf("status state %+v, regions %+v", cam.FrameState, cam.Regions)
	}

	// Nothing changes while the picture is still.
	quiet := time.Now().Add(time.Second)
	for time.Now().Before(quiet) {
		m := next(t, c, "result", "event")
		if m.Type == "event" {
			t.Fatalf("an event while nothing changed: %s", m.Raw)
		}
	}
	// Another picture: after state_hold a new state, unless the encoder
	// happens to give the same label; try a few pictures.
	for s := int64(2); ; s++ {
		scene.Store(s)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			m := next(t, c, "result", "event")
			if m.Type != "event" {
				continue
			}
			var ev server.StateEvent
			json.Unmarshal(m.Raw, &ev)
			if ev.Region == "" {
				if ev.Previous != whole.Label || ev.Time.Sub(ev.Since) < 200*time.Millisecond {
					t.Fatalf("second event %+v: want previous %q and the label held 200ms", ev, whole.Label)
				}
				h.stop()
				return
			}
		}
		if s > 20 {
			t.Fatal("no second event in 20 pictures")
		}
	}
}

func TestSnapshotCommand(t *testing.T) {
	defer verifyNoLeaks(t)
	h := regionsHarness(t, twoRegions(""))
	c := h.dial()
	resultOf(t, c)
	for _, target := range []string{"front", "front/left"} {
		m, err := c.Command(server.Command{Cmd: "snapshot", Camera: target})
		if err != nil {
			t.Fatalf("snapshot %s: %v", target, err)
		}
		var rep server.SnapshotReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(rep.JPEG))
		if err != nil || img.Bounds().Dx() != 64 || rep.Seq == 0 {
			t.Errorf("snapshot %s: %v, seq %d", target, err, rep.Seq)
		}
	}
	for target, want := range map[string]string{"back": "no camera", "front/gate": "no region"} {
		if _, err := c.Command(server.Command{Cmd: "snapshot", Camera: target}); err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("snapshot %s: %v, want %q", target, err, want)
		}
	}
	h.stop()
}

// A target whose every score is below its threshold publishes no result,
// yet it is classified: its MQTT state is refreshed like any other's, so
// that its sensor does not expire.
func TestQuietTargetStaysAliveOnMQTT(t *testing.T) {
	defer verifyNoLeaks(t)
	broker := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, broker.ConnArgs(), "clipd/box/#")
	h := newHarness(t, cameraTOML("front", "pattern", "a.labels", "threshold = 1.0")+
		fmt.Sprintf("[mqtt]\nbroker = %q\ndevice = \"box\"\nhome_assistant = false\n", broker.URL()), func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\n")
		h.mqttRefresh = 100 * time.Millisecond
	})
	c := h.dial()
	const topic = "clipd/box/front/state"
	n := 0
	sub.Wait("three refreshes of the state", guard, func(m mqtttest.Msg) bool {
		if m.Topic == topic {
			n++
		}
		return n >= 4
	})
	if st := status(t, c).Cameras[0]; st.BelowThresh == 0 || st.Classified == 0 {
		t.Errorf("status %+v: want frames classified, all below the threshold", st)
	}
	h.stop()
}

// A reload that restarts a camera carries its targets' states over: the
// same label since the same moment, no new first event. Status is read
// all along, as clients do, while the trackers change hands.
func TestReloadKeepsTargetStates(t *testing.T) {
	defer verifyNoLeaks(t)
	var scene atomic.Int64
	scene.Store(1)
	h := newHarness(t, "", func(h *harness) {
		h.sources.scene = &scene
		writeFile(t, filepath.Join(h.dir, "a.labels"), "dog\ncat\nowl\n")
	})
	c := h.dial()
	first := nextEvent(t, c)
	poller := h.dial()
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := poller.Command(server.Command{Cmd: "status"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 5; i++ {
		h.writeConfig(cameraTOML("front", "pattern", "a.labels", fmt.Sprintf("top_k = %d", 1+i%2)))
		h.hup()
		for r := resultOf(t, c); len(r.Top) != 1+i%2; r = resultOf(t, c) {
		}
	}
	close(stop)
	<-polled
	cam := status(t, c).Cameras[0]
	if cam.FrameState == nil || cam.FrameState.Label != first.Label || !cam.FrameState.Since.Equal(first.Since) {
		t.Errorf("state after the reloads %+v, want %q since %v", cam.FrameState, first.Label, first.Since)
	}
	h.stop()
}

// The outputs keep as many events as the web page and /api/events may
// ask for, newest first.
func TestOutputsKeepWebMaxEvents(t *testing.T) {
	m, err := metrics.New(metrics.Options{Log: discardLogger(), Snapshot: func() metrics.Snapshot { return metrics.Snapshot{} }})
	if err != nil {
		t.Fatal(err)
	}
	conf := config.Default()
	conf.Snapshots.Dir = t.TempDir()
	o, err := newOutputs(conf, mqtt.Options{}, discardLogger(), func(server.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	o.metrics = m
	defer o.close()
	for i := range web.MaxEvents + 50 {
		o.event(state.Event{Camera: "front", Label: fmt.Sprint(i)}, nil, nil)
	}
	got := o.latest(web.MaxEvents + 1)
	if len(got) != web.MaxEvents || got[0].Label != fmt.Sprint(web.MaxEvents+49) || got[len(got)-1].Label != "50" {
		t.Errorf("kept %d events, newest %q, oldest %q; want %d, the newest first", len(got), got[0].Label, got[len(got)-1].Label, web.MaxEvents)
	}
}
