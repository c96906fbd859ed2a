package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/telemetry"
)

func cmdStatus(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "[--socket PATH] [--json]", stderr)
	path := fs.String("socket", server.DefaultPath, "the daemon's socket")
	raw := fs.Bool("json", false, "print the status reply as JSON (docs/socket.md)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	c, err := server.Dial(*path)
	if err != nil {
		return fmt.Errorf("is clipd running? %w", err)
	}
	defer c.Close()
	reply, err := c.Command(server.Command{Cmd: "status"})
	if err != nil {
		return err
	}
	if *raw {
		return printJSON(stdout, reply.Data)
	}
	var st server.Status
	if err := json.Unmarshal(reply.Data, &st); err != nil {
		return fmt.Errorf("reading the status reply: %w", err)
	}
	return renderStatus(stdout, &st, time.Now())
}

// printJSON re-encodes rather than indents, so that "&" in sources prints
// as itself and not as \u0026; UseNumber keeps the counters exact.
func printJSON(w io.Writer, data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// renderStatus writes the status as a person reads it: the daemon, a table
// of cameras, what each camera is fed from and what is wrong with it,
// clients and GPUs. now dates the errors ("12 s ago").
func renderStatus(w io.Writer, st *server.Status, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "clipd %s, model %s (%s), up %s\n", st.Version, st.Model, st.Backend, roughDuration(time.Duration(st.UptimeS*float64(time.Second))))
	p := st.Process
	fmt.Fprintf(&b, "process: %s resident, %s heap, %d goroutines, %d open files\n", bytesIEC(p.RSSBytes), bytesIEC(p.HeapBytes), p.Goroutines, p.FDs)
	if r := st.Reload; r != nil {
		if r.OK {
			fmt.Fprintf(&b, "last reload: %s, applied\n", r.Time)
		} else {
			fmt.Fprintf(&b, "last reload: %s, not all applied:\n", r.Time)
			for _, e := range r.Errors {
				fmt.Fprintf(&b, "  %s\n", e)
			}
		}
	}

	b.WriteString("\n")
	if len(st.Cameras) == 0 {
		b.WriteString("no cameras running\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CAMERA\tSTATE\tFORMAT\tSIZE\tCAPTURE\tCLASSIFIED\tDROPPED\tTOTAL P50/P99")
		for _, c := range st.Cameras {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Name, orDash(c.State), orDash(c.Format), frameSize(c.Width, c.Height),
				rate(c.CaptureFPS), rate(c.ClassifiedPerS), c.Dropped, latency(c.LatencyMS["total"], c.LatencyMS != nil))
		}
		tw.Flush()
		for _, c := range st.Cameras {
			b.WriteString("\n")
			cameraDetails(&b, &c, now)
		}
	}

	b.WriteString("\n")
	clientsLine(&b, st.Clients)
	gpuLines(&b, st.GPU)
	_, err := io.WriteString(w, b.String())
	return err
}

func cameraDetails(b *strings.Builder, c *server.CameraStatus, now time.Time) {
	first := true
	line := func(label, format string, args ...any) {
		lead := strings.Repeat(" ", len(c.Name))
		if first {
			lead, first = c.Name, false
		}
		fmt.Fprintf(b, "%s  %-6s  %s\n", lead, label, fmt.Sprintf(format, args...))
	}
	line("source", "%s", c.Source)
	if c.LastError != "" {
		var when []string
		if t, err := time.Parse(time.RFC3339, c.LastErrorTime); err == nil {
			when = append(when, roughDuration(now.Sub(t))+" ago")
		}
		if c.State == server.CameraRunning {
			when = append(when, "since recovered")
		}
		msg := c.LastError
		if len(when) > 0 {
			msg += " (" + strings.Join(when, ", ") + ")"
		}
		line("error", "%s", msg)
	}
	line("labels", "%s v%d (%s)", c.LabelsFile, c.LabelsVersion, count(c.Labels, "label"))
	if c.LabelsError != "" {
		line("", "the file on disk fails, v%d stays in use: %s", c.LabelsVersion, c.LabelsError)
	}
	frames := []string{fmt.Sprintf("%d captured", c.Captured), fmt.Sprintf("%d classified", c.Classified)}
	for _, n := range []struct {
		v    uint64
		what string
	}{
		{c.Skipped, "skipped (classify_every)"}, {c.BelowThresh, "below threshold"}, {c.Corrupt, "corrupt"},
		{c.NonFinite, "not finite (a broken model)"},
	} {
		if n.v > 0 {
			frames = append(frames, fmt.Sprintf("%d %s", n.v, n.what))
		}
	}
	if c.Restarts > 0 {
		frames = append(frames, count(int(c.Restarts), "source restart"))
	}
	// Wrapped to the width of a terminal, under the first item.
	width := 80 - len(c.Name) - 10
	label := "frames"
	for len(frames) > 0 {
		n, used := 1, len(frames[0])
		for n < len(frames) && used+2+len(frames[n])+1 <= width {
			used += 2 + len(frames[n])
			n++
		}
		text := strings.Join(frames[:n], ", ")
		if frames = frames[n:]; len(frames) > 0 {
			text += ","
		}
		line(label, "%s", text)
		label = ""
	}
}

func clientsLine(b *strings.Builder, clients []server.ClientInfo) {
	if len(clients) == 0 {
		b.WriteString("clients: none\n")
		return
	}
	fmt.Fprintf(b, "clients: %d\n", len(clients))
	for _, c := range clients {
		subscribed := "all cameras"
		if len(c.Cameras) > 0 {
			subscribed = strings.Join(c.Cameras, ", ")
		}
		fmt.Fprintf(b, "  #%d %s: %d queued (%s), %d dropped\n", c.ID, subscribed, c.Queued, bytesIEC(uint64(c.QueuedBytes)), c.Dropped)
	}
}

func gpuLines(b *strings.Builder, g telemetry.Snapshot) {
	if len(g.GPUs) == 0 {
		fmt.Fprintf(b, "GPU: none found (NVML: %s)\n", g.NVML)
		return
	}
	for _, gpu := range g.GPUs {
		name := gpu.Name
		if gpu.Integrated {
			name += " (integrated)"
		}
		if g.Board != "" {
			name += ", " + g.Board
		}
		fmt.Fprintf(b, "GPU %d: %s, read from %s\n", gpu.Index, name, g.Source)
		var parts []string
		if v := gpu.UtilizationPct; v != nil {
			parts = append(parts, fmt.Sprintf("%.0f %% busy", *v))
		}
		if v := gpu.TemperatureC; v != nil {
			parts = append(parts, fmt.Sprintf("%.0f °C", *v))
		}
		if used, total := gpu.MemoryUsedBytes, gpu.MemoryTotalBytes; used != nil && total != nil {
			parts = append(parts, fmt.Sprintf("%s of %s memory", bytesIEC(*used), bytesIEC(*total)))
		}
		if v := gpu.PowerW; v != nil {
			parts = append(parts, fmt.Sprintf("%.1f W", *v))
		}
		if len(parts) > 0 {
			fmt.Fprintf(b, "  %s\n", strings.Join(parts, ", "))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func frameSize(w, h int) string {
	if w == 0 || h == 0 {
		return "-"
	}
	return fmt.Sprintf("%dx%d", w, h)
}

func rate(perSecond float64) string { return fmt.Sprintf("%.1f/s", perSecond) }

func latency(l server.LatencySummary, known bool) string {
	if !known {
		return "-"
	}
	return fmt.Sprintf("%s/%s ms", milliseconds(l.P50), milliseconds(l.P99))
}

// milliseconds keeps a digit below 10 ms, where it matters.
func milliseconds(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// roughDuration is a duration to the second below an hour ("42 s",
// "3m05s") and to the minute above ("2h07m", "3d04h").
func roughDuration(d time.Duration) string {
	d = max(d, 0)
	switch s := int64(d / time.Second); {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

func bytesIEC(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
