package web

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clipd/clipd/internal/browsertest"
	"github.com/clipd/clipd/state"
)

// TestBrowser drives the page in Chromium against a server whose backend
// holds a real camera memory: the tiles show pictures with their regions,
// states and events refresh, a search returns episodes whose pictures are
// that colour's scenes, and clicking one shows its frames.
func TestBrowser(t *testing.T) {
	b := newTestBackend(t, true)
	_, base := start(t, Config{}, b)
	ctx := browsertest.Start(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	// Every tile shows its camera's frame, and then the refreshed ones.
	browsertest.WaitJS(t, ctx, "camera tiles show pictures",
		`document.querySelectorAll("img.live").length === 2 && [...document.querySelectorAll("img.live")].every(i => i.complete && i.naturalWidth > 0)`)
	browsertest.WaitJS(t, ctx, "the drive tile refreshes its frame",
		`(() => { const i = document.querySelector('article[data-camera="drive"] img.live'); return i.src.startsWith("blob:") && i.complete && i.naturalWidth === 320; })()`)

	// The region is drawn where its box lies in the frame.
	geom := browsertest.EvalJS[map[string]float64](t, ctx, `(() => {
	  const a = document.querySelector('article[data-camera="drive"]');
	  const i = a.querySelector("img.live").getBoundingClientRect();
	  const r = a.querySelector("svg rect").getBoundingClientRect();
	  return {rects: a.querySelectorAll("svg rect").length, x: (r.left - i.left) / i.width, y: (r.top - i.top) / i.height,
	          w: r.width / i.width, h: r.height / i.height};
	})()`)
	want := map[string]float64{"rects": 1, "x": 160.0 / 320, "y": 60.0 / 240, "w": 140.0 / 320, "h": 160.0 / 240}
	for k, v := range want {
		if d := geom[k] - v; d < -0.02 || d > 0.02 {
			t.Errorf("region outline %s = %.3f, want %.3f (the box in frame pixels)", k, geom[k], v)
		}
	}

	// States are shown, and a change reaches the page by itself.
	label := browsertest.EvalJS[string](t, ctx, `document.querySelector('article[data-camera="drive"] li[data-region="gate"] .label').textContent`)
	if label != "a blue square" {
		t.Errorf("gate state %q, want a blue square", label)
	}
	since := time.Now().Add(-5 * time.Second)
	b.mu.Lock()
	b.cameras[0].Targets[0].State = state.Current{Label: "a green square", Score: 0.8, Since: since, LabelsVersion: 1}
	b.events = append([]state.Event{{Camera: "drive", Label: "a green square", Previous: "a red circle", Score: 0.8, Since: since, Time: since, Snapshot: b.events[0].Snapshot}}, b.events...)
	b.mu.Unlock()
	browsertest.WaitJS(t, ctx, "the new state appears",
		`document.querySelector('article[data-camera="drive"] li[data-region=""] .label').textContent === "a green square"`)
	browsertest.WaitJS(t, ctx, "the new event appears with its snapshot",
		`(() => { const li = document.querySelectorAll("ol.events li"); return li.length === 4 && li[0].querySelector(".label").textContent === "a green square" &&
		  [...document.querySelectorAll("ol.events img")].every(i => i.complete && i.naturalWidth > 0); })()`)
	sinceShown := browsertest.EvalJS[string](t, ctx, `document.querySelector('article[data-camera="drive"] li[data-region=""] .since time').dateTime`)
	if got, err := time.Parse(time.RFC3339Nano, sinceShown); err != nil || !got.Equal(since) {
		t.Errorf("since %q, want %s", sinceShown, since.UTC().Format(time.RFC3339Nano))
	}

	// A search returns episodes with pictures; the best for red is red.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`input[name="q"]`), "a red shape"),
		chromedp.Click(chromedp.CSS(`form.search button`)),
	); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "episodes with pictures",
		fmt.Sprintf(`document.querySelectorAll("details.episode").length === %d && [...document.querySelectorAll("details.episode img")].every(i => i.complete && i.naturalWidth > 0)`, len(testRuns)))
	if u := browsertest.EvalJS[string](t, ctx, `location.search`); !strings.Contains(u, "q=a+red+shape") {
		t.Errorf("the search is not in the URL: %q", u)
	}
	share := browsertest.EvalJS[map[string]float64](t, ctx, "("+browsertest.ColourShare+`)("details.episode img")`)
	if share["red"] < 0.01 || share["red"] < 3*max(share["green"], share["blue"], share["yellow"]) {
		t.Errorf("the best episode's picture for red has colour shares %v", share)
	}
	target := browsertest.EvalJS[string](t, ctx, `document.querySelector("details.episode .target").textContent`)
	if target != "drive" {
		t.Errorf("best episode of %q, want drive", target)
	}

	// The page as docs/web.png shows it: results, cameras, events.
	browsertest.EvalJS[any](t, ctx, `window.scrollTo(0, 0)`)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, shot)

	// Clicking an episode shows its frames.
	if browsertest.EvalJS[bool](t, ctx, `document.querySelector("details.episode table.frames").checkVisibility()`) {
		t.Error("the frames are shown before the click")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`details.episode summary`))); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "the episode's frames",
		`(() => { const d = document.querySelector("details.episode"); const rows = d.querySelectorAll("table.frames tbody tr");
		  return d.open && rows.length === 12 && d.querySelector("table.frames").checkVisibility(); })()`)
	seqs := browsertest.EvalJS[[]string](t, ctx, `[...document.querySelectorAll("details.episode[open] table.frames tbody tr td:nth-child(2)")].map(td => td.textContent)`)
	for _, s := range seqs {
		var seq uint64
		fmt.Sscan(s, &seq)
		if r, err := runOf("drive", seq); err != nil || r.color != "red" {
			t.Errorf("frame seq %s of the red episode is from the %s run", s, r.color)
		}
	}

}

// saveScreenshot checks the PNG and keeps it with the test's files; with
// CLIPD_UPDATE_SCREENSHOT=1 it also becomes docs/web.png, reduced to a
// palette so that the repository keeps a small file.
func saveScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot %v", b)
	}
	out := filepath.Join(t.TempDir(), "web.png")
	if os.Getenv("CLIPD_UPDATE_SCREENSHOT") == "1" {
		out = filepath.Join("..", "docs", "web.png")
		var b bytes.Buffer
		enc := png.Encoder{CompressionLevel: png.BestCompression}
		if err := enc.Encode(&b, reducePalette(img, 160)); err != nil {
			t.Fatal(err)
		}
		shot = b.Bytes()
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))
}

// reducePalette maps img onto its n most frequent colours (counted at 5
// bits a channel), nearest colour for the rest: a page is mostly flat
// colour, so this keeps it sharp at a third of the size.
func reducePalette(img image.Image, n int) *image.Paletted {
	b := img.Bounds()
	counts := map[[3]uint8]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[[3]uint8{uint8(r>>11) << 3, uint8(g>>11) << 3, uint8(bl>>11) << 3}]++
		}
	}
	type entry struct {
		c [3]uint8
		n int
	}
	var all []entry
	for c, k := range counts {
		all = append(all, entry{c, k})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return fmt.Sprint(all[i].c) < fmt.Sprint(all[j].c)
	})
	var pal color.Palette
	for _, e := range all[:min(n, len(all))] {
		pal = append(pal, color.RGBA{e.c[0] | 4, e.c[1] | 4, e.c[2] | 4, 255})
	}
	out := image.NewPaletted(b, pal)
	draw.Draw(out, b, img, b.Min, draw.Src)
	return out
}

// TestBrowserLogin: beyond loopback the page asks for the token once and
// then works as on loopback, frames included (the cookie goes with them).
func TestBrowserLogin(t *testing.T) {
	b := newTestBackend(t, false)
	_, base := start(t, Config{TokenFile: writeToken(t, testToken)}, b)
	ctx := browsertest.Start(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "the login form", `location.pathname === "/login" && document.querySelector('input[name="token"]') !== null`)
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`input[name="token"]`), "not-the-token-at-all"),
		chromedp.Click(chromedp.CSS(`form button`)),
	); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "a wrong token is refused", `document.querySelector(".error") !== null && document.querySelector(".error").textContent.includes("not the token")`)
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`input[name="token"]`), testToken),
		chromedp.Click(chromedp.CSS(`form button`)),
	); err != nil {
		t.Fatal(err)
	}
	browsertest.WaitJS(t, ctx, "the page after login, with pictures",
		`location.pathname === "/" && document.querySelectorAll("img.live").length === 2 && [...document.querySelectorAll("img.live")].every(i => i.complete && i.naturalWidth > 0)`)
	browsertest.WaitJS(t, ctx, "refreshed frames after login",
		`document.querySelector('article[data-camera="yard"] img.live').src.startsWith("blob:")`)
}
