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
// does not parse, or has no camera, changes nothing at all. Labels files
// whose last load failed are read again too, whatever the config says.
func (d *daemon) reload(ctx context.Context) {
	d.labels.retryFailed()
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

	// Only the cameras and the log level are applied live. Every other
	// table stays as it runs in the running config, so that the next diff
	// still reports it as pending; the cameras are ordered as the new
	// file has them, those kept from before last.
	applied := *cur
	applied.Cameras = nil
	if d.opts.LogLevel != nil && next.Log.Level != cur.Log.Level {
		// Logged before the change, at the level left behind.
		d.log.Info("log level changed", "level", next.Log.Level)
		d.opts.LogLevel.Set(next.Log.SlogLevel())
		applied.Log.Level = next.Log.Level
	}
	if pending := config.Diff(&applied, next).Tables(); len(pending) > 0 {
		d.log.Warn("these tables' changes take effect at the next restart", "tables", pending)
	}
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
	d.conf = &applied
	d.mu.Unlock()
	d.announceTargets()
	d.log.Info("configuration reloaded", "added", started, "removed", ch.Removed, "restarted", restarted, "failed", len(errs))
	return errs
}
