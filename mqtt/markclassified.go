package mqtt

// MarkClassified is called for every classified frame of a target, also
// one whose result is below its threshold and so never published: it
// keeps the target's sensor from expiring (see Options.StateRefresh) as
// PublishResult does, without a result.
//
// A stand-in of the daemon's branch until the mqtt package's own lands;
// the name and signature are the agreed ones.
func (p *Publisher) MarkClassified(camera, region string) {
	path, ok := p.checkTarget("liveness", camera, region)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.alive[path] = struct{}{}
}
