package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/clipd/clipd/internal/syncbuf"
)

var update = flag.Bool("update", false, "rewrite the golden discovery payloads in testdata/discovery")

func goldenDiscovery() discovery {
	return discovery{
		topics:      topics{base: "clipd/box", discovery: "homeassistant", device: "box"},
		qos:         1,
		version:     "1.2.3",
		expireAfter: 180,
	}
}

var goldenCameras = []string{"front", "garden-2"}
var goldenTargets = []Target{
	{Camera: "front", Labels: []string{"person", "car"}},
	{Camera: "front", Region: "door", Labels: []string{"person", "package", "none"}},
	{Camera: "garden-2", Labels: []string{"fox"}},
}

// TestDiscoveryGolden compares every payload with testdata/discovery;
// `go test ./mqtt -run TestDiscoveryGolden -update` rewrites the files
// after a deliberate change (review the diff against docs/mqtt.md).
func TestDiscoveryGolden(t *testing.T) {
	entities := goldenDiscovery().entities(goldenCameras, goldenTargets)
	dir := filepath.Join("testdata", "discovery")
	if *update {
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
	}
	var names []string
	for topic, payload := range entities {
		name := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(topic, "homeassistant/"), "/config"), "/", "_") + ".json"
		names = append(names, name)
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, payload, "", "  "); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		pretty.WriteByte('\n')
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v (run with -update to create)", topic, err)
			continue
		}
		if !bytes.Equal(pretty.Bytes(), want) {
			t.Errorf("%s differs from %s:\n%s", topic, path, pretty.Bytes())
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != len(names) {
		t.Errorf("%d golden files, %d payloads: stale files in %s?", len(files), len(names), dir)
	}
	want := []string{
		"binary_sensor_box_front.json", "binary_sensor_box_garden-2.json",
		"event_box_front.json", "event_box_front_door.json", "event_box_garden-2.json",
		"image_box_front.json", "image_box_front_door.json", "image_box_garden-2.json",
		"sensor_box_front.json", "sensor_box_front_door.json", "sensor_box_garden-2.json",
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("entities %q, want %q", names, want)
	}
}

// documentedKeys lists, per platform, the discovery options Home
// Assistant's MQTT documentation gives (sensor.mqtt, event.mqtt,
// image.mqtt, binary_sensor.mqtt; common ones from mqtt's discovery
// section). A payload key outside the list would be ignored by Home
// Assistant and most likely a typo.
var documentedKeys = map[string][]string{
	"common": {"availability", "availability_mode", "availability_template", "availability_topic",
		"default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
		"entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
		"origin", "payload_available", "payload_not_available", "unique_id"},
	"sensor": {"device_class", "expire_after", "force_update", "last_reset_value_template", "options",
		"qos", "state_class", "state_topic", "suggested_display_precision", "unit_of_measurement", "value_template"},
	"event":         {"device_class", "event_types", "qos", "state_topic", "value_template"},
	"image":         {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
	"binary_sensor": {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on", "qos", "state_topic", "value_template"},
}

var requiredKeys = map[string][]string{
	"sensor":        {"state_topic"},
	"event":         {"state_topic", "event_types"},
	"image":         {"image_topic"},
	"binary_sensor": {"state_topic"},
}

// checkEntityID is Home Assistant's entity id rule, VALID_ENTITY_ID in
// homeassistant/core.py: ^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$
// in older releases (no doubled underscore anywhere, the stricter form;
// newer ones forbid it only in the domain). RE2 has no lookarounds, hence
// the extra checks.
var validEntityID = regexp.MustCompile(`^[\da-z_]+\.[\da-z_]+$`)

func checkEntityID(id string) bool {
	domain, obj, ok := strings.Cut(id, ".")
	return ok && validEntityID.MatchString(id) && !strings.Contains(id, "__") &&
		!strings.HasPrefix(domain, "_") && !strings.HasSuffix(domain, "_") &&
		!strings.HasPrefix(obj, "_") && !strings.HasSuffix(obj, "_")
}

func TestDiscoveryPayloadsFollowTheDocs(t *testing.T) {
	d := goldenDiscovery()
	entities := d.entities(goldenCameras, goldenTargets)
	uniqueIDs := map[string]string{}
	entityIDs := map[string]string{}
	topicRE := regexp.MustCompile(`^homeassistant/(sensor|event|image|binary_sensor)/box/[A-Za-z0-9_-]+/config$`)
	for topic, payload := range entities {
		m := topicRE.FindStringSubmatch(topic)
		if m == nil {
			t.Errorf("discovery topic %q does not follow <prefix>/<component>/<node_id>/<object_id>/config", topic)
			continue
		}
		platform := m[1]
		var p map[string]any
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		for key := range p {
			if !slices.Contains(documentedKeys["common"], key) && !slices.Contains(documentedKeys[platform], key) {
				t.Errorf("%s: key %q is not a documented %s option", topic, key, platform)
			}
		}
		for _, key := range append([]string{"unique_id", "default_entity_id", "availability", "device", "origin", "name"}, requiredKeys[platform]...) {
			if _, ok := p[key]; !ok {
				t.Errorf("%s: lacks %q", topic, key)
			}
		}
		if _, deprecated := p["object_id"]; deprecated {
			t.Errorf("%s: uses the deprecated object_id", topic)
		}
		id, _ := p["default_entity_id"].(string)
		if !strings.HasPrefix(id, platform+".") || !checkEntityID(id) {
			t.Errorf("%s: default_entity_id %q is not a valid %s entity id", topic, id, platform)
		}
		uid, _ := p["unique_id"].(string)
		if prev, dup := uniqueIDs[uid]; dup {
			t.Errorf("unique_id %q of %s and %s", uid, prev, topic)
		}
		uniqueIDs[uid] = topic
		if prev, dup := entityIDs[id]; dup {
			t.Errorf("default_entity_id %q of %s and %s", id, prev, topic)
		}
		entityIDs[id] = topic
		dev := p["device"].(map[string]any)
		if dev["model"] != "clipd" || dev["name"] != "box" || dev["sw_version"] != "1.2.3" ||
			!slices.Equal(toStrings(dev["identifiers"]), []string{"clipd_box"}) {
			t.Errorf("%s: device block %v", topic, dev)
		}
		if o := p["origin"].(map[string]any); o["name"] != "clipd" || o["sw_version"] != "1.2.3" {
			t.Errorf("%s: origin block %v", topic, o)
		}
		if !ownedConfig(payload, d.identifier()) {
			t.Errorf("%s: ownedConfig does not recognise its own payload", topic)
		}
		avail := p["availability"].([]any)
		if avail[0].(map[string]any)["topic"] != "clipd/box/availability" {
			t.Errorf("%s: availability %v", topic, avail)
		}
		if platform != "binary_sensor" && (len(avail) != 2 || p["availability_mode"] != "all") {
			t.Errorf("%s: a target's entity should need clipd and its camera: %v", topic, p)
		}
	}
	door := entities["homeassistant/event/box/front_door/config"]
	var ev haEvent
	json.Unmarshal(door, &ev)
	if !slices.Equal(ev.EventTypes, []string{"person", "package", "none"}) || ev.StateTopic != "clipd/box/front/door/event" {
		t.Errorf("event entity of front/door: %+v", ev)
	}
	var sensor haSensor
	json.Unmarshal(entities["homeassistant/sensor/box/front/config"], &sensor)
	if sensor.StateTopic != "clipd/box/front/state" || sensor.JSONAttributesTopic != sensor.StateTopic ||
		sensor.ValueTemplate != "{{ value_json.label }}" || sensor.ExpireAfter != 180 {
		t.Errorf("sensor of front: %+v", sensor)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestEntitySlug(t *testing.T) {
	for in, want := range map[string]string{
		"clipd_box_front":          "clipd_box_front",
		"clipd_Jetson-01_garden-2": "clipd_jetson_01_garden_2",
		"clipd_a__b_":              "clipd_a_b",
		"_x-_-y_":                  "x_y",
	} {
		if got := entitySlug(in); got != want || !checkEntityID("sensor."+got) {
			t.Errorf("entitySlug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateTargets(t *testing.T) {
	cams := []string{"front", "front_door"}
	for _, tc := range []struct {
		targets []Target
		want    string
	}{
		{[]Target{{Camera: "front"}, {Camera: "front", Region: "door"}}, ""},
		{[]Target{{Camera: "back"}}, `camera "back" is not listed`},
		{[]Target{{Camera: "front", Region: "a/b"}}, `region name "a/b"`},
		{[]Target{{Camera: "front"}, {Camera: "front"}}, `target "front" given twice`},
		{[]Target{{Camera: "front_door"}, {Camera: "front", Region: "door"}}, `would share the Home Assistant object id "front_door"`},
		// Labels come from files at run time: see TestLongLabels.
		{[]Target{{Camera: "front", Labels: []string{"", strings.Repeat("x", 2000)}}}, ""},
	} {
		err := ValidateTargets(cams, tc.targets)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateTargets(%v) = %v, want %q", tc.targets, err, tc.want)
		}
	}
	// Every problem is reported, each naming the name to change: the
	// later of two targets that would share an object id.
	err := ValidateTargets([]string{"front_door", "front", "back_yard", "back"}, []Target{
		{Camera: "front_door"}, {Camera: "front"}, {Camera: "front", Region: "door"},
		{Camera: "back", Region: "yard"}, {Camera: "back_yard"},
	})
	var got []TargetError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var te *TargetError
		if !errors.As(e, &te) {
			t.Fatalf("%v is not a *TargetError", e)
		}
		got = append(got, *te)
	}
	if len(got) != 2 || got[0].Camera != "front" || got[0].Region != "door" || got[1].Camera != "back_yard" || got[1].Region != "" ||
		!strings.Contains(got[1].Msg, `targets "back/yard" and "back_yard" would share`) {
		t.Errorf("errors %+v", got)
	}
	if err := ValidateTargets([]string{"a", "a"}, nil); err == nil {
		t.Error("duplicate camera accepted")
	}
	if err := ValidateTargets([]string{"a+b"}, nil); err == nil {
		t.Error("camera name with + accepted")
	}
}

func TestOwnedConfig(t *testing.T) {
	for payload, want := range map[string]bool{
		`{"device":{"identifiers":["clipd_box"]},"origin":{"name":"clipd"}}`:       true,
		`{"device":{"identifiers":"clipd_box"},"origin":{"name":"clipd"}}`:         true,
		`{"device":{"identifiers":["x","clipd_box"]},"origin":{"name":"clipd"}}`:   true,
		`{"device":{"identifiers":["clipd_box2"]},"origin":{"name":"clipd"}}`:      false,
		`{"device":{"identifiers":["clipd_box"]},"origin":{"name":"zigbee2mqtt"}}`: false,
		`{"device":{"identifiers":["clipd_box"]}}`:                                 false,
		`{"device":{"identifiers":[1]},"origin":{"name":"clipd"}}`:                 false,
		`not json`: false,
		``:         false,
		`{"dev":{"ids":["clipd_box"]},"o":{"name":"clipd"}}`:                            false,
		`{"device":{"identifiers":["clipd_box"]},"origin":{"name":"clipd"},"x":` + `1}`: true,
	} {
		if got := ownedConfig([]byte(payload), "clipd_box"); got != want {
			t.Errorf("ownedConfig(%s) = %v, want %v", payload, got, want)
		}
	}
	big := `{"device":{"identifiers":["clipd_box"]},"origin":{"name":"clipd"},"pad":"` + strings.Repeat("x", maxForeignConfig) + `"}`
	if ownedConfig([]byte(big), "clipd_box") {
		t.Error("oversized payload parsed")
	}
}

// FuzzOwnedConfig feeds ownedConfig what anyone may retain on the broker:
// it must not panic, and must accept only payloads naming clipd and the
// identifier.
func FuzzOwnedConfig(f *testing.F) {
	f.Add([]byte(`{"device":{"identifiers":["clipd_box"]},"origin":{"name":"clipd"}}`))
	f.Add([]byte(`{"device":{"identifiers":"clipd_box"},"origin":{"name":"clipd"}}`))
	f.Add([]byte(`{"device":null,"origin":{"name":"clipd"}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if !ownedConfig(payload, "clipd_box") {
			return
		}
		var v struct {
			Origin struct{ Name string } `json:"origin"`
		}
		if len(payload) > maxForeignConfig || json.Unmarshal(payload, &v) != nil || v.Origin.Name != "clipd" {
			t.Fatalf("accepted %q", payload)
		}
	})
}

// A label too long for an event type (label files allow lines of 64 KiB)
// costs only that label: the target's entities are announced, the event
// entity without it, and the log says so without repeating it.
func TestLongLabels(t *testing.T) {
	logs := &syncbuf.Buffer{}
	cfg := validConfig()
	p := newPublisher(cfg, Options{Log: slog.New(slog.NewTextHandler(logs, nil))}, "tcp://127.0.0.1:1", secrets{})
	long := strings.Repeat("x", maxLabelBytes+1)
	if err := p.SetTargets([]string{"front"}, []Target{
		{Camera: "front", Labels: []string{"person", long, strings.Repeat("y", maxLabelBytes)}},
		{Camera: "front", Region: "door", Labels: []string{"cat"}},
	}); err != nil {
		t.Fatal(err)
	}
	configs := map[string][]byte{}
	for _, m := range drain(p) {
		if strings.HasPrefix(m.topic, "homeassistant/") {
			configs[m.topic] = m.payload
		}
	}
	if len(configs) != 7 {
		t.Errorf("%d discovery configs, want 7 (3 per target, 1 camera)", len(configs))
	}
	var ev haEvent
	json.Unmarshal(configs["homeassistant/event/box/front/config"], &ev)
	if !slices.Equal(ev.EventTypes, []string{"person", strings.Repeat("y", maxLabelBytes), "none"}) {
		t.Errorf("event types %.80q", ev.EventTypes)
	}
	if !strings.Contains(logs.String(), "labels left out") || !strings.Contains(logs.String(), "target=front labels=1") ||
		strings.Contains(logs.String(), long[:100]) || strings.Contains(logs.String(), "target=front/door") {
		t.Errorf("log:\n%.2000s", logs)
	}
}
