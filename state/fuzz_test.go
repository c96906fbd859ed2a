package state

import (
	"slices"
	"testing"
	"time"
)

// FuzzTracker drives a tracker with random observation sequences and label
// reloads and checks it against the rule stated in the package doc, written
// here as invariants over the history of frames rather than as a second
// state machine:
//   - no event without a change (Previous is the state before, Label differs);
//   - an event from a frame has its label on top in at least two trailing
//     frames (one with a zero hold) spanning at least the hold, and Since is
//     the first of them;
//   - no state is missed: once the trailing run of a label satisfies that,
//     the state is that label;
//   - a reload event goes to None, from a label the new set lacks.
func FuzzTracker(f *testing.F) {
	f.Add([]byte{4, 0, 200, 50, 0, 200, 50, 0, 200, 250, 1, 10, 100})
	f.Add([]byte{0, 1, 255, 1, 2, 255, 1, 1, 10, 1, 3, 0, 0})
	f.Add([]byte{10, 2, 128, 5, 2, 127, 5, 2, 129, 5, 200, 1, 1})
	f.Add([]byte("0000\xcf002\xe40")) // a reload to the empty set
	names := []string{"person", "car", "dog", "", "none"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		hold := time.Duration(data[0]%8) * 100 * time.Millisecond
		const threshold = 0.5
		tr, err := NewTracker("cam", "", hold)
		if err != nil {
			t.Fatal(err)
		}
		type seen struct {
			time  time.Time
			label string // effective label of the frame
		}
		var history []seen
		var labels []string // nil: no reload yet
		now := t0
		for ops := data[1:]; len(ops) >= 3; ops = ops[3:] {
			before := tr.Current()
			now = now.Add(time.Duration(ops[2]) * 10 * time.Millisecond)
			if ops[0] >= 200 {
				// a reload: the subset of names given by the bits of ops[1]
				labels = []string{}
				for i, n := range names[:3] {
					if ops[1]&(1<<i) != 0 {
						labels = append(labels, n)
					}
				}
				ev, ok := tr.SetLabels(labels, 2, now)
				removed := before.Label != "" && before.Label != None && !slices.Contains(labels, before.Label)
				if ok != removed {
					t.Fatalf("reload %q from state %q: event %v", labels, before.Label, ok)
				}
				if ok && (ev.Label != None || ev.Previous != before.Label || !ev.Since.Equal(now)) {
					t.Fatalf("reload event %+v", ev)
				}
				// frames before the reload were of the old set: a run
				// of a removed label does not carry over
				if len(history) > 0 && history[0].label != None && !slices.Contains(labels, history[0].label) {
					history = history[:0]
				}
				continue
			}
			o := Observation{Time: now, Label: names[int(ops[0])%len(names)],
				Score: float32(ops[1]) / 255, Threshold: threshold, LabelsVersion: 1}
			eff := o.Label
			if eff == "" || o.Score < threshold || (labels != nil && !slices.Contains(labels, eff)) {
				eff = None
			}
			if len(history) > 0 && history[len(history)-1].label != eff {
				history = history[:0]
			}
			history = append(history, seen{now, eff})
			ev, ok := tr.Observe(o)
			held := hold == 0 || (len(history) >= 2 && now.Sub(history[0].time) >= hold)
			switch {
			case ok && (ev.Label == ev.Previous || ev.Previous != before.Label):
				t.Fatalf("event %+v without a change from %q", ev, before.Label)
			case ok && (ev.Label != eff || !held || !ev.Since.Equal(history[0].time) || !ev.Time.Equal(now)):
				t.Fatalf("event %+v not held: run %v, hold %v", ev, history, hold)
			case !ok && before.Label != tr.Current().Label:
				t.Fatalf("state changed from %q to %q without an event", before.Label, tr.Current().Label)
			case held && tr.Current().Label != eff:
				t.Fatalf("run %v held for %v but state is %q", history, hold, tr.Current().Label)
			}
		}
	})
}
