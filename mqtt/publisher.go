// Package mqtt publishes clipd's target states, events, snapshots and
// (optionally) results to an MQTT broker, with Home Assistant discovery,
// for a box or a fleet of them on one broker. Topics and payloads are
// documented in docs/mqtt.md.
//
// A Publisher never blocks its callers on the broker: every method only
// records what is to be published, under a mutex held for a map update,
// and one private goroutine talks to the broker through Eclipse Paho
// (github.com/eclipse/paho.mqtt.golang, MQTT 3.1.1, which every broker
// speaks). What is retained at the broker (availability, discovery,
// camera status, states, snapshots) is kept as "the latest value per
// topic" and republished on every connect; events and results wait in a
// bounded queue while the broker is unreachable, oldest dropped first.
package mqtt

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipd/clipd/state"
)

// Options are a Publisher's settings that are not [mqtt] keys.
type Options struct {
	// Log receives connection changes; default slog.Default(). It never
	// sees credentials.
	Log *slog.Logger
	// Version is clipd's version, the sw_version of the Home Assistant
	// device and origin.
	Version string
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts, which doubles from the first to the second (±25%).
	// Defaults 500ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// StateRefresh is how often the retained state of a target that is
	// still being classified (MarkClassified or PublishResult since the
	// last refresh) is published again; the sensor's expire_after is
	// three times it, so a target whose frames stop reads unavailable.
	// Default 60s.
	StateRefresh time.Duration
	// BirthDelay is the most Home Assistant's birth message is answered
	// after (a random delay, as its documentation asks). Default 3s.
	BirthDelay time.Duration
	// CloseTimeout bounds how long Close spends sending what is queued
	// and the offline availability. Default 3s.
	CloseTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 500*time.Millisecond)
	def(&o.MaxBackoff, 10*time.Second)
	def(&o.StateRefresh, time.Minute)
	def(&o.BirthDelay, 3*time.Second)
	def(&o.CloseTimeout, 3*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
}

// Status is the connection as status displays show it.
type Status struct {
	Connected bool `json:"connected"`
	// Broker is the configured broker URL (which holds no credentials:
	// Validate rejects them there).
	Broker string `json:"broker"`
	// Queued counts messages waiting to be sent.
	Queued int `json:"queued"`
	// Dropped counts events and results discarded because the queue was
	// full, payloads over the size limits, and what came for a target or
	// camera after a reload removed it.
	Dropped uint64 `json:"dropped"`
	// Published counts messages the broker accepted (PUBACK at QoS 1).
	Published uint64 `json:"published"`
	LastError string `json:"last_error,omitempty"`
}

// Limits on single payloads.
const (
	maxSnapshotBytes = 8 << 20
	maxResultBytes   = 1 << 20
	// maxInflight is how many messages are handed to the client before
	// the first is acknowledged; it keeps QoS 1 from costing a round trip
	// per message.
	maxInflight = 64
)

// Priorities of retained topics: on (re)connect they go out in this order,
// availability first.
const (
	prioAvailability = iota
	prioDiscovery
	prioCamera
	prioState
	prioSnapshot
)

type retainedMsg struct {
	payload []byte
	prio    int
	// remove marks an empty payload that deletes the retained message
	// (and a discovered entity); it is forgotten once sent.
	remove bool
}

type message struct {
	topic   string
	payload []byte
	retain  bool
	prio    int // retained messages only
}

// Publisher is the connection of one clipd to one broker.
type Publisher struct {
	cfg      Config
	opts     Options
	log      *slog.Logger
	url      string
	clientID string
	secrets  secrets
	disc     discovery

	wake  chan struct{}
	birth chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu         sync.Mutex
	retained   map[string]*retainedMsg
	dirty      map[string]struct{}
	order      []string // dirty topics in sending order, see next
	queue      []message
	queueBytes int64
	dropped    uint64
	published  uint64
	connected  bool
	lastErr    string
	closed     bool
	cameras    []string
	targets    map[string]Target   // by Path
	discovered map[string][]byte   // discovery topic → payload last set
	alive      map[string]struct{} // target paths classified since the last refresh
	// announced is set by the first SetTargets that succeeds. Before it
	// the publisher does not know which entities exist, so retained
	// configs of ours found on the broker are only noted in leftover
	// (see subscribe) and the first SetTargets deletes those it does not
	// announce.
	announced bool
	leftover  map[string]struct{}
	// gone holds the target paths and goneCameras the cameras that a
	// SetTargets removed (and deleted the topics of), until one announces
	// them again; the value says whether a late publish was logged. A
	// snapshot written or an event decided just before a reload removed
	// its target would otherwise re-create a retained topic that nothing
	// deletes. What was never announced is not refused: a reload starts
	// new cameras before it announces their targets.
	gone        map[string]bool
	goneCameras map[string]bool
}

// maxLeftover bounds the retained configs noted before the first
// SetTargets: anyone who may publish under the discovery prefix can put
// configs there that look like ours. Beyond it the rest wait for the next
// connection, which replays them.
const maxLeftover = 4096

// New validates cfg, reads its password and certificate files and starts
// connecting in the background: a broker that is down at start is retried
// with capped backoff while the methods already accept messages.
func New(cfg Config, opts Options) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	url, _ := cfg.brokerURL()
	sec, err := cfg.readSecrets()
	if err != nil {
		return nil, err
	}
	p := newPublisher(cfg, opts, url, sec)
	go p.run()
	return p, nil
}

// newPublisher is New without the goroutine.
func newPublisher(cfg Config, opts Options, url string, sec secrets) *Publisher {
	opts.setDefaults()
	p := &Publisher{
		cfg: cfg, opts: opts, log: opts.Log.With("broker", cfg.Broker),
		url: url, clientID: cfg.ClientID, secrets: sec,
		disc: discovery{
			topics:      topics{base: cfg.TopicPrefix + "/" + cfg.Device, discovery: cfg.DiscoveryPrefix, device: cfg.Device},
			qos:         cfg.QoS,
			version:     opts.Version,
			expireAfter: max(1, int(3*opts.StateRefresh/time.Second)),
		},
		wake:        make(chan struct{}, 1),
		birth:       make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		retained:    make(map[string]*retainedMsg),
		dirty:       make(map[string]struct{}),
		targets:     make(map[string]Target),
		discovered:  make(map[string][]byte),
		alive:       make(map[string]struct{}),
		leftover:    make(map[string]struct{}),
		gone:        make(map[string]bool),
		goneCameras: make(map[string]bool),
	}
	if p.clientID == "" {
		p.clientID = "clipd-" + cfg.Device
	}
	p.setRetained(p.disc.availability(), []byte("online"), prioAvailability)
	return p
}

// PublishesResults says whether PublishResult sends results, so that the
// caller can skip encoding them when it does not.
func (p *Publisher) PublishesResults() bool { return p.cfg.PublishResults }

// SetTargets declares the cameras and targets (with their labels) that
// exist now; call it at start and after every reload. It (re)publishes the
// Home Assistant discovery of what is new or changed (a label reload
// changes a target's event types), deletes the discovery and retained
// topics of targets and cameras that are gone, and marks cameras seen for
// the first time offline until SetCameraOnline. The first call also
// deletes the retained configs of a previous run that it does not
// announce (see subscribe). An error (see ValidateTargets) changes
// nothing.
func (p *Publisher) SetTargets(cameras []string, targets []Target) error {
	if err := ValidateTargets(cameras, targets); err != nil {
		return err
	}
	var entities map[string][]byte
	if p.cfg.HomeAssistant {
		entities = p.disc.entities(cameras, targets)
		for _, t := range targets {
			if _, n := usableLabels(t.Labels); n > 0 {
				// The label itself may be 64 KiB: it is not repeated.
				p.log.Warn("mqtt: labels left out of the target's event entity: empty or longer than 1024 bytes",
					"target", t.Path(), "labels", n)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	for topic := range p.discovered {
		if _, ok := entities[topic]; !ok {
			p.removeRetained(topic, prioDiscovery)
			delete(p.discovered, topic)
		}
	}
	// Configs a previous run left: only now is it known which are stale.
	for topic := range p.leftover {
		if _, ok := entities[topic]; !ok {
			p.removeRetained(topic, prioDiscovery)
		}
	}
	clear(p.leftover)
	p.announced = true
	for topic, payload := range entities {
		if old, ok := p.discovered[topic]; !ok || string(old) != string(payload) {
			p.setRetained(topic, payload, prioDiscovery)
			p.discovered[topic] = payload
		}
	}
	next := make(map[string]Target, len(targets))
	for _, t := range targets {
		t.Labels = slices.Clone(t.Labels)
		next[t.Path()] = t
	}
	for path := range p.targets {
		if _, ok := next[path]; !ok {
			p.removeRetained(p.disc.state(path), prioState)
			p.removeRetained(p.disc.snapshot(path), prioSnapshot)
			delete(p.alive, path)
			remember(p.gone, path)
		}
	}
	for path := range next {
		delete(p.gone, path)
	}
	p.targets = next
	for _, cam := range p.cameras {
		if !slices.Contains(cameras, cam) {
			p.removeRetained(p.disc.camera(cam), prioCamera)
			remember(p.goneCameras, cam)
		}
	}
	for _, cam := range cameras {
		delete(p.goneCameras, cam)
	}
	for _, cam := range cameras {
		if r, ok := p.retained[p.disc.camera(cam)]; !ok || r.remove {
			p.setRetained(p.disc.camera(cam), []byte("offline"), prioCamera)
		}
	}
	p.cameras = slices.Clone(cameras)
	p.signal()
	return nil
}

// maxGone bounds the names remembered as removed; they come from the
// configuration, so only a long run of reloads with ever new names
// reaches it, and then a late publish for a removed target can leave a
// retained topic behind, as before.
const maxGone = 4096

func remember(set map[string]bool, name string) {
	if len(set) < maxGone {
		set[name] = false
	}
}

// statePayload is the retained P/T/state message, also the sensor's
// attributes.
type statePayload struct {
	Label         string    `json:"label"`
	Score         float32   `json:"score"`
	Since         time.Time `json:"since"`
	LabelsVersion uint64    `json:"labels_version"`
}

// eventPayload is the P/T/event message: the event with the "event_type"
// Home Assistant's event entity reads.
type eventPayload struct {
	EventType string `json:"event_type"`
	state.Event
}

// PublishEvent publishes a change of state: the event on P/T/event (not
// retained) and the new state on P/T/state (retained).
func (p *Publisher) PublishEvent(ev state.Event) {
	path, ok := p.checkTarget("event", ev.Camera, ev.Region)
	if !ok {
		return
	}
	st, _ := json.Marshal(statePayload{Label: ev.Label, Score: ev.Score, Since: ev.Since, LabelsVersion: ev.LabelsVersion})
	body, _ := json.Marshal(eventPayload{EventType: ev.Label, Event: ev})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.isGone("event", path) {
		return
	}
	p.setRetained(p.disc.state(path), st, prioState)
	p.enqueue(message{topic: p.disc.event(path), payload: body})
}

// PublishSnapshot publishes a target's latest snapshot, raw JPEG bytes,
// retained on P/T/snapshot. The publisher keeps its own copy.
func (p *Publisher) PublishSnapshot(camera, region string, jpeg []byte) {
	path, ok := p.checkTarget("snapshot", camera, region)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.isGone("snapshot", path) {
		return
	}
	if len(jpeg) == 0 || len(jpeg) > maxSnapshotBytes {
		p.dropped++
		return
	}
	p.setRetained(p.disc.snapshot(path), slices.Clone(jpeg), prioSnapshot)
}

// MarkClassified says that a frame of the target was classified, whatever
// its scores: a target whose frames all stay below its threshold (state
// none) is as alive as one that sees something. The targets marked since
// the last state refresh have their retained state published again (see
// Options.StateRefresh), so that their sensors do not expire while the
// pipeline runs. It costs a map update; call it for every scored frame.
func (p *Publisher) MarkClassified(camera, region string) {
	path, ok := p.checkTarget("classification", camera, region)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, gone := p.gone[path]; !p.closed && !gone {
		p.alive[path] = struct{}{}
	}
}

// PublishResult publishes, with publish_results, result (the result's
// JSON; the publisher keeps its own copy) on P/T/result. A result is a
// classified frame, so it also does what MarkClassified does. When
// PublishesResults is false, result may be nil.
func (p *Publisher) PublishResult(camera, region string, result []byte) {
	path, ok := p.checkTarget("result", camera, region)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.isGone("result", path) {
		return
	}
	p.alive[path] = struct{}{}
	if !p.cfg.PublishResults {
		return
	}
	if len(result) > maxResultBytes {
		p.dropped++
		return
	}
	p.enqueue(message{topic: p.disc.result(path), payload: slices.Clone(result)})
}

// SetCameraOnline publishes whether a camera delivers frames, retained on
// P/CAMERA/status (the connectivity binary_sensor).
func (p *Publisher) SetCameraOnline(camera string, online bool) {
	if _, ok := p.checkTarget("camera status", camera, ""); !ok {
		return
	}
	payload := "offline"
	if online {
		payload = "online"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.isGoneIn(p.goneCameras, "camera status", camera) {
		return
	}
	p.setRetained(p.disc.camera(camera), []byte(payload), prioCamera)
}

// Status reports the connection.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Connected: p.connected,
		Broker:    p.cfg.Broker,
		Queued:    len(p.queue) + len(p.dirty),
		Dropped:   p.dropped,
		Published: p.published,
		LastError: p.lastErr,
	}
}

// Close publishes availability "offline" (after what is queued, within
// Options.CloseTimeout), disconnects and waits for the goroutine to end.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
	})
	<-p.done
	return nil
}

func (p *Publisher) checkTarget(what, camera, region string) (string, bool) {
	err := checkName("camera", camera)
	if err == nil && region != "" {
		err = checkName("region", region)
	}
	if err != nil {
		p.log.Warn("mqtt: not publishing "+what, "err", err)
		return "", false
	}
	return targetPath(camera, region), true
}

// The methods below are called with p.mu held.

// isGone says whether path is a target a SetTargets removed, counting the
// publish as dropped and logging the first for each target.
func (p *Publisher) isGone(what, path string) bool { return p.isGoneIn(p.gone, what, path) }

func (p *Publisher) isGoneIn(set map[string]bool, what, name string) bool {
	logged, gone := set[name]
	if !gone {
		return false
	}
	p.dropped++
	if !logged {
		set[name] = true
		p.log.Info("mqtt: not publishing "+what+": a reload removed it", "name", name)
	}
	return true
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Publisher) setRetained(topic string, payload []byte, prio int) {
	p.retained[topic] = &retainedMsg{payload: payload, prio: prio}
	p.dirty[topic] = struct{}{}
	p.signal()
}

func (p *Publisher) removeRetained(topic string, prio int) {
	p.retained[topic] = &retainedMsg{prio: prio, remove: true}
	p.dirty[topic] = struct{}{}
	p.signal()
}

// enqueue appends an event or result, dropping the oldest beyond the
// queue's bounds.
func (p *Publisher) enqueue(m message) {
	if int64(len(m.payload)) > p.cfg.QueueBytes {
		p.dropped++
		return
	}
	p.queue = append(p.queue, m)
	p.queueBytes += int64(len(m.payload))
	p.trimQueue()
	p.signal()
}

func (p *Publisher) trimQueue() {
	n := 0
	for len(p.queue)-n > p.cfg.Queue || p.queueBytes > p.cfg.QueueBytes {
		p.queueBytes -= int64(len(p.queue[n].payload))
		n++
	}
	if n > 0 {
		p.dropped += uint64(n)
		// Reslicing, not copying, keeps a full queue O(1) per message;
		// the cleared slots release their payloads at once.
		clear(p.queue[:n])
		p.queue = p.queue[n:]
	}
}

// next takes the next message to send: dirty retained topics first, in
// priority order, then the queue.
func (p *Publisher) next() (message, bool) {
	if len(p.order) == 0 && len(p.dirty) > 0 {
		// Sorted once per batch: after a reconnect thousands of topics
		// may be dirty, and the lock must stay short.
		for topic := range p.dirty {
			p.order = append(p.order, topic)
		}
		slices.SortFunc(p.order, func(a, b string) int {
			if pa, pb := p.retained[a].prio, p.retained[b].prio; pa != pb {
				return pa - pb
			}
			return strings.Compare(a, b)
		})
	}
	for len(p.order) > 0 {
		topic := p.order[0]
		p.order = p.order[1:]
		if _, ok := p.dirty[topic]; !ok {
			continue
		}
		delete(p.dirty, topic)
		r := p.retained[topic]
		if r.remove {
			delete(p.retained, topic)
		}
		return message{topic: topic, payload: r.payload, retain: true, prio: r.prio}, true
	}
	if len(p.queue) > 0 {
		m := p.queue[0]
		p.queue[0] = message{}
		p.queue = p.queue[1:]
		p.queueBytes -= int64(len(m.payload))
		return m, true
	}
	return message{}, false
}

// requeue takes back messages that were handed to a client that lost its
// connection before the broker acknowledged them.
func (p *Publisher) requeue(ms []message) {
	var events []message
	for _, m := range ms {
		switch {
		case !m.retain:
			events = append(events, m)
		case p.retained[m.topic] != nil:
			// set again meanwhile: the newer value goes out
			p.dirty[m.topic] = struct{}{}
		case m.payload == nil:
			p.retained[m.topic] = &retainedMsg{prio: m.prio, remove: true}
			p.dirty[m.topic] = struct{}{}
		}
	}
	for _, m := range events {
		p.queueBytes += int64(len(m.payload))
	}
	p.queue = append(events, p.queue...)
	p.trimQueue()
}

// markDirty marks every retained topic of the given priorities for
// sending again.
func (p *Publisher) markDirty(prios ...int) {
	for topic, r := range p.retained {
		if slices.Contains(prios, r.prio) {
			p.dirty[topic] = struct{}{}
		}
	}
}

// refreshStates marks the states of the targets classified since the last
// call for sending again; the others are left to expire.
func (p *Publisher) refreshStates() {
	for path := range p.alive {
		if r := p.retained[p.disc.state(path)]; r != nil && !r.remove {
			p.dirty[p.disc.state(path)] = struct{}{}
		}
	}
	clear(p.alive)
}

// The methods below run on the publisher's goroutine.

func (p *Publisher) run() {
	defer close(p.done)
	backoff := p.opts.MinBackoff
	logged := ""
	for {
		c, lost, err := p.connect()
		if err == errClosed {
			return
		}
		if err != nil {
			p.mu.Lock()
			p.lastErr = err.Error()
			p.mu.Unlock()
			if logged != err.Error() {
				logged = err.Error()
				p.log.Warn("mqtt: cannot connect; retrying", "err", err)
			} else {
				p.log.Debug("mqtt: cannot connect; retrying", "err", err)
			}
			wait := time.Duration(float64(backoff) * (0.75 + rand.Float64()/2))
			backoff = min(2*backoff, p.opts.MaxBackoff)
			select {
			case <-p.stop:
				return
			case <-time.After(wait):
			}
			continue
		}
		backoff, logged = p.opts.MinBackoff, ""
		p.log.Info("mqtt: connected", "client_id", p.clientID)
		if p.serve(c, lost) {
			return
		}
	}
}

// connect makes a new client for every connection, so that no state of a
// lost one (its store, its tokens) carries over: what was not acknowledged
// is requeued by serve.
func (p *Publisher) connect() (paho.Client, <-chan error, error) {
	lost := make(chan error, 1)
	o := paho.NewClientOptions().
		AddBroker(p.url).
		SetClientID(p.clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10*time.Second).
		SetKeepAlive(30*time.Second).
		SetPingTimeout(10*time.Second).
		SetWriteTimeout(5*time.Second).
		SetBinaryWill(p.disc.availability(), []byte("offline"), byte(p.cfg.QoS), true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if p.cfg.Username != "" {
		o.SetUsername(p.cfg.Username).SetPassword(p.secrets.password)
	}
	if p.secrets.tls != nil {
		o.SetTLSConfig(p.secrets.tls.Clone())
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-p.stop:
		c.Disconnect(0)
		return nil, nil, errClosed
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	return c, lost, nil
}

type inflight struct {
	m   message
	tok paho.Token
}

// fill hands the client messages until maxInflight are unacknowledged. The
// messages are taken under the lock but published outside it: Publish can
// wait for a slow network, and callers must never wait for that.
func (p *Publisher) fill(c paho.Client, pending []inflight) []inflight {
	p.mu.Lock()
	var batch []message
	for len(pending)+len(batch) < maxInflight {
		m, ok := p.next()
		if !ok {
			break
		}
		batch = append(batch, m)
	}
	p.mu.Unlock()
	for _, m := range batch {
		pending = append(pending, inflight{m, c.Publish(m.topic, byte(p.cfg.QoS), m.retain, m.payload)})
	}
	return pending
}

// serve publishes over one connection until it is lost (false) or the
// publisher is closed (true).
func (p *Publisher) serve(c paho.Client, lost <-chan error) bool {
	p.mu.Lock()
	p.connected = true
	p.markDirty(prioAvailability, prioDiscovery, prioCamera, prioState, prioSnapshot)
	p.mu.Unlock()

	var pending []inflight
	fail := func(err error) bool {
		var back []message
		acked := uint64(0)
		for _, f := range pending {
			if isDone(f.tok) && f.tok.Error() == nil {
				acked++
			} else {
				back = append(back, f.m)
			}
		}
		p.mu.Lock()
		p.published += acked
		p.requeue(back)
		p.connected, p.lastErr = false, err.Error()
		p.mu.Unlock()
		p.log.Warn("mqtt: connection lost; reconnecting", "err", err)
		c.Disconnect(0)
		return false
	}
	if err := p.subscribe(c); err != nil {
		return fail(err)
	}
	refresh := time.NewTicker(p.opts.StateRefresh)
	defer refresh.Stop()
	var birth <-chan time.Time
	for {
		pending = p.fill(c, pending)
		var head <-chan struct{}
		if len(pending) > 0 {
			head = pending[0].tok.Done()
		}
		select {
		case <-head:
			var err error
			n := 0
			for ; n < len(pending) && isDone(pending[n].tok); n++ {
				if err = pending[n].tok.Error(); err != nil {
					break
				}
			}
			p.mu.Lock()
			p.published += uint64(n)
			p.mu.Unlock()
			pending = pending[n:]
			if err != nil {
				return fail(err)
			}
		case err := <-lost:
			return fail(err)
		case <-p.wake:
		case <-refresh.C:
			p.mu.Lock()
			p.refreshStates()
			p.mu.Unlock()
		case <-p.birth:
			birth = time.After(time.Duration(rand.Int64N(int64(p.opts.BirthDelay) + 1)))
		case <-birth:
			birth = nil
			p.mu.Lock()
			p.markDirty(prioAvailability, prioDiscovery, prioCamera, prioState)
			p.mu.Unlock()
		case <-p.stop:
			p.shutdown(c, pending)
			return true
		}
	}
}

func isDone(t paho.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

// subscribe listens for Home Assistant's birth message and for retained
// discovery configs under this device's node id, to delete those of
// entities that no longer exist (a region removed while clipd was down):
// when they arrive if SetTargets has run, else in the first SetTargets.
func (p *Publisher) subscribe(c paho.Client) error {
	subs := map[string]byte{p.disc.ownDiscovery(): 1}
	if p.cfg.HomeAssistant {
		subs[p.disc.haStatus()] = 1
	}
	tok := c.SubscribeMultiple(subs, func(_ paho.Client, m paho.Message) {
		if m.Topic() == p.disc.haStatus() {
			// A retained birth replays on every connect, which is
			// answered already.
			if !m.Retained() && string(m.Payload()) == "online" {
				select {
				case p.birth <- struct{}{}:
				default:
				}
			}
			return
		}
		if !ownedConfig(m.Payload(), p.disc.identifier()) {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch _, current := p.discovered[m.Topic()]; {
		case current || p.closed:
		case !p.announced:
			// Until SetTargets says what exists, every config of ours
			// may belong to a current entity: deleting it now would
			// make Home Assistant drop the entity, and its registry
			// settings, on every restart.
			if len(p.leftover) < maxLeftover {
				p.leftover[m.Topic()] = struct{}{}
			}
		default:
			if r := p.retained[m.Topic()]; r == nil || !r.remove {
				p.removeRetained(m.Topic(), prioDiscovery)
			}
		}
	})
	if !tok.WaitTimeout(10 * time.Second) {
		return errTimeout("subscribe")
	}
	return tok.Error()
}

type errTimeout string

func (e errTimeout) Error() string { return "mqtt: " + string(e) + " timed out" }

// shutdown sends what is queued within CloseTimeout, then the offline
// availability, and disconnects.
func (p *Publisher) shutdown(c paho.Client, pending []inflight) {
	deadline := time.NewTimer(p.opts.CloseTimeout)
	defer deadline.Stop()
	offline := p.disc.availability()
	p.mu.Lock()
	p.retained[offline] = &retainedMsg{payload: []byte("offline"), prio: prioAvailability}
	delete(p.dirty, offline)
	p.mu.Unlock()
drain:
	for {
		pending = p.fill(c, pending)
		if len(pending) == 0 {
			break
		}
		select {
		case <-pending[0].tok.Done():
			if pending[0].tok.Error() != nil {
				break drain // the connection is gone; the will says offline
			}
			pending = pending[1:]
			p.mu.Lock()
			p.published++
			p.mu.Unlock()
		case <-deadline.C:
			break drain
		}
	}
	// Last, so that nothing published after it reads as coming from a
	// clipd that is gone.
	tok := c.Publish(offline, byte(p.cfg.QoS), true, []byte("offline"))
	tok.WaitTimeout(time.Second)
	p.mu.Lock()
	p.connected = false
	p.mu.Unlock()
	c.Disconnect(250)
	p.log.Info("mqtt: disconnected")
}
