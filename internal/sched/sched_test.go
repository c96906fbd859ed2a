package sched

import (
	"testing"
	"time"
)

func TestRunNormalRunsOnCaller(t *testing.T) {
	ran := false
	if err := Run(Normal, func() { ran = true }); err != nil || !ran {
		t.Fatalf("Run(Normal): ran %v, err %v", ran, err)
	}
}

func TestStarved(t *testing.T) {
	for _, c := range []struct {
		wall, cpu time.Duration
		want      bool
	}{
		{80 * time.Millisecond, 11 * time.Millisecond, false}, // in the encoder's gaps
		{2 * time.Second, 900 * time.Millisecond, false},      // slow work, not waiting
		{2 * time.Second, 10 * time.Millisecond, true},
		{time.Second, 0, true},
		{900 * time.Millisecond, 0, false},
	} {
		if got := Starved(c.wall, c.cpu); got != c.want {
			t.Errorf("Starved(%v, %v) = %v, want %v", c.wall, c.cpu, got, c.want)
		}
	}
}

func TestParseReadsEveryName(t *testing.T) {
	for _, name := range Names {
		p, ok := Parse(name)
		if !ok || p.String() != name {
			t.Errorf("Parse(%q) = %v, %v", name, p, ok)
		}
	}
	if _, ok := Parse("low"); ok {
		t.Error(`Parse("low") accepted an unknown name`)
	}
}
