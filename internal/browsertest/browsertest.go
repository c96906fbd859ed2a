// Package browsertest runs Debian's Chromium headless for tests, driven
// with chromedp, with the flags this machine's closed network needs (the
// web page's tests and the daemon's end-to-end page test share it).
package browsertest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium (make deps installs it).
const ChromiumPath = "/usr/bin/chromium"

// Start starts a headless Chromium for the test, with the flags this
// machine's closed network needs (docs: .library env, "Known to work").
func Start(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(ChromiumPath); err != nil {
		t.Fatalf("chromium not installed (Debian package chromium; make deps): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	// Start the browser now, so that a failure to start is reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// WaitJS evaluates a JavaScript expression until it is true, for at most
// 30 s. Errors count as false: a navigation (a form sent) destroys the
// context an evaluation runs in.
func WaitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if ctx.Err() != nil {
			break
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
	t.Fatalf("%s: not within 30 s (last error %v)\npage:\n%.3000s", what, last, page)
}

func EvalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// ColourShare is the JavaScript that counts, in an image, the share of
// pixels close to each synth colour of interest.
const ColourShare = `(sel) => {
  const img = document.querySelector(sel);
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const n = {red: 0, green: 0, blue: 0, yellow: 0};
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], gr = d[i + 1], b = d[i + 2];
    if (r > 160 && gr < 90 && b < 90) n.red++;
    else if (r < 90 && gr > 120 && b < 90) n.green++;
    else if (r < 90 && gr < 110 && b > 150) n.blue++;
    else if (r > 180 && gr > 160 && b < 90) n.yellow++;
  }
  const px = d.length / 4;
  for (const k in n) n[k] /= px;
  return n;
}`
