package history

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Config, as issue 14's [history] table gives them.
const (
	DefaultEvery          = time.Second
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultMaxBytes       = 2 << 30
	DefaultThumbnailEvery = 5 * time.Second
	DefaultQueueBytes     = 16 << 20
	DefaultPauseRetry     = 30 * time.Second
)

// Config configures a Store. Zero durations and sizes take the defaults.
type Config struct {
	// Dir holds the catalog (history.db) and the segment files; it is
	// created if missing. One Store at a time may use it.
	Dir string
	// Every is the least time between two stored embeddings of a target;
	// records that changed a state are stored regardless.
	Every time.Duration
	// Retention is how long records are kept (by capture time). Whole
	// segments go, so a record may outlive it by one segment's span:
	// Retention/48, but at least a minute and at most an hour.
	Retention time.Duration
	// MaxBytes bounds the segment files (embeddings and thumbnails
	// together); the oldest segments are deleted first. At least 1 MiB.
	MaxBytes int64
	// ThumbnailEvery is the least time between two stored thumbnails of a
	// target; a record that changed a state keeps its thumbnail regardless.
	ThumbnailEvery time.Duration
	// QueueBytes bounds what Add may queue for the writer; beyond it
	// records are dropped and counted.
	QueueBytes int64
	// PauseRetry is how long history stays paused after a write failed
	// (a full disk) before it tries again.
	PauseRetry time.Duration
	// Log receives the store's messages; nil discards them.
	Log *slog.Logger
	// Now is the clock for retention and for the segments' creation
	// times; nil is time.Now. Tests inject one. (A search's times come
	// with its Query: ParseTime takes the caller's now.)
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("history: dir is empty")
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			return fmt.Errorf("history: %s is negative (%v)", name, *d)
		}
		return nil
	}
	for _, e := range []error{
		def(&c.Every, DefaultEvery, "every"),
		def(&c.Retention, DefaultRetention, "retention"),
		def(&c.ThumbnailEvery, DefaultThumbnailEvery, "thumbnail_every"),
		def(&c.PauseRetry, DefaultPauseRetry, "pause retry"),
	} {
		if e != nil {
			return c, e
		}
	}
	if c.Retention < time.Minute {
		return c, fmt.Errorf("history: retention %v is under a minute", c.Retention)
	}
	switch {
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultMaxBytes
	case c.MaxBytes < 1<<20:
		return c, fmt.Errorf("history: max_bytes %d is under 1 MiB", c.MaxBytes)
	}
	switch {
	case c.QueueBytes == 0:
		c.QueueBytes = DefaultQueueBytes
	case c.QueueBytes < 64<<10:
		return c, fmt.Errorf("history: queue bytes %d is under 64 KiB", c.QueueBytes)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// segmentBytes is how large a segment grows before the next one starts:
// small enough that deleting one frees a sixteenth of max_bytes at most,
// large enough that a million records make a few dozen files.
func (c Config) segmentBytes() int64 {
	return min(max(c.MaxBytes/16, 64<<10), 64<<20)
}

// segmentSpan is the capture-time span after which a segment is closed,
// so retention, which deletes whole segments, is exact to within it.
func (c Config) segmentSpan() time.Duration {
	return min(max(c.Retention/48, time.Minute), time.Hour)
}
