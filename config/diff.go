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

	// A change to [model] means re-loading the encoder (and re-encoding
	// labels); [socket] means re-creating the listener; [log] only the
	// logger. Cameras are listed above regardless.
	ModelChanged  bool
	SocketChanged bool
	LogChanged    bool
}

// Empty reports whether the two configurations were identical.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0 &&
		!c.ModelChanged && !c.SocketChanged && !c.LogChanged
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
	return ch
}
