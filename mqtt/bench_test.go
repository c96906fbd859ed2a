package mqtt

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipd/clipd/internal/mqtttest"
	"github.com/clipd/clipd/state"
)

// BenchmarkFleet: boxes (Publishers with their own device) with cameras
// each publish results and events through one mosquitto at QoS 1; a
// subscriber counts what arrives. Reported: msgs/s (events and results
// sent, until the last one arrived), lost (sent but never received; must
// be 0) and dropped (by the queues; 0 here because the simulated cameras
// never get more than half a queue ahead, i.e. the load stays within
// `queue`). One op is one message.
func BenchmarkFleet(b *testing.B) {
	for _, tc := range []struct{ boxes, cameras int }{{1, 8}, {4, 8}, {16, 4}} {
		b.Run(fmt.Sprintf("boxes=%d/cameras=%d", tc.boxes, tc.cameras), func(b *testing.B) {
			benchFleet(b, tc.boxes, tc.cameras)
		})
	}
}

// A result as the socket sends it, about the size of a real one.
const benchResult = `{"camera":"cam0","seq":1842,"time":"2025-11-27T09:41:07.120443012Z","labels_version":3,` +
	`"top":[{"label":"package","score":0.81},{"label":"person","score":0.12},{"label":"car","score":0.04},` +
	`{"label":"dog","score":0.02},{"label":"cat","score":0.01}],"latency_ms":{"preprocess":2.1,"encode":18.4,"total":21.3}}`

func benchFleet(b *testing.B, boxes, cameras int) {
	br := mqtttest.StartBroker(b)
	var received atomic.Int64
	opts := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", br.Port)).
		SetClientID("bench-sub").SetCleanSession(true).SetOrderMatters(false)
	sub := paho.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	count := func(_ paho.Client, m paho.Message) {
		if t := m.Topic(); strings.HasSuffix(t, "/result") || strings.HasSuffix(t, "/event") {
			received.Add(1)
		}
	}
	if tok := sub.Subscribe("bench/#", 1, count); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}

	var pubs []*Publisher
	camNames := make([]string, cameras)
	var targets []Target
	for c := range cameras {
		camNames[c] = fmt.Sprintf("cam%d", c)
		targets = append(targets, Target{Camera: camNames[c], Labels: []string{"person", "car"}})
	}
	for i := range boxes {
		cfg := testConfig(br.URL(), fmt.Sprintf("box%d", i))
		cfg.TopicPrefix, cfg.PublishResults, cfg.HomeAssistant = "bench", true, false
		p, err := New(cfg, Options{Log: discardLog()})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		p.SetTargets(camNames, targets)
		for _, c := range camNames {
			p.SetCameraOnline(c, true)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !p.Status().Connected {
			if time.Now().After(deadline) {
				b.Fatalf("box %d did not connect: %+v", i, p.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
		pubs = append(pubs, p)
	}

	perCam := max(b.N/(boxes*cameras), 1)
	total := int64(perCam * boxes * cameras)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, p := range pubs {
		for _, cam := range camNames {
			wg.Add(1)
			go func() {
				defer wg.Done()
				result := []byte(strings.Replace(benchResult, "cam0", cam, 1))
				for i := range perCam {
					for p.Status().Queued > DefaultQueue/2 {
						time.Sleep(100 * time.Microsecond)
					}
					if i%10 == 0 {
						label := [2]string{"person", "car"}[i/10%2]
						p.PublishEvent(state.Event{Camera: cam, Label: label, Score: 0.9, LabelsVersion: 1,
							Since: start, Time: time.Now()})
					} else {
						p.PublishResult(cam, "", result)
					}
				}
			}()
		}
	}
	wg.Wait()
	// Wait for the last message, giving up after 10 s without progress.
	last, lastChange := received.Load(), time.Now()
	for received.Load() < total && time.Since(lastChange) < 10*time.Second {
		time.Sleep(time.Millisecond)
		if n := received.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var dropped uint64
	for _, p := range pubs {
		dropped += p.Status().Dropped
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(total-received.Load()), "lost")
	b.ReportMetric(float64(dropped), "dropped")
	if got := received.Load(); got != total || dropped != 0 {
		b.Errorf("sent %d, received %d, dropped %d", total, got, dropped)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BenchmarkCallerCost is what a camera's pipeline pays per call while the
// broker is unreachable (the queue full, so every call also drops one).
func BenchmarkCallerCost(b *testing.B) {
	cfg := validConfig()
	cfg.PublishResults = true
	p := newPublisher(cfg, Options{Log: discardLog()}, "tcp://127.0.0.1:1", secrets{})
	p.SetTargets([]string{"front"}, []Target{{Camera: "front", Labels: []string{"person"}}})
	result := []byte(benchResult)
	ev := state.Event{Camera: "front", Label: "person", Score: 0.9, Since: time.Now(), Time: time.Now()}
	b.Run("PublishResult", func(b *testing.B) {
		for range b.N {
			p.PublishResult("front", "", result)
		}
	})
	b.Run("MarkClassified", func(b *testing.B) {
		for range b.N {
			p.MarkClassified("front", "")
		}
	})
	b.Run("PublishEvent", func(b *testing.B) {
		for range b.N {
			p.PublishEvent(ev)
		}
	})
}
