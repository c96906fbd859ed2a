package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/server"
)

// frameKey names a classified frame across restarts (seq restarts at 1).
type frameKey struct {
	at  int64 // UnixNano of the capture time
	seq uint64
}

func searchMemory(t *testing.T, c *server.Client, cmd server.Command) *history.Result {
	t.Helper()
	cmd.Cmd, cmd.Frames = "search", true
	m, err := c.Command(cmd)
	if err != nil {
		t.Fatalf("search %+v: %v", cmd, err)
	}
	var r history.Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// topFrames is the n best-scoring frames of a result's episodes.
func topFrames(r *history.Result, n int) []history.Frame {
	var all []history.Frame
	for _, ep := range r.Episodes {
		all = append(all, ep.Frames...)
	}
	slices.SortFunc(all, func(a, b history.Frame) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return all[:min(n, len(all))]
}

// The camera memory end to end on the synthetic camera and the demo
// model: a text search for a colour and a label search find frames that
// show that colour (by the truth the camera recorded for each seq); the
// memory survives a restart and a kill -9.
func TestDaemonCameraMemory(t *testing.T) {
	dir := testDir(t)
	labels := dir + "/colours.labels"
	writeFile(t, labels, colourLabels)
	conf := patternConfig(demoBundle(t), labels, "") + "\n"
	conf = "[history]\nenabled = true\nevery = \"0s\"\nthumbnail_every = \"1s\"\n" + conf
	d := startDaemon(t, dir, conf)
	c := d.dial()
	truth := map[frameKey]string{}
	collect := func(n int) {
		for len(truth) < n {
			r := decodeResult(t, nextOf(t, c, "result", 20*time.Second))
			if len(r.Truth.Shapes) == 1 {
				truth[frameKey{r.Time.UnixNano(), r.Seq}] = r.Truth.Shapes[0].Color
			}
		}
	}
	collect(250)
	check := func(c *server.Client, color string, cmd server.Command, phase string) {
		t.Helper()
		res := searchMemory(t, c, cmd)
		top := topFrames(res, 10)
		agree, known := 0, 0
		for _, f := range top {
			got, ok := truth[frameKey{f.Time.UnixNano(), f.Seq}]
			if !ok {
				continue
			}
			known++
			if got == color {
				agree++
			}
		}
		t.Logf("%s: %s search for %s: %d of %d top frames show it (%d scanned, %d episodes)", phase, res.Score, color, agree, known, res.Scanned, len(res.Episodes))
		if known < 8 || agree*100 < 90*known {
			t.Errorf("%s: %s search for %s: %d of %d top frames show it", phase, res.Score, color, agree, known)
		}
		for _, ep := range res.Episodes {
			if ep.Camera != "pat" || ep.Thumbnail == nil || ep.BestScore <= 0 {
				t.Errorf("%s: episode %+v", phase, ep)
				break
			}
		}
	}
	for _, color := range []string{"red", "blue"} {
		check(c, color, server.Command{Text: fmt.Sprintf("a photo of one %s shape.", color)}, "live")
		check(c, color, server.Command{Label: color, Camera: "pat"}, "live")
	}

	// A restart keeps the memory: frames from before are found.
	d.stop()
	d = startDaemon(t, dir, conf)
	c = d.dial()
	check(c, "red", server.Command{Text: "a photo of one red shape.", Since: "1h"}, "after restart")
	collect(len(truth) + 50)

	// clipd search prints the same as a table.
	out, err := exec.Command(clipdBinary(t), "search", "--socket", d.socket, "--since", "1h", "--camera", "pat", "a photo of one red shape.").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "episode(s)") || !strings.Contains(string(out), "TARGET") || !strings.Contains(string(out), "pat ") {
		t.Errorf("clipd search: %v\n%s", err, out)
	}
	out, err = exec.Command(clipdBinary(t), "search", "--socket", d.socket, "--label", "red", "--camera", "pat", "--json").CombinedOutput()
	if err != nil || !json.Valid(out) {
		t.Errorf("clipd search --json: %v\n%s", err, out)
	}

	// kill -9 while it writes: at most the torn tail is lost.
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d = startDaemon(t, dir, conf)
	c = d.dial()
	check(c, "green", server.Command{Label: "green", Camera: "pat"}, "after kill -9")
	m, err := c.Command(server.Command{Cmd: "status"})
	if err != nil {
		t.Fatal(err)
	}
	var st server.Status
	if err := json.Unmarshal(m.Data, &st); err != nil || st.History == nil || st.History.Records < 300 || st.History.Paused {
		t.Errorf("status history after kill -9: %+v, %v", st.History, err)
	}
	d.stop()
}
