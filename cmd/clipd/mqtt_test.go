package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/server"
)

// Two real daemons (devices box1 and box2) on one real mosquitto: a
// subscriber sees both devices' availability, discovery, states and
// events, and the events equal the socket's; the broker killed and
// restarted is repaired within 15 s; SIGTERM leaves "offline", SIGKILL the
// will.
func TestDaemonsPublishToMQTT(t *testing.T) {
	broker := mqtttest.StartBroker(t)
	sub := mqtttest.Subscribe(t, broker.ConnArgs(), "clipd/#", "homeassistant/#")
	var daemons []*daemonProc
	for _, dev := range []string{"box1", "box2"} {
		dir := testDir(t)
		labels := dir + "/colours.labels"
		writeFile(t, labels, colourLabels)
		conf := patternConfig(demoBundle(t), labels, "state_hold = \"0s\"\n") +
			fmt.Sprintf("\n[mqtt]\nbroker = %q\ndevice = %q\n", broker.URL(), dev)
		// [mqtt] must come before [[camera]] in TOML; put it first.
		conf = "[mqtt]\n" + strings.SplitN(conf, "\n[mqtt]\n", 2)[1] + strings.SplitN(conf, "\n[mqtt]\n", 2)[0]
		daemons = append(daemons, startDaemon(t, dir, conf))
	}
	for _, dev := range []string{"box1", "box2"} {
		sub.WaitPayload("clipd/"+dev+"/availability", "online", 15*time.Second)
		sub.Wait(dev+" sensor discovery", 15*time.Second, func(m mqtttest.Msg) bool {
			return strings.HasPrefix(m.Topic, "homeassistant/sensor/") && strings.Contains(m.Topic, dev) && len(m.Payload) > 0
		})
		sub.Wait(dev+" camera online", 15*time.Second, func(m mqtttest.Msg) bool {
			return m.Topic == "clipd/"+dev+"/pat/status" && string(m.Payload) == "online"
		})
		sub.Wait(dev+" state", 15*time.Second, func(m mqtttest.Msg) bool { return m.Topic == "clipd/"+dev+"/pat/state" })
	}

	// Events on the broker equal those on the socket.
	c := daemons[0].dial()
	var ev server.StateEvent
	m := nextOf(t, c, "event", 30*time.Second)
	json.Unmarshal(m.Raw, &ev)
	sub.Wait("box1's event on the broker", 15*time.Second, func(m mqtttest.Msg) bool {
		if m.Topic != "clipd/box1/pat/event" {
			return false
		}
		var e struct {
			EventType string `json:"event_type"`
			Label     string `json:"label"`
			Time      time.Time
		}
		return json.Unmarshal(m.Payload, &e) == nil && e.Time.Equal(ev.Time) && e.Label == ev.Label && e.EventType == ev.Label
	})
	// A subscriber arriving now gets the retained state and snapshot (a
	// broker sets the retain flag only on what it keeps), never an event.
	late := mqtttest.Subscribe(t, broker.ConnArgs(), "clipd/box1/pat/#")
	late.Wait("box1's retained state", 15*time.Second, func(m mqtttest.Msg) bool { return m.Retained && m.Topic == "clipd/box1/pat/state" })
	late.Wait("box1's retained snapshot", 15*time.Second, func(m mqtttest.Msg) bool {
		return m.Retained && m.Topic == "clipd/box1/pat/snapshot" && len(m.Payload) > 2 && m.Payload[0] == 0xFF && m.Payload[1] == 0xD8
	})
	if late.WaitQuiet(func(m mqtttest.Msg) bool { return m.Retained && m.Topic == "clipd/box1/pat/event" }, time.Second) {
		t.Error("an event was retained")
	}

	// The broker dies and comes back without its retained messages.
	broker.Kill()
	broker.Start()
	fresh := mqtttest.Subscribe(t, broker.ConnArgs(), "clipd/+/availability", "homeassistant/#")
	for _, dev := range []string{"box1", "box2"} {
		fresh.WaitPayload("clipd/"+dev+"/availability", "online", 15*time.Second)
		fresh.Wait(dev+" discovery again", 15*time.Second, func(m mqtttest.Msg) bool {
			return strings.Contains(m.Topic, dev) && strings.HasPrefix(m.Topic, "homeassistant/")
		})
	}

	// SIGTERM: offline, as the daemon says; SIGKILL: offline, as the will.
	daemons[0].stop()
	fresh.WaitPayload("clipd/box1/availability", "offline", 15*time.Second)
	daemons[1].cmd.Process.Signal(syscall.SIGKILL)
	fresh.Wait("box2's will", 60*time.Second, func(m mqtttest.Msg) bool {
		return m.Topic == "clipd/box2/availability" && string(m.Payload) == "offline"
	})
}
