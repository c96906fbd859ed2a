package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/clipd/clipd/state"
)

// Target is something clipd classifies and keeps a state for: the whole
// frame of a camera (Region "") or one named region of it.
type Target struct {
	Camera string
	Region string
	// Labels are the names of the target's label set, the event entity's
	// event types (None is added).
	Labels []string
}

// Path is the target's topic segment: "camera" or "camera/region".
func (t Target) Path() string { return targetPath(t.Camera, t.Region) }

func targetPath(camera, region string) string {
	if region == "" {
		return camera
	}
	return camera + "/" + region
}

// objectID is the target's <object_id> in discovery topics, which allow
// only [A-Za-z0-9_-]; ValidateTargets rejects the rare pairs of targets
// that would share one ("a_b" and "a" with region "b").
func (t Target) objectID() string {
	if t.Region == "" {
		return t.Camera
	}
	return t.Camera + "_" + t.Region
}

// maxLabelBytes bounds a label in a target's event_types. Labels come
// from label files at run time, so a longer one is not refused but left
// out of the event entity's event_types (see usableLabels).
const maxLabelBytes = 1024

// TargetError is a problem ValidateTargets finds with a camera or region
// name. Camera and Region (Region "" for the camera's own name) say which
// name to change, so that a config checker can point at its line.
type TargetError struct {
	Camera, Region string
	Msg            string
}

func (e *TargetError) Error() string { return "mqtt: " + e.Msg }

// ValidateTargets checks the names of cameras and targets for use in
// topics: each camera and region name is 1 to 64 of [A-Za-z0-9_-], every
// target's camera is listed, no target is given twice and no two targets
// share a discovery object id. Every problem is a *TargetError; more than
// one come joined (errors.Join). SetTargets calls it; the config loader
// calls it too, so that `clipd check` reports what SetTargets would
// refuse. Labels are not checked: see usableLabels.
func ValidateTargets(cameras []string, targets []Target) error {
	var errs []error
	fail := func(camera, region, format string, args ...any) {
		errs = append(errs, &TargetError{Camera: camera, Region: region, Msg: fmt.Sprintf(format, args...)})
	}
	known := make(map[string]bool, len(cameras))
	for _, c := range cameras {
		switch {
		case !validName(c):
			fail(c, "", "camera name %q: must be 1 to %d of A-Z a-z 0-9 _ -", c, maxNameBytes)
		case known[c]:
			fail(c, "", "camera %q listed twice", c)
		}
		known[c] = true
	}
	objects := make(map[string]string, len(targets))
	for _, t := range targets {
		switch {
		case !known[t.Camera]:
			fail(t.Camera, t.Region, "target %q: camera %q is not listed", t.Path(), t.Camera)
			continue
		case t.Region != "" && !validName(t.Region):
			fail(t.Camera, t.Region, "target %q: region name %q: must be 1 to %d of A-Z a-z 0-9 _ -", t.Path(), t.Region, maxNameBytes)
			continue
		}
		if prev, dup := objects[t.objectID()]; dup {
			if prev == t.Path() {
				fail(t.Camera, t.Region, "target %q given twice", prev)
			} else {
				fail(t.Camera, t.Region, "targets %q and %q would share the Home Assistant object id %q; rename one",
					prev, t.Path(), t.objectID())
			}
			continue
		}
		objects[t.objectID()] = t.Path()
	}
	return errors.Join(errs...)
}

// usableLabels are the labels that can be event types: not empty and at
// most maxLabelBytes. A label file may hold longer ones (a line of up to
// 64 KiB); such a label is left out of the event entity, whose config
// would otherwise grow without bound, and the rest of the target's
// entities are announced as usual. skipped counts what was left out.
func usableLabels(labels []string) (usable []string, skipped int) {
	for _, l := range labels {
		if l == "" || len(l) > maxLabelBytes {
			skipped++
			continue
		}
		usable = append(usable, l)
	}
	return usable, skipped
}

func checkName(kind, s string) error {
	if !validName(s) {
		return fmt.Errorf("mqtt: %s name %q: must be 1 to %d of A-Z a-z 0-9 _ -", kind, s, maxNameBytes)
	}
	return nil
}

// topics names everything a Publisher publishes; it is the one place that
// knows the layout documented in docs/mqtt.md.
type topics struct {
	base      string // topic_prefix/device
	discovery string // discovery_prefix
	device    string
}

func (n topics) availability() string        { return n.base + "/availability" }
func (n topics) camera(camera string) string { return n.base + "/" + camera + "/status" }
func (n topics) state(path string) string    { return n.base + "/" + path + "/state" }
func (n topics) event(path string) string    { return n.base + "/" + path + "/event" }
func (n topics) snapshot(path string) string { return n.base + "/" + path + "/snapshot" }
func (n topics) result(path string) string   { return n.base + "/" + path + "/result" }
func (n topics) haStatus() string            { return n.discovery + "/status" }
func (n topics) ownDiscovery() string        { return n.discovery + "/+/" + n.device + "/+/config" }
func (n topics) config(component, obj string) string {
	return n.discovery + "/" + component + "/" + n.device + "/" + obj + "/config"
}

// The payloads below follow Home Assistant's MQTT documentation for each
// platform (sensor.mqtt, event.mqtt, image.mqtt, binary_sensor.mqtt and
// the discovery section of mqtt; see docs/mqtt.md). Field order is fixed
// by the structs, so payloads are byte-stable and golden-tested.

type haDevice struct {
	Identifiers []string `json:"identifiers"`
	Name        string   `json:"name"`
	Model       string   `json:"model"`
	SWVersion   string   `json:"sw_version,omitempty"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

type haAvailability struct {
	Topic string `json:"topic"`
}

type haCommon struct {
	Name             string           `json:"name"`
	UniqueID         string           `json:"unique_id"`
	DefaultEntityID  string           `json:"default_entity_id"`
	Availability     []haAvailability `json:"availability"`
	AvailabilityMode string           `json:"availability_mode,omitempty"`
	Device           haDevice         `json:"device"`
	Origin           haOrigin         `json:"origin"`
}

type haSensor struct {
	haCommon
	StateTopic          string `json:"state_topic"`
	ValueTemplate       string `json:"value_template"`
	JSONAttributesTopic string `json:"json_attributes_topic"`
	ExpireAfter         int    `json:"expire_after"`
	QoS                 int    `json:"qos"`
}

type haEvent struct {
	haCommon
	StateTopic string   `json:"state_topic"`
	EventTypes []string `json:"event_types"`
	QoS        int      `json:"qos"`
}

type haImage struct {
	haCommon
	ImageTopic  string `json:"image_topic"`
	ContentType string `json:"content_type"`
}

type haBinarySensor struct {
	haCommon
	StateTopic     string `json:"state_topic"`
	PayloadOn      string `json:"payload_on"`
	PayloadOff     string `json:"payload_off"`
	DeviceClass    string `json:"device_class"`
	EntityCategory string `json:"entity_category"`
	QoS            int    `json:"qos"`
}

// discovery builds the discovery payloads of one Publisher.
type discovery struct {
	topics
	qos         int
	version     string
	expireAfter int // seconds
}

// originName is the origin block's name and how a retained config is
// recognised as clipd's own (see ownedConfig).
const originName = "clipd"

func (d discovery) identifier() string { return "clipd_" + d.device }

func (d discovery) common(name, uniqueKind, component, entitySuffix string, availability ...string) haCommon {
	c := haCommon{
		Name:            name,
		UniqueID:        "clipd/" + d.device + "/" + uniqueKind,
		DefaultEntityID: component + "." + entitySlug("clipd_"+d.device+"_"+entitySuffix),
		Device:          haDevice{Identifiers: []string{d.identifier()}, Name: d.device, Model: "clipd", SWVersion: d.version},
		Origin:          haOrigin{Name: originName, SWVersion: d.version},
	}
	for _, t := range availability {
		c.Availability = append(c.Availability, haAvailability{Topic: t})
	}
	if len(availability) > 1 {
		c.AvailabilityMode = "all"
	}
	return c
}

// entities returns the discovery topic and payload of every entity for the
// given cameras and targets.
func (d discovery) entities(cameras []string, targets []Target) map[string][]byte {
	out := make(map[string][]byte, len(cameras)+3*len(targets))
	put := func(topic string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			panic(err) // plain structs of strings and ints always marshal
		}
		out[topic] = data
	}
	for _, cam := range cameras {
		put(d.config("binary_sensor", cam), haBinarySensor{
			haCommon:   d.common(cam+" camera", cam+"/connectivity", "binary_sensor", cam+"_connectivity", d.availability()),
			StateTopic: d.camera(cam), PayloadOn: "online", PayloadOff: "offline",
			DeviceClass: "connectivity", EntityCategory: "diagnostic", QoS: d.qos,
		})
	}
	for _, t := range targets {
		path, obj := t.Path(), t.objectID()
		// A target's entities are unavailable while clipd or its camera is.
		avail := []string{d.availability(), d.camera(t.Camera)}
		display := strings.ReplaceAll(path, "/", " ")
		put(d.config("sensor", obj), haSensor{
			haCommon:            d.common(display, path+"/label", "sensor", obj, avail...),
			StateTopic:          d.state(path),
			ValueTemplate:       "{{ value_json.label }}",
			JSONAttributesTopic: d.state(path),
			ExpireAfter:         d.expireAfter,
			QoS:                 d.qos,
		})
		put(d.config("event", obj), haEvent{
			haCommon:   d.common(display+" event", path+"/event", "event", obj, avail...),
			StateTopic: d.event(path),
			EventTypes: eventTypes(t.Labels),
			QoS:        d.qos,
		})
		put(d.config("image", obj), haImage{
			haCommon:    d.common(display+" snapshot", path+"/snapshot", "image", obj+"_snapshot", avail...),
			ImageTopic:  d.snapshot(path),
			ContentType: "image/jpeg",
		})
	}
	return out
}

// eventTypes are a target's usable labels plus None, each once, in label
// order.
func eventTypes(labels []string) []string {
	seen := make(map[string]bool, len(labels)+1)
	types := make([]string, 0, len(labels)+1)
	labels, _ = usableLabels(labels)
	for _, l := range append(labels, state.None) {
		if !seen[l] {
			seen[l] = true
			types = append(types, l)
		}
	}
	return types
}

// entitySlug makes an object id Home Assistant's entity id check accepts:
// [a-z0-9_], no leading, trailing or doubled underscore.
func entitySlug(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.Trim(b.String(), "_")
}

// maxForeignConfig bounds the retained discovery payloads ownedConfig
// parses: they come from the broker, where anyone may have put them.
const maxForeignConfig = 64 << 10

// ownedConfig says whether a retained discovery payload found under this
// device's node id was published by clipd for this device (origin name
// "clipd", device identifiers including ours), so that removing it when
// its target is gone cannot delete another program's entities.
func ownedConfig(payload []byte, identifier string) bool {
	if len(payload) == 0 || len(payload) > maxForeignConfig {
		return false
	}
	var c struct {
		Device struct {
			Identifiers json.RawMessage `json:"identifiers"`
		} `json:"device"`
		Origin struct {
			Name string `json:"name"`
		} `json:"origin"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Origin.Name != originName {
		return false
	}
	var ids []string
	if json.Unmarshal(c.Device.Identifiers, &ids) != nil {
		var one string
		if json.Unmarshal(c.Device.Identifiers, &one) != nil {
			return false
		}
		ids = []string{one}
	}
	return slices.Contains(ids, identifier)
}

// validName is nameRE without a regexp: it runs for every result.
func validName(s string) bool {
	if s == "" || len(s) > maxNameBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
