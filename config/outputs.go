package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/clipd/clipd/internal/units"
	"github.com/clipd/clipd/mqtt"
	"github.com/clipd/clipd/web"
)

// The tables of what clipd does with its results beyond the socket:
// snapshots of events, the camera memory, MQTT.

// Snapshots is the [snapshots] table: JPEGs of the frames that changed a
// state, kept in a bounded directory.
type Snapshots struct {
	Dir      string
	MaxFiles int
	MaxBytes int64
}

// History is the [history] table: every classified frame's embedding kept
// for search (package history).
type History struct {
	Enabled        bool
	Dir            string
	Every          time.Duration
	Retention      time.Duration
	MaxBytes       int64
	ThumbnailEvery time.Duration
}

// Defaults of these tables; directories default to ones under
// [model] state_dir.
const (
	DefaultSnapshotMaxFiles      = 1000
	DefaultSnapshotMaxBytes      = 512 << 20
	DefaultHistoryEvery          = time.Second
	DefaultHistoryRetention      = 7 * 24 * time.Hour
	DefaultHistoryMaxBytes       = 2 << 30
	DefaultHistoryThumbnailEvery = 5 * time.Second
	DefaultStateHold             = time.Second
)

type fileSnapshots struct {
	Dir      string `toml:"dir"`
	MaxFiles *int64 `toml:"max_files"`
	MaxBytes any    `toml:"max_bytes"`
}

type fileHistory struct {
	Enabled        bool   `toml:"enabled"`
	Dir            string `toml:"dir"`
	Every          any    `toml:"every"`
	Retention      any    `toml:"retention"`
	MaxBytes       any    `toml:"max_bytes"`
	ThumbnailEvery any    `toml:"thumbnail_every"`
}

type fileHTTP struct {
	Listen    *string `toml:"listen"`
	TokenFile *string `toml:"token_file"`
	Events    *int64  `toml:"events"`
}

// http fills a web.Config; package web says what is valid.
func (v *validator) http(raw fileHTTP) web.Config {
	c := web.Defaults()
	if raw.Listen != nil {
		c.Listen = *raw.Listen
	}
	if raw.TokenFile != nil && *raw.TokenFile != "" {
		c.TokenFile = v.resolve(*raw.TokenFile)
	}
	if raw.Events != nil {
		c.Events = v.intIn("http.events", *raw.Events, 1, web.MaxEvents)
	}
	if c.Listen == "" {
		return c
	}
	if err := c.Validate(); err != nil {
		var ke *web.KeyError
		if errors.As(err, &ke) {
			v.fail("http."+ke.Key, "%s", ke.Msg)
		} else {
			v.fail("http", "%v", err)
		}
	}
	return c
}

type fileMQTT struct {
	Broker          *string `toml:"broker"`
	Device          *string `toml:"device"`
	TopicPrefix     *string `toml:"topic_prefix"`
	ClientID        *string `toml:"client_id"`
	Username        *string `toml:"username"`
	PasswordFile    *string `toml:"password_file"`
	CAFile          *string `toml:"ca_file"`
	CertFile        *string `toml:"cert_file"`
	KeyFile         *string `toml:"key_file"`
	QoS             *int64  `toml:"qos"`
	PublishResults  *bool   `toml:"publish_results"`
	HomeAssistant   *bool   `toml:"home_assistant"`
	DiscoveryPrefix *string `toml:"discovery_prefix"`
	Queue           *int64  `toml:"queue"`
}

func (v *validator) snapshots(raw fileSnapshots, stateDir string) Snapshots {
	s := Snapshots{Dir: filepath.Join(stateDir, "snapshots"), MaxFiles: DefaultSnapshotMaxFiles, MaxBytes: DefaultSnapshotMaxBytes}
	if raw.Dir != "" {
		s.Dir = v.resolve(raw.Dir)
	}
	if raw.MaxFiles != nil {
		s.MaxFiles = v.intIn("snapshots.max_files", *raw.MaxFiles, 1, 1<<24)
	}
	if raw.MaxBytes != nil {
		// Snapshots cannot be turned off by size: 0 is just too small.
		s.MaxBytes = v.sizeIn("snapshots.max_bytes", raw.MaxBytes, 1<<20, false)
	}
	return s
}

func (v *validator) history(raw fileHistory, stateDir string) History {
	h := History{Enabled: raw.Enabled, Dir: filepath.Join(stateDir, "history"), MaxBytes: DefaultHistoryMaxBytes}
	if raw.Dir != "" {
		h.Dir = v.resolve(raw.Dir)
	}
	h.Every = v.durationOr("history.every", raw.Every, DefaultHistoryEvery, 0)
	h.Retention = v.durationOr("history.retention", raw.Retention, DefaultHistoryRetention, time.Hour)
	h.ThumbnailEvery = v.durationOr("history.thumbnail_every", raw.ThumbnailEvery, DefaultHistoryThumbnailEvery, 0)
	if raw.MaxBytes != nil {
		// The history is turned off by enabled, not by a size.
		h.MaxBytes = v.sizeIn("history.max_bytes", raw.MaxBytes, 16<<20, false)
	}
	return h
}

// mqtt fills an mqtt.Config from the table; package mqtt says what is
// valid, and its errors are placed at the key's line here. With a broker,
// the cameras' and regions' names are checked as MQTT topics and Home
// Assistant object ids too (see mqttTargets).
func (v *validator) mqtt(raw fileMQTT, cams []Camera) mqtt.Config {
	c := mqtt.Defaults()
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.Broker, raw.Broker)
	set(&c.Device, raw.Device)
	set(&c.TopicPrefix, raw.TopicPrefix)
	set(&c.ClientID, raw.ClientID)
	set(&c.Username, raw.Username)
	set(&c.DiscoveryPrefix, raw.DiscoveryPrefix)
	for _, f := range []struct {
		dst *string
		src *string
	}{{&c.PasswordFile, raw.PasswordFile}, {&c.CAFile, raw.CAFile}, {&c.CertFile, raw.CertFile}, {&c.KeyFile, raw.KeyFile}} {
		if f.src != nil {
			*f.dst = v.resolve(*f.src)
		}
	}
	if raw.QoS != nil {
		c.QoS = int(*raw.QoS)
	}
	if raw.PublishResults != nil {
		c.PublishResults = *raw.PublishResults
	}
	if raw.HomeAssistant != nil {
		c.HomeAssistant = *raw.HomeAssistant
	}
	if raw.Queue != nil {
		c.Queue = int(*raw.Queue)
	}
	if c.Broker == "" {
		return c
	}
	if err := c.Validate(); err != nil {
		for _, e := range unwrapAll(err) {
			var ke *mqtt.KeyError
			if errors.As(e, &ke) {
				v.fail("mqtt."+ke.Key, "%s", ke.Msg)
			} else {
				v.fail("mqtt", "%v", e)
			}
		}
	}
	v.mqttTargets(cams)
	return c
}

// mqttTargets runs mqtt.ValidateTargets, the check the publisher makes
// when the daemon announces its targets, on the targets the cameras will
// have, so that a name that would make it refuse every announcement (two
// targets sharing a Home Assistant object id: a camera front_door and the
// region door of a camera front) is an error at its line, for `clipd
// check` and at start alike. Names that are invalid or duplicate are
// reported by the camera and region checks already and left out here.
// Labels are not known yet (they are files, read at run time): the
// publisher deals with unusable ones itself.
func (v *validator) mqttTargets(cams []Camera) {
	var names []string
	var targets []mqtt.Target
	camIndex := map[string]int{}
	regionIndex := map[[2]string]int{}
	usable := func(name string) bool { return cameraNamePattern.MatchString(name) && len(name) <= 64 }
	for i, cam := range cams {
		if _, dup := camIndex[cam.Name]; dup || !usable(cam.Name) {
			continue
		}
		camIndex[cam.Name] = i
		names = append(names, cam.Name)
		if !cam.RegionsOnly {
			targets = append(targets, mqtt.Target{Camera: cam.Name})
		}
		for j, r := range cam.Regions {
			key := [2]string{cam.Name, r.Name}
			if _, dup := regionIndex[key]; dup || !usable(r.Name) {
				continue
			}
			regionIndex[key] = j
			targets = append(targets, mqtt.Target{Camera: cam.Name, Region: r.Name})
		}
	}
	err := mqtt.ValidateTargets(names, targets)
	if err == nil {
		return
	}
	for _, e := range unwrapAll(err) {
		var te *mqtt.TargetError
		if !errors.As(e, &te) {
			v.fail("mqtt", "%v", e)
			continue
		}
		key := fmt.Sprintf("camera[%d].name", camIndex[te.Camera])
		if te.Region != "" {
			key = fmt.Sprintf("camera[%d].region[%d].name", camIndex[te.Camera], regionIndex[[2]string{te.Camera, te.Region}])
		}
		v.fail(key, "%s", te.Msg)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// durationOr reads a duration key: a string with a unit ("200ms", "1s",
// "2h", and "7d" for days), or the integer 0; absent gives def. Durations
// below lo are refused.
func (v *validator) durationOr(key string, raw any, def, lo time.Duration) time.Duration {
	switch x := raw.(type) {
	case nil:
		return def
	case int64:
		if x != 0 {
			v.fail(key, "a number must be 0; write other durations with a unit, e.g. \"%ds\"", x)
			return def
		}
		if lo > 0 {
			v.fail(key, "must be at least %s, got 0", lo)
		}
		return 0
	case string:
		d, err := units.ParseDuration(x)
		if err != nil {
			v.fail(key, "invalid duration %q (want e.g. \"500ms\", \"1s\", \"2h\" or \"7d\")", x)
			return def
		}
		if d < lo || d < 0 {
			v.fail(key, "must be at least %s, got %q", lo, x)
		}
		return d
	default:
		v.fail(key, "must be a duration string such as \"1s\", got a TOML %s", tomlType(raw))
		return def
	}
}
