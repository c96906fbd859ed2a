package config

import "reflect"

// Changes is what a reload must act on. Cameras are matched by name; a
// camera whose settings differ in any way is Changed and must be restarted,
// the others keep running.
type Changes struct {
	Added     []string // in new, not in old, in new's order
	Removed   []string // in old, not in new, in old's order
	Changed   []string // in both with different settings, in new's order
	Unchanged []string // in both, identical, in new's order

	// One flag per table besides [[camera]]: a change to [model] means
	// re-loading the encoder (and re-encoding labels), [socket]
	// re-creating the listener, [log] the logger, [snapshots], [history],
	// [mqtt] and [http] re-opening that output. Cameras are listed above
	// regardless.
	ModelChanged     bool
	SocketChanged    bool
	LogChanged       bool
	SnapshotsChanged bool
	HistoryChanged   bool
	MQTTChanged      bool
	HTTPChanged      bool
}

// Tables names the changed tables besides [[camera]], in the order the
// example configuration has them, e.g. ["[mqtt]", "[http]"].
func (c Changes) Tables() []string {
	var out []string
	for _, t := range []struct {
		changed bool
		name    string
	}{
		{c.ModelChanged, "[model]"}, {c.SocketChanged, "[socket]"}, {c.LogChanged, "[log]"},
		{c.SnapshotsChanged, "[snapshots]"}, {c.HistoryChanged, "[history]"},
		{c.MQTTChanged, "[mqtt]"}, {c.HTTPChanged, "[http]"},
	} {
		if t.changed {
			out = append(out, t.name)
		}
	}
	return out
}

// Empty reports whether the two configurations were identical.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0 && len(c.Tables()) == 0
}

// Diff compares two configurations, typically the running one and the one
// read on SIGHUP. A nil old means everything in new is Added.
func Diff(old, new *Config) Changes {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var ch Changes
	before := make(map[string]Camera, len(old.Cameras))
	for _, c := range old.Cameras {
		before[c.Name] = c
	}
	after := make(map[string]bool, len(new.Cameras))
	for _, c := range new.Cameras {
		after[c.Name] = true
		prev, existed := before[c.Name]
		switch {
		case !existed:
			ch.Added = append(ch.Added, c.Name)
		case !reflect.DeepEqual(prev, c):
			ch.Changed = append(ch.Changed, c.Name)
		default:
			ch.Unchanged = append(ch.Unchanged, c.Name)
		}
	}
	for _, c := range old.Cameras {
		if !after[c.Name] {
			ch.Removed = append(ch.Removed, c.Name)
		}
	}
	ch.ModelChanged = old.Model != new.Model
	ch.SocketChanged = !old.Socket.Equal(new.Socket)
	ch.LogChanged = old.Log != new.Log
	ch.SnapshotsChanged = old.Snapshots != new.Snapshots
	ch.HistoryChanged = old.History != new.History
	// DeepEqual, not ==: these two tables are other packages' types,
	// which may yet gain a slice.
	ch.MQTTChanged = !reflect.DeepEqual(old.MQTT, new.MQTT)
	ch.HTTPChanged = !reflect.DeepEqual(old.HTTP, new.HTTP)
	return ch
}
