package mqtt

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/clipd/clipd/state"
)

// idle is a Publisher whose goroutine never runs: the tests drive next and
// requeue by hand, as serve does.
func idle(t *testing.T, edit func(*Config)) *Publisher {
	t.Helper()
	cfg := validConfig()
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newPublisher(cfg, Options{Version: "1.2.3"}, "tcp://127.0.0.1:1", secrets{})
}

func drain(p *Publisher) []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []message
	for {
		m, ok := p.next()
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

func topicsOf(ms []message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.topic)
	}
	return out
}

func event(i int) state.Event {
	return state.Event{Camera: "front", Label: "person", Previous: "none", Score: 0.9,
		Since: time.Unix(int64(i), 0).UTC(), Time: time.Unix(int64(i), 0).UTC(), LabelsVersion: uint64(i)}
}

func TestOrderAndCoalescing(t *testing.T) {
	p := idle(t, nil)
	if err := p.SetTargets([]string{"front"}, []Target{{Camera: "front", Labels: []string{"person"}}}); err != nil {
		t.Fatal(err)
	}
	p.PublishEvent(event(1))
	p.PublishEvent(event(2))
	p.SetCameraOnline("front", true)
	got := topicsOf(drain(p))
	want := []string{
		"clipd/box/availability",
		"homeassistant/binary_sensor/box/front/config",
		"homeassistant/event/box/front/config",
		"homeassistant/image/box/front/config",
		"homeassistant/sensor/box/front/config",
		"clipd/box/front/status",
		"clipd/box/front/state", // once: the latest state only
		"clipd/box/front/event",
		"clipd/box/front/event",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order\n got %q\nwant %q", got, want)
	}
	// Unchanged targets publish nothing again.
	p.SetTargets([]string{"front"}, []Target{{Camera: "front", Labels: []string{"person"}}})
	if ms := drain(p); len(ms) != 0 {
		t.Errorf("unchanged SetTargets published %q", topicsOf(ms))
	}
}

func TestQueueDropsOldest(t *testing.T) {
	p := idle(t, func(c *Config) { c.Queue = 5 })
	for i := 1; i <= 12; i++ {
		p.PublishEvent(event(i))
	}
	if st := p.Status(); st.Dropped != 7 || st.Connected {
		t.Errorf("status %+v, want 7 dropped", st)
	}
	var versions []uint64
	for _, m := range drain(p) {
		if m.topic == "clipd/box/front/event" {
			var ev state.Event
			json.Unmarshal(m.payload, &ev)
			versions = append(versions, ev.LabelsVersion)
		}
	}
	if !slices.Equal(versions, []uint64{8, 9, 10, 11, 12}) {
		t.Errorf("kept events %v, want the newest five", versions)
	}
}

func TestQueueByteBound(t *testing.T) {
	p := idle(t, func(c *Config) { c.PublishResults = true; c.QueueBytes = 4096 })
	result := make([]byte, 1000)
	for range 10 {
		p.PublishResult("front", "", result)
	}
	p.mu.Lock()
	n, bytes := len(p.queue), p.queueBytes
	p.mu.Unlock()
	if n != 4 || bytes != 4000 || p.Status().Dropped != 6 {
		t.Errorf("queue %d messages, %d bytes, %d dropped; want 4, 4000, 6", n, bytes, p.Status().Dropped)
	}
	p.PublishResult("front", "", make([]byte, 5000)) // larger than the whole bound
	if p.Status().Dropped != 7 {
		t.Errorf("oversized result not dropped")
	}
}

func TestRequeueKeepsOrderAndNewerValues(t *testing.T) {
	p := idle(t, nil)
	p.SetTargets([]string{"front"}, []Target{{Camera: "front"}})
	p.PublishEvent(event(1))
	p.PublishEvent(event(2))
	sent := drain(p)
	// The connection drops before any acknowledgement; meanwhile a newer
	// state arrives.
	p.PublishEvent(event(3))
	p.mu.Lock()
	p.requeue(sent)
	p.mu.Unlock()
	again := drain(p)
	var events []uint64
	var states []uint64
	for _, m := range again {
		var ev state.Event
		json.Unmarshal(m.payload, &ev)
		switch m.topic {
		case "clipd/box/front/event":
			events = append(events, ev.LabelsVersion)
		case "clipd/box/front/state":
			states = append(states, ev.LabelsVersion)
		}
	}
	if !slices.Equal(events, []uint64{1, 2, 3}) || !slices.Equal(states, []uint64{3}) {
		t.Errorf("after requeue: events %v, states %v; want 1 2 3 and the newest state only", events, states)
	}
	if !slices.Contains(topicsOf(again), "clipd/box/availability") {
		t.Errorf("availability not sent again: %q", topicsOf(again))
	}
}

func TestRemovedTargets(t *testing.T) {
	p := idle(t, nil)
	cams := []string{"front", "back"}
	p.SetTargets(cams, []Target{{Camera: "front", Labels: []string{"a"}}, {Camera: "front", Region: "door"}, {Camera: "back"}})
	p.PublishEvent(state.Event{Camera: "front", Region: "door", Label: "a"})
	p.PublishSnapshot("front", "door", []byte{0xff, 0xd8, 0xff, 0xd9})
	drain(p)
	p.SetTargets([]string{"front"}, []Target{{Camera: "front", Labels: []string{"a", "b"}}})
	removed := map[string]bool{}
	var changed []string
	for _, m := range drain(p) {
		if !m.retain {
			t.Errorf("unretained %s", m.topic)
		}
		if m.payload == nil {
			removed[m.topic] = true
		} else {
			changed = append(changed, m.topic)
		}
	}
	for _, topic := range []string{
		"homeassistant/sensor/box/front_door/config", "homeassistant/event/box/front_door/config",
		"homeassistant/image/box/front_door/config", "homeassistant/binary_sensor/box/back/config",
		"homeassistant/sensor/box/back/config", "clipd/box/front/door/state", "clipd/box/front/door/snapshot",
		"clipd/box/back/status",
	} {
		if !removed[topic] {
			t.Errorf("%s not removed; removed %v", topic, removed)
		}
	}
	// the label reload changed the event types of front, nothing else
	if !slices.Equal(changed, []string{"homeassistant/event/box/front/config"}) {
		t.Errorf("republished %q", changed)
	}
	// a deletion is sent once
	p.mu.Lock()
	p.markDirty(prioAvailability, prioDiscovery, prioCamera, prioState, prioSnapshot)
	p.mu.Unlock()
	for _, m := range drain(p) {
		if m.payload == nil {
			t.Errorf("deletion of %s sent again on reconnect", m.topic)
		}
	}
}

func TestStateRefreshOnlyForClassifiedTargets(t *testing.T) {
	p := idle(t, nil)
	p.SetTargets([]string{"front"}, []Target{{Camera: "front"}, {Camera: "front", Region: "door"}})
	p.PublishEvent(state.Event{Camera: "front", Label: "a"})
	p.PublishEvent(state.Event{Camera: "front", Region: "door", Label: "b"})
	drain(p)
	p.PublishResult("front", "door", nil)
	refresh := func() []string {
		p.mu.Lock()
		p.refreshStates()
		p.mu.Unlock()
		return topicsOf(drain(p))
	}
	if got := refresh(); !slices.Equal(got, []string{"clipd/box/front/door/state"}) {
		t.Errorf("first refresh sent %q", got)
	}
	if got := refresh(); len(got) != 0 {
		t.Errorf("refresh without new frames sent %q", got)
	}
}

func TestPublishResultOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		p := idle(t, func(c *Config) { c.PublishResults = enabled })
		p.PublishResult("front", "door", []byte(`{"seq":1}`))
		got := slices.Contains(topicsOf(drain(p)), "clipd/box/front/door/result")
		if got != enabled || p.PublishesResults() != enabled {
			t.Errorf("publish_results=%v: result published %v", enabled, got)
		}
	}
}

func TestRejectsBadNamesAndSizes(t *testing.T) {
	p := idle(t, nil)
	before := len(drain(p))
	p.PublishEvent(state.Event{Camera: "a/b", Label: "x"})
	p.PublishSnapshot("front", "#", []byte{1})
	p.SetCameraOnline("+", true)
	if ms := drain(p); len(ms) != 0 {
		t.Errorf("published %q for bad names (had %d before)", topicsOf(ms), before)
	}
	p.PublishSnapshot("front", "", make([]byte, maxSnapshotBytes+1))
	if p.Status().Dropped != 1 {
		t.Error("oversized snapshot not counted")
	}
	if err := p.SetTargets([]string{"front"}, []Target{{Camera: "back"}}); err == nil {
		t.Error("SetTargets accepted an unlisted camera")
	}
}

func TestEventPayload(t *testing.T) {
	p := idle(t, nil)
	ev := state.Event{Camera: "front", Region: "door", Label: "person", Previous: "none", Score: 0.8,
		Since: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Time: time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC),
		LabelsVersion: 4, Snapshot: "/s/1.jpg"}
	p.PublishEvent(ev)
	byTopic := map[string]message{}
	for _, m := range drain(p) {
		byTopic[m.topic] = m
	}
	st, evm := byTopic["clipd/box/front/door/state"], byTopic["clipd/box/front/door/event"]
	wantState := `{"label":"person","score":0.8,"since":"2025-01-02T03:04:05Z","labels_version":4}`
	if string(st.payload) != wantState || !st.retain {
		t.Errorf("state %s (retained %v), want %s", st.payload, st.retain, wantState)
	}
	socket, _ := json.Marshal(ev)
	wantEvent := `{"event_type":"person",` + string(socket[1:])
	if string(evm.payload) != wantEvent || evm.retain {
		t.Errorf("event %s (retained %v), want %s", evm.payload, evm.retain, wantEvent)
	}
}

// After a reload removed a target or camera, late publishes for it are
// dropped (counted) until a reload announces it again; a target not yet
// announced is not refused (a reload starts new cameras first).
func TestPublishesForRemovedTargets(t *testing.T) {
	p := idle(t, nil)
	p.SetTargets([]string{"front", "back"}, []Target{{Camera: "front"}, {Camera: "front", Region: "door"}, {Camera: "back"}})
	drain(p)
	p.SetTargets([]string{"front"}, []Target{{Camera: "front"}})
	drain(p)
	p.PublishSnapshot("front", "door", []byte{0xff, 0xd8, 0xff, 0xd9})
	p.PublishEvent(state.Event{Camera: "front", Region: "door", Label: "a"})
	p.PublishResult("front", "door", nil)
	p.MarkClassified("front", "door") // not counted: it publishes nothing itself
	p.SetCameraOnline("back", true)
	p.mu.Lock()
	p.refreshStates()
	p.mu.Unlock()
	if ms := drain(p); len(ms) != 0 {
		t.Errorf("published for removed targets: %q", topicsOf(ms))
	}
	if st := p.Status(); st.Dropped != 4 { // snapshot, event, result, camera status
		t.Errorf("dropped %d, want 4", st.Dropped)
	}
	p.PublishEvent(state.Event{Camera: "garden", Label: "a"}) // started by a reload, not yet announced
	p.SetCameraOnline("garden", true)
	if got := topicsOf(drain(p)); !slices.Contains(got, "clipd/box/garden/state") || !slices.Contains(got, "clipd/box/garden/status") {
		t.Errorf("publishes for a target not yet announced: %q", got)
	}
	p.SetTargets([]string{"front", "back"}, []Target{{Camera: "front"}, {Camera: "front", Region: "door"}})
	drain(p)
	p.PublishSnapshot("front", "door", []byte{0xff, 0xd8, 0xff, 0xd9})
	p.SetCameraOnline("back", true)
	if got := topicsOf(drain(p)); !slices.Equal(got, []string{"clipd/box/back/status", "clipd/box/front/door/snapshot"}) {
		t.Errorf("after the targets came back: %q", got)
	}
}
