package state

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 11, 27, 9, 41, 7, 0, time.UTC)

// at is a time offset from t0 in milliseconds, which keeps the tables short.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// frame is one step of a table: an observation (label, score at ms) or, when
// reload is set, a label reload to those names.
type frame struct {
	ms     int
	label  string
	score  float32
	reload []string
	// want is the event the step must produce, "" for none; written as
	// "previous>label".
	want string
}

func run(t *testing.T, hold time.Duration, threshold float32, frames []frame) []Event {
	t.Helper()
	tr, err := NewTracker("front", "door", hold)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for i, f := range frames {
		var ev Event
		var ok bool
		if f.reload != nil {
			ev, ok = tr.SetLabels(f.reload, 7, at(f.ms))
		} else {
			ev, ok = tr.Observe(Observation{Time: at(f.ms), Label: f.label, Score: f.score, Threshold: threshold, LabelsVersion: 3})
		}
		got := ""
		if ok {
			got = ev.Previous + ">" + ev.Label
			events = append(events, ev)
			if ev.Camera != "front" || ev.Region != "door" {
				t.Errorf("step %d: event for %s/%s", i, ev.Camera, ev.Region)
			}
			if cur := tr.Current(); cur.Label != ev.Label || !cur.Since.Equal(ev.Since) {
				t.Errorf("step %d: Current() = %+v after event %+v", i, cur, ev)
			}
		}
		if got != f.want {
			t.Errorf("step %d (%+v): got event %q, want %q", i, f, got, f.want)
		}
	}
	return events
}

func TestTrackerTable(t *testing.T) {
	tests := []struct {
		name      string
		hold      time.Duration
		threshold float32
		frames    []frame
	}{
		{"first frame alone decides nothing", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
		}},
		{"first state after the hold", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
			{ms: 200, label: "person", score: 0.9},
			{ms: 800, label: "person", score: 0.9},
			{ms: 1000, label: "person", score: 0.9, want: ">person"},
			{ms: 1200, label: "person", score: 0.9},
		}},
		{"hold boundary: one nanosecond short", time.Second, 0.5, []frame{
			{ms: 0, label: "car", score: 0.9},
			{ms: 999, label: "car", score: 0.9},
			{ms: 1000, label: "car", score: 0.9, want: ">car"},
		}},
		{"below threshold is the state none", time.Second, 0.5, []frame{
			{ms: 0, label: "car", score: 0.2},
			{ms: 1000, label: "car", score: 0.3, want: ">none"},
			{ms: 1500, label: "car", score: 0.9},
			{ms: 2400, label: "car", score: 0.9},
			{ms: 2500, label: "car", score: 0.9, want: "none>car"},
			{ms: 2600, label: "car", score: 0.1},
			{ms: 3600, label: "dog", score: 0.4, want: "car>none"},
		}},
		{"threshold boundary: equal counts, just below does not", time.Second, 0.5, []frame{
			{ms: 0, label: "cat", score: 0.5},
			{ms: 1000, label: "cat", score: 0.5, want: ">cat"},
			{ms: 1100, label: "cat", score: math.Nextafter32(0.5, 0)},
			{ms: 2100, label: "cat", score: math.Nextafter32(0.5, 0), want: "cat>none"},
		}},
		{"flicker shorter than the hold changes nothing", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
			{ms: 1000, label: "person", score: 0.9, want: ">person"},
			{ms: 1200, label: "car", score: 0.9},
			{ms: 1400, label: "car", score: 0.9},
			{ms: 2100, label: "car", score: 0.9},
			{ms: 2150, label: "person", score: 0.9},
			{ms: 2200, label: "car", score: 0.9},
			{ms: 2400, label: "none-ish", score: 0.1},
			{ms: 2600, label: "person", score: 0.9},
			{ms: 3600, label: "person", score: 0.9},
		}},
		{"an interruption restarts the hold", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
			{ms: 1000, label: "person", score: 0.9, want: ">person"},
			{ms: 1100, label: "car", score: 0.9},
			{ms: 1900, label: "car", score: 0.9},
			{ms: 2000, label: "dog", score: 0.9},
			{ms: 2100, label: "car", score: 0.9},
			{ms: 3000, label: "car", score: 0.9},
			{ms: 3100, label: "car", score: 0.9, want: "person>car"},
		}},
		{"sparse frames: the second frame decides", time.Second, 0.5, []frame{
			{ms: 0, label: "dog", score: 0.9},
			{ms: 5000, label: "dog", score: 0.9, want: ">dog"},
			{ms: 10000, label: "cat", score: 0.9},
			{ms: 15000, label: "cat", score: 0.9, want: "dog>cat"},
		}},
		{"two frames needed even when the hold is long past", 10 * time.Millisecond, 0.5, []frame{
			{ms: 0, label: "dog", score: 0.9},
			{ms: 20, label: "cat", score: 0.9},
			{ms: 40, label: "cat", score: 0.9, want: ">cat"},
		}},
		{"zero hold changes at once, flicker included", 0, 0.5, []frame{
			{ms: 0, label: "dog", score: 0.9, want: ">dog"},
			{ms: 1, label: "dog", score: 0.9},
			{ms: 2, label: "cat", score: 0.9, want: "dog>cat"},
			{ms: 3, label: "dog", score: 0.9, want: "cat>dog"},
			{ms: 4, label: "dog", score: 0.1, want: "dog>none"},
			{ms: 5, label: "", score: 1, want: ""},
		}},
		{"reload removing the current label ends the state", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
			{ms: 1000, label: "person", score: 0.9, want: ">person"},
			{ms: 1100, reload: []string{"car", "dog"}, want: "person>none"},
			// a frame still scored with the old set counts as none
			{ms: 1200, label: "person", score: 0.9},
			{ms: 2200, label: "person", score: 0.9},
			{ms: 2300, label: "car", score: 0.9},
			{ms: 3300, label: "car", score: 0.9, want: "none>car"},
		}},
		{"reload keeping the current label changes nothing", time.Second, 0.5, []frame{
			{ms: 0, label: "person", score: 0.9},
			{ms: 1000, label: "person", score: 0.9, want: ">person"},
			{ms: 1100, reload: []string{"person", "car"}},
			{ms: 1200, label: "person", score: 0.9},
		}},
		{"reload before any state, and of a state none", time.Second, 0.5, []frame{
			{ms: 0, reload: []string{"car"}},
			{ms: 100, label: "car", score: 0.1},
			{ms: 1100, label: "car", score: 0.1, want: ">none"},
			{ms: 1200, reload: []string{"dog"}},
		}},
		{"reload removing the label a run was building", time.Second, 0.5, []frame{
			{ms: 0, label: "car", score: 0.9},
			{ms: 600, reload: []string{"car", "dog"}},
			{ms: 700, label: "dog", score: 0.9},
			{ms: 800, reload: []string{"car"}},
			{ms: 900, label: "dog", score: 0.9},
			{ms: 1700, label: "dog", score: 0.9},
			{ms: 1800, label: "car", score: 0.9},
			{ms: 2800, label: "car", score: 0.9, want: ">car"},
		}},
		{"a label removed and restored breaks its run", time.Second, 0.5, []frame{
			{ms: 0, label: "car", score: 0.9},
			{ms: 100, reload: []string{"dog"}},
			{ms: 200, reload: []string{"car", "dog"}},
			{ms: 300, label: "car", score: 0.9},
			{ms: 1000, label: "car", score: 0.9},
			{ms: 1300, label: "car", score: 0.9, want: ">car"},
		}},
		{"clock stepping back measures from the step", time.Second, 0.5, []frame{
			{ms: 10000, label: "car", score: 0.9},
			{ms: 10500, label: "car", score: 0.9},
			{ms: 2000, label: "car", score: 0.9},
			{ms: 2900, label: "car", score: 0.9},
			{ms: 3000, label: "car", score: 0.9, want: ">car"},
		}},
		{"NaN score counts as none", 0, 0.5, []frame{
			{ms: 0, label: "car", score: float32(math.NaN()), want: ">none"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, tc.hold, tc.threshold, tc.frames)
		})
	}
}

func TestEventFields(t *testing.T) {
	events := run(t, time.Second, 0.5, []frame{
		{ms: 0, label: "dog", score: 0.3},
		{ms: 300, label: "person", score: 0.6},
		{ms: 700, label: "person", score: 0.8},
		{ms: 1300, label: "person", score: 0.7, want: ">person"},
		{ms: 1400, reload: []string{"dog"}, want: "person>none"},
	})
	first := Event{Camera: "front", Region: "door", Label: "person", Previous: "", Score: 0.7,
		Since: at(300), Time: at(1300), LabelsVersion: 3}
	if events[0] != first {
		t.Errorf("event = %+v, want %+v", events[0], first)
	}
	reload := Event{Camera: "front", Region: "door", Label: None, Previous: "person",
		Since: at(1400), Time: at(1400), LabelsVersion: 7}
	if events[1] != reload {
		t.Errorf("reload event = %+v, want %+v", events[1], reload)
	}
}

func TestEventJSON(t *testing.T) {
	ev := Event{Camera: "front", Label: "person", Previous: None, Score: 0.75,
		Since: at(300), Time: at(1300), LabelsVersion: 3}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"camera":"front","label":"person","previous":"none","score":0.75,` +
		`"since":"2025-11-27T09:41:07.3Z","time":"2025-11-27T09:41:08.3Z","labels_version":3}`
	if string(data) != want {
		t.Errorf("JSON\n got %s\nwant %s", data, want)
	}
	ev.Region, ev.Snapshot = "door", "/var/lib/clipd/snapshots/x.jpg"
	data, _ = json.Marshal(ev)
	for _, s := range []string{`"region":"door"`, `"snapshot":"/var/lib/clipd/snapshots/x.jpg"`} {
		if !strings.Contains(string(data), s) {
			t.Errorf("JSON %s lacks %s", data, s)
		}
	}
}

func TestNewTrackerErrors(t *testing.T) {
	if _, err := NewTracker("front", "", -time.Millisecond); err == nil || !strings.Contains(err.Error(), "state_hold") {
		t.Errorf("negative hold: err = %v", err)
	}
	if _, err := NewTracker("", "", time.Second); err == nil {
		t.Error("empty camera accepted")
	}
	tr, err := NewTracker("front", "", 0)
	if err != nil || tr.Hold() != 0 || tr.Current().Label != "" {
		t.Errorf("NewTracker = %+v, %v", tr, err)
	}
}
