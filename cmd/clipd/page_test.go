package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clipd/clipd/internal/browsertest"
	"github.com/clipd/clipd/internal/mqtttest"
)

// The camera page of a running daemon on the synthetic camera, in a real
// browser: the tile shows a picture, a state appears, a search for a
// colour returns episodes whose pictures and frames are that colour's
// scenes (by the truth the camera recorded).
func TestDaemonPageInABrowser(t *testing.T) {
	dir := testDir(t)
	labels := dir + "/colours.labels"
	writeFile(t, labels, colourLabels)
	port := mqtttest.FreePort(t)
	conf := patternConfig(demoBundle(t), labels, "state_hold = \"0s\"\n")
	// Scenes held 2 s, so that each has its event and its thumbnail.
	conf = strings.Replace(conf, "pattern?hold=2&", "pattern?hold=30&", 1)
	conf = fmt.Sprintf("[history]\nenabled = true\nevery = \"0s\"\nthumbnail_every = \"1s\"\n[http]\nlisten = \"127.0.0.1:%d\"\n", port) + conf
	d := startDaemon(t, dir, conf)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if r, err := http.Get(base + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", r, err)
	}

	// What the camera drew in each frame, recorded for the whole test.
	c := d.dial()
	var mu sync.Mutex
	truth := map[uint64]string{}
	reds := make(chan struct{}, 100)
	go func() {
		for {
			m, err := c.Next()
			if err != nil {
				return
			}
			var r resultLine
			if m.Type != "result" || m.Decode(&r) != nil || len(r.Truth.Shapes) != 1 {
				continue
			}
			mu.Lock()
			color := r.Truth.Shapes[0].Color
			if color == "red" && truth[r.Seq-1] != "red" {
				reds <- struct{}{}
			}
			truth[r.Seq] = color
			mu.Unlock()
		}
	}()
	for range 2 {
		select {
		case <-reds:
		case <-time.After(2 * time.Minute):
			t.Fatal("fewer than two red scenes in two minutes")
		}
	}

	ctx := browsertest.Start(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "the camera tile shows a picture",
		`(() => { const i = document.querySelector('article[data-camera="pat"] img.live'); return i && i.complete && i.naturalWidth === 240; })()`)
	browsertest.WaitJS(t, ctx, "a state appears",
		`(() => { const l = document.querySelector('article[data-camera="pat"] li[data-region=""] .label'); return l && l.textContent.length > 0; })()`)
	browsertest.WaitJS(t, ctx, "events with snapshots appear",
		`document.querySelectorAll("ol.events li").length > 0 && [...document.querySelectorAll("ol.events img")].every(i => i.complete && i.naturalWidth > 0)`)

	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`input[name="q"]`), "a photo of one red shape."),
		chromedp.Click(chromedp.CSS(`form.search button`)),
	); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "episodes with pictures",
		`document.querySelectorAll("details.episode").length > 0 && [...document.querySelectorAll("details.episode img")].every(i => i.complete && i.naturalWidth > 0)`)
	share := browsertest.EvalJS[map[string]float64](t, ctx, "("+browsertest.ColourShare+`)("details.episode img")`)
	if share["red"] < 0.005 || share["red"] < 3*max(share["green"], share["blue"], share["yellow"]) {
		t.Errorf("the best episode's picture for red has colour shares %v", share)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`details.episode summary`))); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "the episode's frames", `document.querySelector("details.episode[open] table.frames tbody tr") !== null`)
	// The episode's ten best-scoring frames, as the page lists them.
	seqs := browsertest.EvalJS[[]string](t, ctx, `[...document.querySelectorAll("details.episode[open] table.frames tbody tr")]
	  .map(tr => [parseFloat(tr.children[2].textContent), tr.children[1].textContent])
	  .sort((a, b) => b[0] - a[0]).slice(0, 10).map(p => p[1])`)
	mu.Lock()
	defer mu.Unlock()
	red, known := 0, 0
	for _, s := range seqs {
		var seq uint64
		fmt.Sscan(s, &seq)
		if color, ok := truth[seq]; ok {
			known++
			if color == "red" {
				red++
			}
		}
	}
	t.Logf("the best red episode's 10 best frames: %d known, %d red", known, red)
	if known < 8 || red*100 < 90*known {
		t.Errorf("the best red episode's 10 best frames: %d of %d are red", red, known)
	}
	d.stop()
}
