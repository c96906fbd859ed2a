package config

import (
	"strings"
	"testing"
	"time"
)

func TestOutputTables(t *testing.T) {
	doc := `[model]
state_dir = "state"
[snapshots]
max_files = 10
max_bytes = "64MiB"
[history]
enabled = true
retention = "2d"
every = "500ms"
[mqtt]
broker = "mqtt://127.0.0.1:1883"
device = "box1"
username = "clipd"
password_file = "secret/mqtt.pw"
` + camHead + "state_hold = \"0s\"\n[[camera.region]]\nname = \"r\"\nrect = [0, 0, 1, 1]\n"
	cfg, err := Parse([]byte(doc), "/etc/clipd/clipd.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Snapshots.Dir != "/etc/clipd/state/snapshots" || cfg.Snapshots.MaxFiles != 10 || cfg.Snapshots.MaxBytes != 64<<20 {
		t.Errorf("snapshots %+v", cfg.Snapshots)
	}
	if !cfg.History.Enabled || cfg.History.Dir != "/etc/clipd/state/history" || cfg.History.Retention != 48*time.Hour || cfg.History.Every != 500*time.Millisecond {
		t.Errorf("history %+v", cfg.History)
	}
	if cfg.MQTT.Broker != "mqtt://127.0.0.1:1883" || cfg.MQTT.Device != "box1" || cfg.MQTT.PasswordFile != "/etc/clipd/secret/mqtt.pw" || cfg.MQTT.QoS != 1 {
		t.Errorf("mqtt %+v", cfg.MQTT)
	}
	if len(cfg.Socket.ClassifyDirs) != 1 || cfg.Socket.ClassifyDirs[0] != cfg.Snapshots.Dir {
		t.Errorf("classify_dirs %v, want the snapshot directory by default", cfg.Socket.ClassifyDirs)
	}
	if cfg.Cameras[0].StateHold != 0 || cfg.Cameras[0].Regions[0].StateHold != 0 {
		t.Errorf("state_hold %v / region %v, want 0s inherited", cfg.Cameras[0].StateHold, cfg.Cameras[0].Regions[0].StateHold)
	}
}

func TestOutputTableErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"[mqtt]\nbroker = \"mqtt://h\"\nqos = 2\n", "clipd.toml:3: mqtt.qos: must be 0 or 1, got 2"},
		{"[mqtt]\nbroker = \"ftp://h\"\n", "clipd.toml:2: mqtt.broker:"},
		{"[history]\nretention = \"10m\"\n", "clipd.toml:2: history.retention: must be at least 1h0m0s"},
		{"[history]\nevery = \"soon\"\n", `clipd.toml:2: history.every: invalid duration "soon"`},
		{"[history]\nmax_bytes = \"1MiB\"\n", "clipd.toml:2: history.max_bytes: must be between 16MiB and 1024TiB, got 1048576 bytes"},
		{"[snapshots]\nmax_files = 0\n", "clipd.toml:2: snapshots.max_files: must be between 1 and"},
		{camHead + "state_hold = \"-1s\"\n", "clipd.toml:5: camera[0].state_hold: must be at least"},
		{camHead + "state_hold = 5\n", "clipd.toml:5: camera[0].state_hold: a number must be 0"},
	} {
		_, err := Parse([]byte(tc.doc), "clipd.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n  %v\nwant %q", tc.doc, err, tc.want)
		}
	}
	// A size that cannot be off gets one error for 0, saying what is
	// allowed, not "0 (off) or ..." and then "at least".
	for _, tc := range []struct{ doc, want string }{
		{"[snapshots]\nmax_bytes = 0\n", "clipd.toml:2: snapshots.max_bytes: must be between 1MiB and 1024TiB, got 0 bytes"},
		{"[snapshots]\nmax_bytes = \"0MiB\"\n", "clipd.toml:2: snapshots.max_bytes: must be between 1MiB and 1024TiB, got 0 bytes"},
		{"[snapshots]\nmax_bytes = 1000\n", "clipd.toml:2: snapshots.max_bytes: must be between 1MiB and 1024TiB, got 1000 bytes"},
		{"[history]\nmax_bytes = 0\n", "clipd.toml:2: history.max_bytes: must be between 16MiB and 1024TiB, got 0 bytes"},
	} {
		_, err := Parse([]byte(tc.doc), "clipd.toml")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n  %v\nwant exactly %q", tc.doc, err, tc.want)
		}
	}
}

func TestHTTPTable(t *testing.T) {
	cfg, err := Parse([]byte("[http]\nlisten = \"127.0.0.1:9464\"\n"), "/etc/clipd/clipd.toml")
	if err != nil || cfg.HTTP.Listen != "127.0.0.1:9464" {
		t.Fatalf("http: %+v, %v", cfg.HTTP, err)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[http]\nlisten = \"0.0.0.0:9464\"\n", "clipd.toml:1: http.token_file: required because listen \"0.0.0.0:9464\" is not a loopback address"},
		{"[http]\nlisten = \"nonsense\"\n", "clipd.toml:2: http.listen: want host:port"},
	} {
		if _, err := Parse([]byte(tc.doc), "clipd.toml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// With a broker, names MQTT would refuse when the daemon announces its
// targets (two targets sharing a Home Assistant object id) are errors at
// their line, whichever comes second; without one they are not.
func TestMQTTTargetNames(t *testing.T) {
	cam := func(name, source string) string {
		return "[[camera]]\nname = \"" + name + "\"\nsource = \"" + source + "\"\nlabels = \"l.txt\"\n"
	}
	region := func(name string) string { return "[[camera.region]]\nname = \"" + name + "\"\nrect = [0, 0, 1, 1]\n" }
	const broker = "[mqtt]\nbroker = \"mqtt://127.0.0.1\"\n"
	for _, tc := range []struct{ doc, want string }{
		{broker + cam("front_door", "/dev/video0") + cam("front", "/dev/video1") + region("door"),
			`clipd.toml:12: camera[1].region[0].name: targets "front_door" and "front/door" would share the Home Assistant object id "front_door"`},
		{broker + cam("front", "/dev/video1") + region("door") + cam("front_door", "/dev/video0"),
			`clipd.toml:11: camera[1].name: targets "front/door" and "front_door" would share`},
		// A camera of regions only has no whole-frame target to collide
		// with, but its regions do.
		{broker + cam("a", "/dev/video0") + region("b_c") + cam("a_b", "/dev/video1") + "whole_frame = false\n" + region("c"),
			`clipd.toml:16: camera[1].region[0].name: targets "a/b_c" and "a_b/c" would share`},
	} {
		_, err := Parse([]byte(tc.doc), "clipd.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n  %v\nwant %q", tc.doc, err, tc.want)
		}
	}
	ok := cam("front_door", "/dev/video0") + cam("front", "/dev/video1") + region("door")
	if _, err := Parse([]byte(ok), "clipd.toml"); err != nil {
		t.Errorf("without [mqtt]: %v", err)
	}
	if _, err := Parse([]byte(broker+cam("front", "/dev/video1")+region("door")+region("gate")), "clipd.toml"); err != nil {
		t.Errorf("distinct names: %v", err)
	}
	// A duplicate name is reported once, by the camera checks.
	_, err := Parse([]byte(broker+cam("a", "/dev/video0")+cam("a", "/dev/video1")), "clipd.toml")
	if err == nil || strings.Count(err.Error(), "camera[1].name") != 1 {
		t.Errorf("duplicate camera: %v", err)
	}
}
