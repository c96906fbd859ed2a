package mqtt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/internal/syncbuf"
	"github.com/clipd/clipd/state"
)

// TestMain lets the SIGKILL test run a publisher in a child process: the
// test binary itself, re-executed with CLIPD_MQTT_TEST_CHILD set.
func TestMain(m *testing.M) {
	if broker := os.Getenv("CLIPD_MQTT_TEST_CHILD"); broker != "" {
		os.Exit(runChild(broker))
	}
	os.Exit(m.Run())
}

func runChild(broker string) int {
	cfg := Defaults()
	cfg.Broker, cfg.Device = broker, "child"
	p, err := New(cfg, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p.SetTargets([]string{"cam"}, []Target{{Camera: "cam", Labels: []string{"person"}}})
	select {} // until killed
}

func newTestPublisher(t *testing.T, cfg Config, opts Options) (*Publisher, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Version == "" {
		opts.Version = "test"
	}
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, logs
}

func testConfig(broker, device string) Config {
	c := Defaults()
	c.Broker, c.Device = broker, device
	return c
}

// waitStatus polls Status until cond holds.
func waitStatus(t *testing.T, p *Publisher, d time.Duration, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := p.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; status %+v", what, d, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(st Status) bool { return st.Connected }

var fleetCameras = []string{"front", "garden"}
var fleetTargets = []Target{
	{Camera: "front", Labels: []string{"person", "car"}},
	{Camera: "front", Region: "door", Labels: []string{"person", "package"}},
	{Camera: "garden", Labels: []string{"fox", "cat"}},
}

func eventFor(device string) state.Event {
	return state.Event{Camera: "front", Region: "door", Label: "person", Previous: "none", Score: 0.83,
		Since: time.Date(2025, 11, 27, 9, 41, 7, 120000000, time.UTC), Time: time.Date(2025, 11, 27, 9, 41, 8, 140000000, time.UTC),
		LabelsVersion: 3, Snapshot: "/var/lib/clipd/snapshots/" + device + ".jpg"}
}

// checkDevice waits until sub has seen everything a publisher of device
// puts on the broker after SetTargets, SetCameraOnline("front"), one
// event and one snapshot.
// With retainedOnly, only messages delivered as retained count (a new
// subscriber's view); withEvent also waits for the event.
func checkDevice(t *testing.T, sub *mqtttest.Subscriber, device string, snapshot []byte, d time.Duration, retainedOnly, withEvent bool) {
	t.Helper()
	base := "clipd/" + device
	keep := func(m mqtttest.Msg) bool { return !retainedOnly || m.Retained }
	sub.Wait(device+" availability online", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == base+"/availability" && string(m.Payload) == "online"
	})
	for _, topic := range []string{
		"sensor/" + device + "/front", "sensor/" + device + "/front_door", "sensor/" + device + "/garden",
		"event/" + device + "/front", "event/" + device + "/front_door", "event/" + device + "/garden",
		"image/" + device + "/front", "image/" + device + "/front_door", "image/" + device + "/garden",
		"binary_sensor/" + device + "/front", "binary_sensor/" + device + "/garden",
	} {
		m := sub.Wait("discovery "+topic, d, func(m mqtttest.Msg) bool {
			return keep(m) && m.Topic == "homeassistant/"+topic+"/config" && len(m.Payload) > 0
		})
		var p map[string]any
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		if uid, _ := p["unique_id"].(string); !strings.HasPrefix(uid, "clipd/"+device+"/") {
			t.Errorf("%s: unique_id %q", topic, uid)
		}
		if !ownedConfig(m.Payload, "clipd_"+device) {
			t.Errorf("%s: device block %v", topic, p["device"])
		}
	}
	m := sub.Wait("event types", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == "homeassistant/event/"+device+"/front_door/config" && len(m.Payload) > 0
	})
	var ev haEvent
	json.Unmarshal(m.Payload, &ev)
	if !reflect.DeepEqual(ev.EventTypes, []string{"person", "package", "none"}) || ev.StateTopic != base+"/front/door/event" {
		t.Errorf("event entity: %+v", ev)
	}
	sub.Wait("camera status", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == base+"/front/status" && string(m.Payload) == "online"
	})
	sub.Wait("garden offline until it delivers", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == base+"/garden/status" && string(m.Payload) == "offline"
	})
	want := eventFor(device)
	sub.Wait("state", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == base+"/front/door/state" &&
			string(m.Payload) == `{"label":"person","score":0.83,"since":"2025-11-27T09:41:07.12Z","labels_version":3}`
	})
	sub.Wait("snapshot", d, func(m mqtttest.Msg) bool {
		return keep(m) && m.Topic == base+"/front/door/snapshot" && bytes.Equal(m.Payload, snapshot)
	})
	if !withEvent {
		return
	}
	m = sub.Wait("event", d, func(m mqtttest.Msg) bool { return m.Topic == base+"/front/door/event" })
	if m.Retained {
		t.Errorf("event delivered as retained")
	}
	// The event is the socket's event body plus event_type.
	var got map[string]any
	json.Unmarshal(m.Payload, &got)
	if got["event_type"] != "person" {
		t.Errorf("event_type %v", got["event_type"])
	}
	delete(got, "event_type")
	var socket map[string]any
	body, _ := json.Marshal(want)
	json.Unmarshal(body, &socket)
	if !reflect.DeepEqual(got, socket) {
		t.Errorf("event payload %s\nwant the socket's %s", m.Payload, body)
	}
}

// Two clipd boxes (different device) on one broker; a subscriber sees
// both devices' availability, discovery, state, snapshots and events;
// after the broker is killed and restarted (losing every retained
// message) both resume and republish within 15 s; Close says offline.
func TestTwoDevicesOneBroker(t *testing.T) {
	b := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#", "homeassistant/#")
	devices := []string{"box-a", "box-b"}
	snapshot := []byte("\xff\xd8\xff\xe0 not really a JPEG \xff\xd9")
	pubs := map[string]*Publisher{}
	var logs []*syncbuf.Buffer
	for _, dev := range devices {
		p, l := newTestPublisher(t, testConfig(b.URL(), dev), Options{})
		pubs[dev] = p
		logs = append(logs, l)
		if err := p.SetTargets(fleetCameras, fleetTargets); err != nil {
			t.Fatal(err)
		}
		p.SetCameraOnline("front", true)
		p.PublishEvent(eventFor(dev))
		p.PublishSnapshot("front", "door", snapshot)
	}
	for _, dev := range devices {
		checkDevice(t, sub, dev, snapshot, 10*time.Second, false, true)
		waitStatus(t, pubs[dev], 5*time.Second, "connected", connected)
	}
	// What is retained is all there for a newcomer; events are not.
	late := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#", "homeassistant/#")
	for _, dev := range devices {
		checkDevice(t, late, dev, snapshot, time.Second, true, false)
		if got := late.All("clipd/" + dev + "/front/door/event"); len(got) != 0 {
			t.Errorf("event retained: %v", got)
		}
	}

	b.Kill()
	for _, dev := range devices {
		waitStatus(t, pubs[dev], 10*time.Second, dev+" sees the broker gone", func(st Status) bool {
			return !st.Connected && st.LastError != ""
		})
	}
	b.Start()
	restarted := time.Now()
	after := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#", "homeassistant/#")
	for _, dev := range devices {
		checkDevice(t, after, dev, snapshot, 15*time.Second-time.Since(restarted), false, false)
	}
	t.Logf("both devices republished %v after the broker restarted", time.Since(restarted).Round(time.Millisecond))
	// Events flow again.
	next := eventFor("box-a")
	next.Label, next.Previous = "package", "person"
	pubs["box-a"].PublishEvent(next)
	after.Wait("event after restart", 10*time.Second, func(m mqtttest.Msg) bool {
		return m.Topic == "clipd/box-a/front/door/event" && strings.Contains(string(m.Payload), `"event_type":"package"`)
	})

	pubs["box-a"].Close()
	after.WaitPayload("clipd/box-a/availability", "offline", 5*time.Second)
	if st := pubs["box-a"].Status(); st.Connected || st.Published == 0 {
		t.Errorf("after Close: %+v", st)
	}
	if pubs["box-b"].Status().Connected != true {
		t.Error("closing one publisher disturbed the other")
	}
	for _, l := range logs {
		if !strings.Contains(l.String(), "mqtt: connected") || !strings.Contains(l.String(), "connection lost") {
			t.Errorf("log lacks the connection changes:\n%s", l)
		}
	}
}

// A publisher killed with SIGKILL leaves its will: availability offline.
func TestWillOnSIGKILL(t *testing.T) {
	b := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/child/availability", "homeassistant/+/child/+/config")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "CLIPD_MQTT_TEST_CHILD="+b.URL())
	child.SysProcAttr = mqtttest.DiesWithTest()
	out := &syncbuf.Buffer{}
	child.Stdout, child.Stderr = out, out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	sub.WaitPayload("clipd/child/availability", "online", 10*time.Second)
	sub.Wait("the child's discovery", 10*time.Second, func(m mqtttest.Msg) bool {
		return m.Topic == "homeassistant/sensor/child/cam/config"
	})
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	m := sub.WaitPayload("clipd/child/availability", "offline", 10*time.Second)
	if m.Retained {
		t.Error("will delivered to a live subscriber as retained")
	}
	// ... and it is retained for those who come later.
	late := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/child/availability")
	if got := late.All("clipd/child/availability"); len(got) != 1 || string(got[0].Payload) != "offline" || !got[0].Retained {
		t.Errorf("retained availability after the kill: %+v (child output %s)", got, out)
	}
}

// While the broker is unreachable (from the start), events queue up to
// `queue`, the oldest are dropped and counted, and what is kept arrives in
// order once the broker can be reached.
func TestQueueOverflowWhileDisconnected(t *testing.T) {
	b := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#")
	k := mqtttest.NewLink(t, fmt.Sprintf("127.0.0.1:%d", b.Port))
	cfg := testConfig(k.URL(), "q")
	cfg.Queue = 5
	p, _ := newTestPublisher(t, cfg, Options{MaxBackoff: 500 * time.Millisecond})
	p.SetTargets([]string{"front"}, []Target{{Camera: "front", Labels: []string{"person"}}})
	for i := 1; i <= 12; i++ {
		p.PublishEvent(event(i))
	}
	st := waitStatus(t, p, 5*time.Second, "a failed connection attempt", func(st Status) bool { return st.LastError != "" })
	if st.Dropped != 7 || st.Connected || st.Queued < 5 {
		t.Fatalf("while unreachable: %+v, want 7 dropped, 5 events queued", st)
	}
	k.SetUp(true)
	sub.Wait("the last event", 10*time.Second, func(m mqtttest.Msg) bool {
		return m.Topic == "clipd/q/front/event" && strings.Contains(string(m.Payload), `"labels_version":12`)
	})
	var versions []uint64
	for _, m := range sub.All("clipd/q/front/event") {
		var ev state.Event
		json.Unmarshal(m.Payload, &ev)
		versions = append(versions, ev.LabelsVersion)
	}
	if !reflect.DeepEqual(versions, []uint64{8, 9, 10, 11, 12}) {
		t.Errorf("events delivered %v, want 8..12 in order", versions)
	}
	states := sub.All("clipd/q/front/state")
	if len(states) != 1 || !strings.Contains(string(states[0].Payload), `"labels_version":12`) {
		t.Errorf("states %v, want only the newest", states)
	}
	if st := waitStatus(t, p, 5*time.Second, "drained", func(st Status) bool { return st.Queued == 0 }); st.Dropped != 7 {
		t.Errorf("after reconnect: %+v", st)
	}
}

// Home Assistant's birth message brings discovery, availability and
// states again; removed targets lose their entities; a label reload
// republishes the event types; retained configs of this device that
// belong to no target any more (left over from a previous run) are
// deleted, those of other programs are not.
func TestHomeAssistantLifecycle(t *testing.T) {
	b := mqtttest.StartBroker(t)
	pub := func(topic, payload string, retain bool) {
		args := append(b.ConnArgs(), "-t", topic, "-m", payload, "-q", "1")
		if retain {
			args = append(args, "-r")
		}
		if out, err := exec.Command(mqtttest.LookTool(t, "mosquitto_pub"), args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	}
	stale := "homeassistant/sensor/ha/gone/config"
	foreign := "homeassistant/sensor/ha/zigbee/config"
	pub(stale, `{"name":"gone","device":{"identifiers":["clipd_ha"]},"origin":{"name":"clipd"}}`, true)
	pub(foreign, `{"name":"zigbee","device":{"identifiers":["clipd_ha"]},"origin":{"name":"zigbee2mqtt"}}`, true)

	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#", "homeassistant/#")
	p, _ := newTestPublisher(t, testConfig(b.URL(), "ha"), Options{BirthDelay: 100 * time.Millisecond})
	p.SetTargets(fleetCameras, fleetTargets)
	p.PublishEvent(eventFor("ha"))
	sub.WaitPayload(stale, "", 10*time.Second)
	doorSensor := "homeassistant/sensor/ha/front_door/config"
	sub.Wait("discovery", 10*time.Second, func(m mqtttest.Msg) bool { return m.Topic == doorSensor && len(m.Payload) > 0 })
	sub.Wait("state", 10*time.Second, func(m mqtttest.Msg) bool { return m.Topic == "clipd/ha/front/door/state" })

	configs := len(sub.All(doorSensor))
	states := len(sub.All("clipd/ha/front/door/state"))
	pub("homeassistant/status", "online", false)
	sub.Wait("discovery again after the birth message", 10*time.Second, func(m mqtttest.Msg) bool {
		return len(sub.AllLocked(doorSensor)) > configs
	})
	sub.Wait("state again after the birth message", 10*time.Second, func(m mqtttest.Msg) bool {
		return len(sub.AllLocked("clipd/ha/front/door/state")) > states
	})

	// A reload: the region is gone, front has a new label.
	targets := []Target{{Camera: "front", Labels: []string{"person", "car", "dog"}}, fleetTargets[2]}
	if err := p.SetTargets(fleetCameras, targets); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{doorSensor, "homeassistant/event/ha/front_door/config",
		"homeassistant/image/ha/front_door/config", "clipd/ha/front/door/state"} {
		sub.WaitPayload(topic, "", 10*time.Second)
	}
	sub.Wait("new event types", 10*time.Second, func(m mqtttest.Msg) bool {
		var ev haEvent
		return m.Topic == "homeassistant/event/ha/front/config" && json.Unmarshal(m.Payload, &ev) == nil &&
			reflect.DeepEqual(ev.EventTypes, []string{"person", "car", "dog", "none"})
	})
	// A snapshot and an event of the removed region that were under way
	// during the reload arrive after it: they must not re-create its
	// retained topics. The event of front after them goes out after
	// anything retained would have.
	dropped := p.Status().Dropped
	p.PublishSnapshot("front", "door", []byte("\xff\xd8 late \xff\xd9"))
	p.PublishEvent(eventFor("ha"))
	p.SetCameraOnline("front", true)
	p.PublishEvent(state.Event{Camera: "front", Label: "dog"})
	sub.Wait("front's event after the late ones", 10*time.Second, func(m mqtttest.Msg) bool {
		return m.Topic == "clipd/ha/front/event" && strings.Contains(string(m.Payload), `"label":"dog"`)
	})
	if got := p.Status().Dropped - dropped; got != 2 {
		t.Errorf("%d publishes of the removed region counted as dropped, want 2", got)
	}

	late := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#", "homeassistant/#")
	if got := late.All(foreign); len(got) != 1 {
		t.Errorf("another program's config was touched: %v", got)
	}
	for _, topic := range []string{stale, doorSensor, "clipd/ha/front/door/snapshot", "clipd/ha/front/door/state"} {
		if got := late.All(topic); len(got) != 0 {
			t.Errorf("%s still retained: %v", topic, got)
		}
	}
	if got := late.All("homeassistant/sensor/ha/front/config"); len(got) != 1 {
		t.Errorf("front's sensor not retained: %v", got)
	}
}

// Results go out only with publish_results, after the events queued
// before them.
func TestResults(t *testing.T) {
	b := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#")
	for _, enabled := range []bool{false, true} {
		dev := fmt.Sprintf("r%v", enabled)
		cfg := testConfig(b.URL(), dev)
		cfg.PublishResults = enabled
		p, _ := newTestPublisher(t, cfg, Options{})
		p.SetTargets([]string{"front"}, []Target{{Camera: "front"}})
		p.PublishResult("front", "", []byte(`{"seq":1,"top":[{"label":"person","score":0.9}]}`))
		p.PublishEvent(state.Event{Camera: "front", Label: "person"})
		sub.Wait(dev+" event", 10*time.Second, func(m mqtttest.Msg) bool { return m.Topic == "clipd/"+dev+"/front/event" })
		got := sub.All("clipd/" + dev + "/front/result")
		if enabled && (len(got) != 1 || string(got[0].Payload) != `{"seq":1,"top":[{"label":"person","score":0.9}]}`) {
			t.Errorf("publish_results: got %v", got)
		}
		if !enabled && len(got) != 0 {
			t.Errorf("results published without publish_results: %v", got)
		}
	}
}

// A broker that accepts TCP connections and never answers: the methods go
// on working and Close returns without waiting for the connect timeout.
func TestCloseWhileConnectingToAStalledBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p, _ := newTestPublisher(t, testConfig("mqtt://"+l.Addr().String(), "stalled"), Options{})
	c := <-accepted // the publisher is inside Connect now
	defer c.Close()
	p.SetTargets([]string{"front"}, []Target{{Camera: "front"}})
	p.PublishEvent(event(1))
	if st := p.Status(); st.Connected || st.Queued == 0 {
		t.Errorf("status while connecting: %+v", st)
	}
	p.Close()
	if st := p.Status(); st.Connected {
		t.Errorf("after Close: %+v", st)
	}
}

// A restart in the daemon's order: the new publisher connects (and sees
// the retained configs of the previous run) long before the daemon calls
// SetTargets, after embedding the labels. Home Assistant removes an entity
// on an empty config, losing its registry customisations, so the entities
// that still exist must never see one; the entity of a region removed
// while clipd was down must still be deleted.
func TestRestartKeepsCurrentEntities(t *testing.T) {
	b := mqtttest.StartBroker(t)
	first, _ := newTestPublisher(t, testConfig(b.URL(), "rs"), Options{})
	if err := first.SetTargets(fleetCameras, fleetTargets); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, first, 10*time.Second, "first run published", func(st Status) bool { return st.Connected && st.Queued == 0 })
	first.Close()

	sub := mqtttest.Subscribe(t, b.ConnArgs(), "homeassistant/#")
	second, _ := newTestPublisher(t, testConfig(b.URL(), "rs"), Options{})
	// All 11 retained configs of the first run reach the publisher.
	deadline := time.Now().Add(10 * time.Second)
	for {
		second.mu.Lock()
		n := len(second.leftover)
		second.mu.Unlock()
		if n == 11 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leftover configs noted, want 11", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The region front/door is gone in the new configuration.
	targets := []Target{fleetTargets[0], fleetTargets[2]}
	if err := second.SetTargets(fleetCameras, targets); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"sensor/rs/front_door", "event/rs/front_door", "image/rs/front_door"} {
		sub.WaitPayload("homeassistant/"+obj+"/config", "", 10*time.Second)
	}
	current := []string{"sensor/rs/front", "event/rs/front", "image/rs/front", "sensor/rs/garden", "event/rs/garden",
		"image/rs/garden", "binary_sensor/rs/front", "binary_sensor/rs/garden"}
	for _, obj := range current {
		topic := "homeassistant/" + obj + "/config"
		// Republished by SetTargets (not retained when delivered live).
		sub.Wait(topic+" published by the second run", 10*time.Second, func(m mqtttest.Msg) bool {
			return m.Topic == topic && !m.Retained && len(m.Payload) > 0
		})
		for _, m := range sub.All(topic) {
			if len(m.Payload) == 0 {
				t.Errorf("%s: an empty config deleted a current entity", topic)
			}
		}
	}
}

// A target whose frames all score below its threshold stays in state
// none, so no event and no result marks it; MarkClassified alone keeps its
// retained state refreshed (and its sensor from expiring), while a target
// that is not classified any more is left to expire.
func TestMarkClassifiedKeepsIdleTargetsFresh(t *testing.T) {
	b := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, b.ConnArgs(), "clipd/#")
	refresh := 200 * time.Millisecond
	p, _ := newTestPublisher(t, testConfig(b.URL(), "mk"), Options{StateRefresh: refresh})
	p.SetTargets([]string{"front"}, []Target{{Camera: "front"}, {Camera: "front", Region: "door"}})
	for _, region := range []string{"", "door"} {
		p.PublishEvent(state.Event{Camera: "front", Region: region, Label: state.None, Previous: ""})
	}
	idle, stuck := "clipd/mk/front/door/state", "clipd/mk/front/state"
	sub.Wait("the first states", 10*time.Second, func(m mqtttest.Msg) bool {
		return len(sub.AllLocked(idle)) > 0 && len(sub.AllLocked(stuck)) > 0
	})
	stop := time.Now().Add(10 * refresh)
	for time.Now().Before(stop) {
		p.MarkClassified("front", "door") // every frame below the threshold
		time.Sleep(refresh / 10)
	}
	sub.Wait("the idle target's state refreshed", 10*time.Second, func(m mqtttest.Msg) bool {
		return len(sub.AllLocked(idle)) >= 4
	})
	for _, m := range sub.All(idle) {
		if !strings.Contains(string(m.Payload), `"label":"none"`) {
			t.Errorf("refreshed state %s", m.Payload)
		}
	}
	if got := sub.All(stuck); len(got) != 1 {
		t.Errorf("the target no longer classified was refreshed: %d states", len(got))
	}
}
