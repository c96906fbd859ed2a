package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clipd/clipd/config"
	"github.com/clipd/clipd/server"
	"github.com/clipd/clipd/systemd"
)

// reload re-reads the config file and applies it camera by camera, all or
// nothing for each: everything that can fail for an added or changed
// camera (its labels, its source settings) is prepared first; only then
// is the old camera stopped and the new one started. A camera whose new
// settings fail keeps running with its old ones, and the running config
// keeps its old entry, so that the next reload tries it again. A file that
// does not parse, or has no camera, changes nothing at all.
func (d *daemon) reload(ctx context.Context) {
	errs := d.applyConfig(ctx)
	rs := &server.ReloadStatus{Time: time.Now().UTC().Format(time.RFC3339), OK: len(errs) == 0}
	for _, err := range errs {
		rs.Errors = append(rs.Errors, err.Error())
	}
	d.mu.Lock()
	d.lastReload = rs
	d.mu.Unlock()
	d.metrics.ConfigReloaded(rs.OK)
	if len(errs) > 0 {
		for _, err := range errs {
			d.log.Error("reload: not applied", "err", err)
		}
		systemd.Status("reload failed: " + errors.Join(errs...).Error())
	}
}

// applyConfig returns what could not be applied.
func (d *daemon) applyConfig(ctx context.Context) []error {
	next, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		err = fmt.Errorf("%w (nothing changed: every camera keeps running as it was)", err)
		d.publish(&server.ErrorReport{File: d.opts.ConfigPath, Message: "reload failed: " + err.Error()})
		return []error{err}
	}
	d.mu.Lock()
	cur := d.conf
	d.mu.Unlock()
	ch := config.Diff(cur, next)
	if ch.ModelChanged || ch.SocketChanged {
		d.log.Warn("[model] and [socket] changes take effect at the next restart")
	}

	// running is the config of each camera once this reload is done.
	running := make(map[string]config.Camera, len(cur.Cameras))
	for _, cc := range cur.Cameras {
		running[cc.Name] = cc
	}
	var errs []error
	fail := func(cc config.Camera, err error, kept bool) {
		what := "not started"
		if kept {
			what = "keeps running with its previous settings"
		}
		err = fmt.Errorf("camera %q: %w; it %s, and the next reload tries again", cc.Name, err, what)
		errs = append(errs, err)
		d.publish(&server.ErrorReport{Camera: cc.Name, File: d.opts.ConfigPath, Message: "reload: " + err.Error()})
	}

	var started, restarted []string
	for _, cc := range next.Cameras {
		added, changed := slices.Contains(ch.Added, cc.Name), slices.Contains(ch.Changed, cc.Name)
		if !added && !changed {
			continue
		}
		c, err := d.prepareCamera(ctx, cc)
		if ctx.Err() != nil {
			if c != nil {
				c.release()
			}
			return append(errs, fmt.Errorf("reload interrupted: %w", ctx.Err()))
		}
		if err != nil {
			fail(cc, err, changed)
			continue
		}
		d.mu.Lock()
		old := d.cameras[cc.Name]
		d.mu.Unlock()
		if err := d.swapIn(old, c); err != nil {
			c.release()
			d.mu.Lock()
			_, still := d.cameras[cc.Name]
			d.mu.Unlock()
			if !still {
				delete(running, cc.Name)
			}
			fail(cc, err, still)
			continue
		}
		running[cc.Name] = cc
		if added {
			started = append(started, cc.Name)
		} else {
			restarted = append(restarted, cc.Name)
		}
	}
	for _, name := range ch.Removed {
		d.stopCamera(name)
		d.metrics.RemoveCamera(name)
		delete(running, name)
	}

	// Keep the new model and socket settings out of the running config so
	// that the next diff still reports them as pending; order the cameras
	// as the new file does, those kept from before last.
	applied := &config.Config{Model: cur.Model, Socket: cur.Socket, Log: next.Log}
	for _, cc := range next.Cameras {
		if rc, ok := running[cc.Name]; ok {
			applied.Cameras = append(applied.Cameras, rc)
			delete(running, cc.Name)
		}
	}
	for _, cc := range cur.Cameras {
		if rc, ok := running[cc.Name]; ok {
			applied.Cameras = append(applied.Cameras, rc)
		}
	}
	d.mu.Lock()
	d.conf = applied
	d.mu.Unlock()
	d.announceTargets()
	d.log.Info("configuration reloaded", "added", started, "removed", ch.Removed, "restarted", restarted, "failed", len(errs))
	return errs
}
