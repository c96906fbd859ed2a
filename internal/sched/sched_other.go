//go:build !linux

package sched

import (
	"errors"
	"time"
)

func setThread(Priority) error {
	return errors.New("CPU priorities other than normal are only supported on Linux")
}

func isMainThread() bool { return false }

// ThreadPriority reports Normal: no other priority is set elsewhere.
func ThreadPriority(int) (Priority, error) { return Normal, nil }

func threadCPU() time.Duration { return 0 }
