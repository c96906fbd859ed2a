//go:build soak

package main

// The soak run (make soak): the real daemon for CLIPD_SOAK_DURATION
// (default 10m) on a synthetic camera and an ffmpeg file camera, while
// clients connect and vanish, one never reads, garbage commands arrive,
// the labels file is rewritten and SIGHUP is sent. Every 30 s it samples
// the daemon's RSS, goroutines, open files and result rate, prints the
// table, and fails if any of them drifts out of its band after warm-up.
// It is not part of `make test`: it takes ten minutes.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/server"
)

// The bands a soak must stay in, from the first sample after warm-up.
const (
	soakRSSGrowth       = 0.15 // fraction
	soakGoroutineGrowth = 10
	soakFDGrowth        = 5
	soakWarmup          = 2 // samples
)

type soakSample struct {
	at         time.Duration
	rss        uint64
	heap       uint64
	goroutines int
	fds        int
	results    int64
}

func TestSoak(t *testing.T) {
	duration := 10 * time.Minute
	if s := os.Getenv("CLIPD_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CLIPD_SOAK_DURATION: %v", err)
		}
		duration = d
	}
	interval := 30 * time.Second
	if duration < 5*time.Minute {
		interval = duration / 10
	}
	dir := testDir(t)
	video := mjpegVideo(t, dir, 3)
	labels := filepath.Join(dir, "shapes.labels")
	writeFile(t, labels, shapeLabels)
	conf := patternConfig(demoBundle(t), labels, fmt.Sprintf(`
[[camera]]
name = "file"
source = %q
loop = true
fps = 10
labels = %q
classify_every = "100ms"
`, video, labels))
	conf = strings.Replace(conf, "[log]", "client_queue = 16\n[log]\n", 1)
	conf = strings.Replace(conf, `level = "debug"`, `level = "warn"`, 1)
	d := startDaemon(t, dir, conf)
	pid := d.cmd.Process.Pid

	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(every time.Duration, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
				f(i)
			}
		}()
	}
	// A client that never reads, for the whole run.
	stuck, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	// Clients that connect, read the hello and leave.
	loop(20*time.Millisecond, func(int) {
		if c, err := server.Dial(d.socket); err == nil {
			c.Close()
		}
	})
	// Garbage and oversized ids on a connection that is then dropped.
	loop(100*time.Millisecond, func(i int) {
		nc, err := net.Dial("unix", d.socket)
		if err != nil {
			return
		}
		fmt.Fprintf(nc, "not json %d\n{\"id\":%q,\"cmd\":\"status\"}\n{\"cmd\":\"\\u0000\"}\n", i, strings.Repeat("x", 1000))
		nc.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(nc, 1<<16))
		nc.Close()
	})
	// The labels file rewritten, alternately good and broken.
	loop(5*time.Second, func(i int) {
		content := shapeLabels + fmt.Sprintf("# edit %d\n", i)
		if i%4 == 3 {
			content = "circle\ncircle\n"
		}
		// Not writeFile: t.Fatal must not be called off the test goroutine.
		if os.WriteFile(labels+".tmp", []byte(content), 0o644) == nil {
			os.Rename(labels+".tmp", labels)
		}
	})
	// SIGHUP, with the config unchanged or one camera changed.
	loop(30*time.Second, func(i int) {
		d.cmd.Process.Signal(syscall.SIGHUP)
	})
	// The reader whose results are counted.
	var results atomic.Int64
	reader := d.dial()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := reader.Next()
			if err != nil {
				return
			}
			if m.Type == "result" {
				results.Add(1)
			}
		}
	}()

	status := d.dial()
	sample := func(start time.Time) soakSample {
		reply, err := status.Command(server.Command{Cmd: "status"})
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var st server.Status
		if err := json.Unmarshal(reply.Data, &st); err != nil {
			t.Fatal(err)
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		return soakSample{at: time.Since(start), rss: st.Process.RSSBytes, heap: st.Process.HeapBytes,
			goroutines: st.Process.Goroutines, fds: len(fds), results: results.Swap(0)}
	}
	start := time.Now()
	var samples []soakSample
	for time.Since(start) < duration {
		time.Sleep(interval)
		samples = append(samples, sample(start))
	}
	close(stop)
	reader.Close()
	wg.Wait()

	t.Logf("%8s %8s %8s %10s %4s %10s", "time", "RSS MB", "heap MB", "goroutines", "fds", "results/s")
	for _, s := range samples {
		t.Logf("%8s %8.1f %8.1f %10d %4d %10.1f", s.at.Round(time.Second), float64(s.rss)/1e6, float64(s.heap)/1e6,
			s.goroutines, s.fds, float64(s.results)/interval.Seconds())
	}
	if len(samples) <= soakWarmup {
		t.Fatalf("only %d samples", len(samples))
	}
	base := samples[soakWarmup]
	for _, s := range samples[soakWarmup:] {
		if float64(s.rss) > float64(base.rss)*(1+soakRSSGrowth) {
			t.Errorf("at %v RSS %.1f MB grew more than %.0f%% over %.1f MB", s.at.Round(time.Second), float64(s.rss)/1e6, soakRSSGrowth*100, float64(base.rss)/1e6)
		}
		if s.goroutines > base.goroutines+soakGoroutineGrowth {
			t.Errorf("at %v %d goroutines, %d after warm-up", s.at.Round(time.Second), s.goroutines, base.goroutines)
		}
		if s.fds > base.fds+soakFDGrowth {
			t.Errorf("at %v %d open files, %d after warm-up", s.at.Round(time.Second), s.fds, base.fds)
		}
		if s.results == 0 {
			t.Errorf("at %v no results in the last %v", s.at.Round(time.Second), interval)
		}
	}
	d.stop()
}
