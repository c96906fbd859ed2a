package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clipd/clipd/history"
	"github.com/clipd/clipd/server"
)

// cmdSearch asks a running daemon's camera memory.
func cmdSearch(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("search", `[--since 2h] [--until T] [--camera NAME]... [--label L --camera NAME [--camera ONLY]... | --image PATH | TEXT] [--k N] [--frames] [--json]`, stderr)
	path := fs.String("socket", server.DefaultPath, "the daemon's socket")
	since := fs.String("since", "", "only frames after this: RFC 3339 or a duration back from now (2h, 3d)")
	until := fs.String("until", "", "only frames before this")
	var cameras multiFlag
	fs.Var(&cameras, "camera", `only this camera ("drive"), region ("drive/gate") or whole frame ("drive/"); repeatable; with --label the first names the label set and the rest restrict`)
	label := fs.String("label", "", "rank by this label's probability among the camera's labels instead of a text")
	image := fs.String("image", "", "search for frames like this image (a path the daemon may read: socket classify_dirs)")
	k := fs.Int("k", 0, "episodes to return (default 20)")
	frames := fs.Bool("frames", false, "list each episode's frames")
	raw := fs.Bool("json", false, "print the daemon's JSON reply")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	req, err := searchCommand(pos, *image, *label, cameras, *since, *until, *k, *frames)
	if err != nil {
		return err
	}
	c, err := server.Dial(*path)
	if err != nil {
		return fmt.Errorf("is clipd running? %w", err)
	}
	defer c.Close()
	reply, err := c.Command(req)
	if err != nil {
		return err
	}
	if *raw {
		_, err := stdout.Write(append(reply.Data, '\n'))
		return err
	}
	var res history.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return err
	}
	return printSearch(stdout, &res)
}

// searchCommand is the socket command for clipd search's flags. With
// --label, the first --camera names the camera (or camera/region) whose
// labels score the frames, and any further --camera restricts the frames
// searched, as cameras does for a text search (without them, the label's
// own target is searched).
func searchCommand(pos []string, image, label string, cameras []string, since, until string, k int, frames bool) (server.Command, error) {
	req := server.Command{Cmd: "search", Text: strings.Join(pos, " "), Image: image, Label: label,
		Cameras: cameras, Since: since, Until: until, K: k, Frames: frames}
	if req.Label != "" {
		if len(cameras) == 0 {
			return req, fmt.Errorf("--label needs --camera (the camera, or camera/region, whose labels it is)")
		}
		req.Camera, req.Region, _ = strings.Cut(cameras[0], "/")
		req.Cameras = nil
		if len(cameras) > 1 {
			req.Cameras = cameras[1:]
		}
	}
	return req, nil
}

// printSearch writes episodes as a table, best first.
func printSearch(w io.Writer, res *history.Result) error {
	fmt.Fprintf(w, "%d episode(s), %d frame(s) matched of %d scanned (%s score) in %.0f ms\n",
		len(res.Episodes), res.Matched, res.Scanned, res.Score, res.TookMS)
	for _, ex := range res.Excluded {
		fmt.Fprintf(w, "left out: %d frame(s) of model %s: %s\n", ex.Records, ex.Model, ex.Reason)
	}
	if len(res.Episodes) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tFROM\tTO\tBEST\tSCORE\tFRAMES")
	for _, ep := range res.Episodes {
		target := ep.Camera
		if ep.Region != "" {
			target += "/" + ep.Region
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s #%d\t%.3f\t%d\n", target, localTime(ep.Start), localTime(ep.End),
			localTime(ep.BestTime), ep.BestSeq, ep.BestScore, ep.Matched)
		for _, f := range ep.Frames {
			fmt.Fprintf(tw, "\t\t\t%s #%d\t%.3f\t%s\n", localTime(f.Time), f.Seq, f.Score, f.TopLabel)
		}
	}
	return tw.Flush()
}

func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
