// Package broker is the single-node DMQ broker: topics backed by segmented
// logs, consumer groups with durable positions, and the dispatchers that
// hand messages to subscriptions under credit-based flow control.
//
// Guarantees: Publish returns only after the messages are in the log and
// fsynced (unless Config.NoSync). Group positions and acks live in the
// metadata store; after a restart every unacked message is delivered again
// and no acked one is. Memory is bounded by configuration: the dispatcher
// keeps at most Config.MaxUnacked messages between a group's ack floor and
// its read position, and each subscription at most Config.MaxCredit
// deliveries waiting to be sent; payloads are read from the log on demand.
//
// Lock order: Broker.mu, then topic.mu, then group.mu, then
// Subscription.mu. No lock is held while waiting for a log append.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/clock"
	"github.com/dmqio/dmq/internal/delay"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
	"github.com/dmqio/dmq/internal/stats"
	"github.com/dmqio/dmq/internal/trace"
)

// Config configures a broker. Zero values mean the defaults.
type Config struct {
	// DataDir holds the lock file, the metadata store and one log directory
	// per topic.
	DataDir string
	// FS is the file system of the message logs and of the metadata store;
	// nil means the operating system's, vfs.Default (and the data directory
	// is then locked against a second broker). Fault tests put the broker on
	// a file system that can lose power and fail (package faultfs).
	FS vfs.FS
	// WallClock replaces the machine's wall clock, read once when the broker
	// opens (package clock); set by tests of clock steps only.
	WallClock func() time.Time
	// Storage, when set, keeps the logs and the metadata instead of DataDir
	// (a cluster node's replicated store, package replica); FS and the
	// data directory lock are then its business.
	Storage Storage
	// NoSync skips fsync before acking a publish: faster, but a power loss
	// (not a process crash) can lose acked messages.
	NoSync bool
	// MaxBodyBytes is the largest accepted message body (default 4 MiB).
	MaxBodyBytes int
	// SegmentBytes is the size at which a topic's log rolls to a new segment
	// (default 64 MiB).
	SegmentBytes int64
	// AckTimeout is the default time a delivered message may stay unacked
	// before it is redelivered (default 30 s).
	AckTimeout time.Duration
	// RetentionAge and RetentionBytes make whole segments eligible for
	// removal once older than the age or once the topic stores more than the
	// bytes (0: no size limit). A segment is removed only when every group
	// has acked all of it. Default age: 72 hours.
	RetentionAge   time.Duration
	RetentionBytes int64
	// RetentionInterval is how often retention runs (default 1 minute).
	RetentionInterval time.Duration
	// MaxUnacked bounds, per group position, how far delivery may run ahead
	// of the oldest unacked message (default 100,000).
	MaxUnacked int
	// MaxCredit bounds the outstanding credit of one subscription (default 10,000).
	MaxCredit int
	// DedupeWindow is how long a topic remembers client message ids to drop
	// retransmitted duplicates, unless the topic sets its own (default 2 min).
	DedupeWindow time.Duration
	// DedupeMaxIDs bounds the ids remembered per topic (default 500,000);
	// beyond it the window is cut short.
	DedupeMaxIDs int
	// MaxDelay is the longest accepted delay of a delayed message (default 90 days).
	MaxDelay time.Duration
	// AutoApproveEnvs lists the environments (first part of a topic name)
	// whose topics are approved on creation; others start pending (default
	// dev and test). AllowSelfApproval lets a topic's requester approve it.
	AutoApproveEnvs   []string
	AllowSelfApproval bool
	// HeartbeatInterval is how often SDK clients should announce themselves
	// (default 10 s); ClientTimeout is how long without one before a client
	// counts as offline (default 30 s).
	HeartbeatInterval, ClientTimeout time.Duration
	// ClientRetention is how long an offline client stays in the registry
	// (default 24 h).
	ClientRetention time.Duration
	// AbandonedGroupAfter is how long the oldest unacked message of a group
	// without members may wait before the group counts as abandoned (default
	// 24 h; see GroupInfo.Abandoned).
	AbandonedGroupAfter time.Duration
	// ServerName labels this broker's per-minute counters (default: host name).
	ServerName string
	// StatsRetention is how long per-minute counters are kept (default 30 days).
	StatsRetention time.Duration
	// NoTrace turns message tracing off; TraceRetention is how long trace
	// events are kept (default 72 hours).
	NoTrace        bool
	TraceRetention time.Duration
	Logger         *slog.Logger
}

func (c *Config) setDefaults() {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4 << 20
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.RetentionAge == 0 {
		c.RetentionAge = 72 * time.Hour
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 2 * time.Minute
	}
	if c.DedupeMaxIDs == 0 {
		c.DedupeMaxIDs = 500_000
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 90 * 24 * time.Hour
	}
	if c.AutoApproveEnvs == nil {
		c.AutoApproveEnvs = []string{"dev", "test"}
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.ClientTimeout == 0 {
		c.ClientTimeout = 3 * c.HeartbeatInterval
	}
	if c.ClientRetention == 0 {
		c.ClientRetention = 24 * time.Hour
	}
	if c.AbandonedGroupAfter == 0 {
		c.AbandonedGroupAfter = 24 * time.Hour
	}
	if c.ServerName == "" {
		c.ServerName, _ = os.Hostname()
	}
	if c.StatsRetention == 0 {
		c.StatsRetention = 30 * 24 * time.Hour
	}
	if c.TraceRetention == 0 {
		c.TraceRetention = 72 * time.Hour
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Minute
	}
	if c.MaxUnacked == 0 {
		c.MaxUnacked = 100_000
	}
	if c.MaxCredit == 0 {
		c.MaxCredit = 10_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("data directory is not set")
	case c.MaxBodyBytes < 0 || c.MaxBodyBytes > 64<<20:
		return fmt.Errorf("max body bytes %d out of range (1 B to 64 MiB)", c.MaxBodyBytes)
	case c.SegmentBytes < 0:
		return fmt.Errorf("segment bytes %d is negative", c.SegmentBytes)
	case c.AckTimeout < 0 || c.RetentionAge < 0 || c.RetentionBytes < 0:
		return fmt.Errorf("negative durations and sizes are not allowed")
	}
	return nil
}

// Broker is a running single-node broker.
type Broker struct {
	cfg    Config
	clock  *clock.Clock
	logger *slog.Logger
	store  Storage
	meta   *meta.Store // store.Meta()
	delays *delay.Scheduler
	// clients is the registry of SDK clients (heartbeats).
	clients clientRegistry
	// stats counts produced, consumed and failed messages per minute.
	stats *stats.Recorder
	// trace records message lives; nil when tracing is off.
	trace *trace.Recorder

	quit chan struct{}
	wg   sync.WaitGroup

	mu struct {
		sync.RWMutex
		topics map[string]*topic
		closed bool
	}
}

// Open locks the data directory, opens the stores, recovers every topic's
// log and starts the group dispatchers and the retention loop.
func Open(cfg Config) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store := cfg.Storage
	if store == nil {
		local, err := openLocalStorage(cfg)
		if err != nil {
			return nil, err
		}
		store = local
	}
	ms := store.Meta()
	b := &Broker{cfg: cfg, clock: clock.New(cfg.WallClock), logger: cfg.Logger, store: store, meta: ms, quit: make(chan struct{})}
	b.delays = delay.New(b.fireDelayed, b.Now)
	b.stats = stats.New(cfg.ServerName)
	if !cfg.NoTrace {
		b.trace = trace.New(ms, trace.Config{Logger: cfg.Logger})
	}
	b.mu.topics = make(map[string]*topic)
	err := b.load()
	if err == nil {
		err = b.loadClients()
	}
	if err != nil {
		b.closeTopics()
		store.Close()
		return nil, err
	}
	b.goFunc(b.retentionLoop)
	b.goFunc(b.delays.Run)
	b.goFunc(b.minutesLoop)
	if b.trace != nil {
		// Not in b.wg: it stops after the topics, to write their last events.
		go b.trace.Run()
	}
	return b, nil
}

// Config returns the effective configuration (defaults filled in).
func (b *Broker) Config() Config { return b.cfg }

// Now is the broker's time (package clock): what it stamps, schedules and times out by.
func (b *Broker) Now() time.Time { return b.clock.Now() }

// Logger is the broker's logger.
func (b *Broker) Logger() *slog.Logger { return b.logger }

// Store is the metadata store, for the parts of the server that keep
// their own records in it (package auth).
func (b *Broker) Store() *meta.Store { return b.meta }

// load opens every stored topic with its groups.
func (b *Broker) load() error {
	topics, err := b.meta.Topics()
	if err != nil {
		return err
	}
	for _, ti := range topics {
		t, err := b.openTopic(ti)
		if err != nil {
			return err
		}
		groups, err := b.meta.Groups(ti.Name)
		if err != nil {
			return err
		}
		for _, gi := range groups {
			cursors, err := b.meta.Cursors(ti.Name, gi.Name)
			if err != nil {
				return err
			}
			// Count dead letters and hand redriven ones back to their member.
			var count uint64
			redriven := map[string][]uint64{}
			if err := b.meta.ScanDeadLetters(ti.Name, gi.Name, 0, func(dl meta.DeadLetter) bool {
				count++
				if dl.Redriven {
					redriven[dl.Member] = append(redriven[dl.Member], dl.Offset)
				}
				return true
			}); err != nil {
				return err
			}
			for i := range cursors {
				cursors[i].Redriven = redriven[cursors[i].Member]
			}
			t.addGroup(newGroup(t, gi, cursors, count))
		}
		if err := b.loadDelayed(t); err != nil {
			return err
		}
		b.mu.topics[ti.Name] = t
	}
	return nil
}

func (b *Broker) openTopic(ti meta.Topic) (*topic, error) {
	l, err := b.store.OpenLog(ti.Name, seglog.Options{
		SegmentBytes: b.cfg.SegmentBytes,
		NoSync:       b.cfg.NoSync,
		// A record holds the body plus key, headers and framing.
		MaxRecordBytes: b.cfg.MaxBodyBytes + 1<<20,
		Logger:         b.logger.With("topic", ti.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("open log of topic %q: %w", ti.Name, err)
	}
	if r := l.Recovery(); r.Preallocated {
		b.logger.Info("topic log: dropped the zero-filled space preallocated before a crash", "topic", ti.Name, "segment", r.Segment, "dropped_bytes", r.DroppedBytes)
	} else if r.DroppedBytes > 0 {
		b.logger.Warn("recovered topic log", "topic", ti.Name, "segment", r.Segment, "truncated_at", r.TruncatedAt, "dropped_bytes", r.DroppedBytes, "reason", r.Reason)
	}
	window := time.Duration(ti.DedupeWindowMs) * time.Millisecond
	if window == 0 {
		window = b.cfg.DedupeWindow
	}
	t := &topic{b: b, name: ti.Name, info: ti, log: l, groups: make(map[string]*group),
		dedupe: newDedupeWindow(window, b.cfg.DedupeMaxIDs)}
	if err := t.rebuildDedupe(b.Now()); err != nil {
		b.store.CloseLog(ti.Name, l)
		return nil, fmt.Errorf("rebuild duplicate window of topic %q: %w", ti.Name, err)
	}
	return t, nil
}

// goFunc runs f in a goroutine tracked by b.wg.
func (b *Broker) goFunc(f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// Close stops dispatchers and subscriptions, flushes positions and closes
// the stores. It is safe to call twice.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.mu.closed {
		b.mu.Unlock()
		return nil
	}
	b.mu.closed = true
	b.mu.Unlock()
	close(b.quit)
	b.delays.Stop()
	b.wg.Wait()
	b.closeTopics()
	if b.trace != nil {
		b.trace.Stop()
	}
	return b.store.Close()
}

func (b *Broker) closeTopics() {
	for _, t := range b.mu.topics {
		t.close(ErrClosed)
	}
}

func (b *Broker) topic(name string) (*topic, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.mu.closed {
		return nil, ErrClosed
	}
	t := b.mu.topics[name]
	if t == nil {
		if name == "" {
			return nil, errorf(KindInvalid, "topic name is empty")
		}
		return nil, errorf(KindNotFound, "topic %q does not exist", name)
	}
	return t, nil
}

var (
	topicPartRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	groupNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// maxTopicNameLen bounds a topic name (its parts are ASCII).
const maxTopicNameLen = 200

// ValidateTopicName checks the env.dept.name form.
func ValidateTopicName(name string) error {
	if name == "" {
		return errorf(KindInvalid, "topic name is empty")
	}
	if len(name) > maxTopicNameLen {
		return errorf(KindInvalid, "topic name %q… is %d characters long; the limit is %d", name[:40], len(name), maxTopicNameLen)
	}
	parts := strings.Split(name, ".")
	if len(parts) < 3 {
		return errorf(KindInvalid, "topic name %q must have the form env.dept.name (at least three dot-separated parts)", name)
	}
	for _, p := range parts {
		if !topicPartRE.MatchString(p) {
			return errorf(KindInvalid, "topic name %q: each dot-separated part must be non-empty lowercase letters, digits, '-' or '_'", name)
		}
	}
	return nil
}

func validateGroupName(name string) error {
	if name == "" || len(name) > 128 || !groupNameRE.MatchString(name) {
		return errorf(KindInvalid, "group name %q must be 1 to 128 letters, digits, '.', '-' or '_'", name)
	}
	return nil
}

// TopicInfo describes a topic and what it stores.
type TopicInfo struct {
	meta.Topic
	FirstOffset uint64
	NextOffset  uint64
	StoredBytes int64
	Segments    int
	// DelayedPending counts delayed messages waiting for their time;
	// NextDelayedDueMs is when the next is due (0: none).
	DelayedPending   uint64
	NextDelayedDueMs int64
	// Environment is the env part of the name; Status the approval status.
	Environment, Status string
}

// CreateTopic creates a topic.
func (b *Broker) CreateTopic(ti meta.Topic) (TopicInfo, error) {
	if err := ValidateTopicName(ti.Name); err != nil {
		return TopicInfo{}, err
	}
	if err := checkTexts(
		textField{"owner", ti.Owner, MaxOwnerLen},
		textField{"department", ti.Department, MaxDepartmentLen},
		textField{"purpose", ti.Purpose, MaxPurposeLen},
		textField{"requested_by", ti.RequestedBy, MaxOwnerLen},
	); err != nil {
		return TopicInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.closed {
		return TopicInfo{}, ErrClosed
	}
	if b.mu.topics[ti.Name] != nil {
		return TopicInfo{}, errorf(KindExists, "topic %q already exists", ti.Name)
	}
	// A directory left by a deleted topic or an interrupted creation holds
	// nothing acked, so it is cleared.
	if err := b.store.RemoveLog(ti.Name, nil); err != nil {
		return TopicInfo{}, wrap(KindInternal, err, "clear directory of topic %q", ti.Name)
	}
	if ti.DedupeWindowMs < 0 || ti.DedupeWindowMs > (7*24*time.Hour).Milliseconds() {
		return TopicInfo{}, errorf(KindInvalid, "duplicate window %s out of range (0 to 168h)", time.Duration(ti.DedupeWindowMs)*time.Millisecond)
	}
	ti.CreatedAtMs = b.Now().UnixMilli()
	b.admissionStatus(&ti)
	if ti.Status == StatusPending && strings.TrimSpace(ti.Owner) == "" {
		return TopicInfo{}, errorf(KindInvalid, "topic %q needs an owner: topics of environment %q wait for an approval, and the approver must know who owns them", ti.Name, environment(ti.Name))
	}
	t, err := b.openTopic(ti)
	if err != nil {
		return TopicInfo{}, wrap(KindInternal, err, "create topic %q", ti.Name)
	}
	if err := b.meta.PutTopic(ti); err != nil {
		t.close(ErrClosed)
		b.store.RemoveLog(ti.Name, nil)
		return TopicInfo{}, wrap(KindInternal, err, "store topic %q", ti.Name)
	}
	b.mu.topics[ti.Name] = t
	b.logger.Info("topic created", "topic", ti.Name)
	return t.describe(), nil
}

// GetTopic describes one topic.
func (b *Broker) GetTopic(name string) (TopicInfo, error) {
	t, err := b.topic(name)
	if err != nil {
		return TopicInfo{}, err
	}
	return t.describe(), nil
}

// ListTopics describes the topics that match f, sorted by name.
func (b *Broker) ListTopics(f TopicFilter) []TopicInfo {
	ts := b.topicList()
	out := make([]TopicInfo, 0, len(ts))
	for _, t := range ts {
		if ti := t.describe(); f.match(ti) {
			out = append(out, ti)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DeleteTopic removes a topic with its groups and messages. Subscriptions
// on it end with a NotFound error.
func (b *Broker) DeleteTopic(name string) error {
	if name == "" {
		return errorf(KindInvalid, "topic name is empty")
	}
	b.mu.Lock()
	t := b.mu.topics[name]
	if t == nil {
		b.mu.Unlock()
		return errorf(KindNotFound, "topic %q does not exist", name)
	}
	delete(b.mu.topics, name)
	b.mu.Unlock()
	b.delays.Forget(name)
	t.delayMu.Lock() // wait for a delivery of due delayed messages in progress
	t.delayMu.Unlock()
	t.close(errorf(KindNotFound, "topic %q was deleted", name))
	b.stats.Forget(name) // a topic created again starts with no statistics
	if err := b.meta.DeleteTopic(name); err != nil {
		return wrap(KindInternal, err, "delete topic %q", name)
	}
	if err := b.store.RemoveLog(name, nil); err != nil {
		return wrap(KindInternal, err, "remove log of topic %q", name)
	}
	b.logger.Info("topic deleted", "topic", name)
	return nil
}

// validateMessages checks a publish batch before anything is stored.
func (b *Broker) validateMessages(msgs []*message.Message) error {
	if len(msgs) == 0 {
		return errorf(KindInvalid, "publish carries no message")
	}
	for i, m := range msgs {
		switch {
		case len(m.Body) == 0:
			return errorf(KindInvalid, "message %d: body is empty", i)
		case len(m.Body) > b.cfg.MaxBodyBytes:
			return errorf(KindInvalid, "message %d: body of %d bytes exceeds the limit of %d bytes", i, len(m.Body), b.cfg.MaxBodyBytes)
		case len(m.Key) > 1024:
			return errorf(KindInvalid, "message %d: key longer than 1024 bytes", i)
		}
		hb := 0
		for k, v := range m.Headers {
			hb += len(k) + len(v)
		}
		if hb > 64<<10 {
			return errorf(KindInvalid, "message %d: headers larger than 64 KiB", i)
		}
	}
	return nil
}

// encode stamps the publish time and encodes msgs as log payloads, into a
// buffer from encodePool; the caller gives it back with releaseEncoded once
// the log is done with the payloads (their append completed).
func encode(msgs []*message.Message, idx []int, nowMs int64) ([][]byte, *[]byte) {
	size := 0
	for _, i := range idx {
		msgs[i].PublishedAtMs = nowMs
		size += msgs[i].EncodedSize()
	}
	bp := encodePool.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, 0, size)
	}
	buf := (*bp)[:0]
	payloads := make([][]byte, len(idx))
	for k, i := range idx {
		start := len(buf)
		buf = message.Append(buf, msgs[i])
		payloads[k] = buf[start:len(buf):len(buf)]
	}
	*bp = buf
	return payloads, bp
}

// encodePool recycles the buffers publishes are encoded into: a fresh one
// per batch was a third of the bytes the broker allocated in W1, zeroed
// before use.
var encodePool = sync.Pool{New: func() any { return new([]byte) }}

// releaseEncoded gives an encode buffer back, unless it grew very large.
func releaseEncoded(bp *[]byte) {
	if cap(*bp) <= 4<<20 {
		*bp = (*bp)[:0]
		encodePool.Put(bp)
	}
}

// Publish stores msgs durably in topic and returns one result per message:
// its offset, or the offset of the message it duplicates (same client
// message id inside the topic's duplicate window).
func (b *Broker) Publish(ctx context.Context, topicName string, from Origin, msgs []*message.Message) ([]PublishResult, error) {
	type outcome struct {
		rs  []PublishResult
		err error
	}
	ch := make(chan outcome, 1)
	b.PublishAsync(topicName, from, msgs, func(rs []PublishResult, err error) { ch <- outcome{rs, err} })
	select {
	case o := <-ch:
		return o.rs, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// PublishAsync is Publish without waiting: done is called once, possibly
// from another goroutine, when the messages are stored or failed. done must
// not block. from names the producer in statistics and the trace.
func (b *Broker) PublishAsync(topicName string, from Origin, msgs []*message.Message, done func([]PublishResult, error)) {
	err := checkClientID(from.Client)
	var t *topic
	if err == nil {
		t, err = b.topic(topicName)
	}
	if err == nil {
		err = t.usable()
	}
	if err != nil {
		done(nil, err)
		return
	}
	startMs := b.Now().UnixMilli() // the trace's publish time: before any delivery
	b.publishAsync(t, msgs, func(rs []PublishResult, err error) {
		if err == nil {
			n := 0
			for _, r := range rs {
				if !r.Duplicate {
					n++
				}
			}
			b.stats.Produced(topicName, from.Client, n)
			b.tracePublished(topicName, from, msgs, rs, startMs)
		}
		done(rs, err)
	})
}

// publishAsync is PublishAsync on a topic whatever its status (due delayed
// messages are stored even while their topic is disabled).
func (b *Broker) publishAsync(t *topic, msgs []*message.Message, done func([]PublishResult, error)) {
	topicName := t.name
	err := b.validateMessages(msgs)
	if err != nil {
		done(nil, err)
		return
	}
	nowMs := b.Now().UnixMilli()
	if err := b.validateDelay(msgs, nowMs); err != nil {
		done(nil, err)
		return
	}
	comp := &completion{parts: 1, results: make([]PublishResult, len(msgs)), done: done}
	plan, cutShort := t.dedupe.plan(msgs, nowMs, comp)
	if cutShort {
		b.logger.Warn("duplicate window cut short: too many client message ids", "topic", topicName, "max_ids", t.dedupe.maxIDs)
	}
	comp.sameAs = plan.sameAs
	// Split what is to be stored: due now goes to the log, later to the
	// delay store. A deliver-at in the past means now.
	var now, later []int
	for _, i := range plan.store {
		if msgs[i].DeliverAtMs > nowMs {
			later = append(later, i)
		} else {
			now = append(now, i)
		}
	}
	if len(later) > 0 {
		comp.mu.Lock()
		comp.parts++
		comp.mu.Unlock()
		// Off the caller's goroutine: the delay store's fsync is shared by
		// concurrent publishes (Pebble groups commits).
		go func() {
			ids, err := b.scheduleDelayed(t, msgs, later, nowMs)
			res := make([]PublishResult, len(later))
			for k := range later {
				if err == nil {
					res[k] = PublishResult{DelayID: ids[k]}
				}
			}
			b.settlePublish(t, msgs, later, res, err, nowMs, comp)
		}()
	}
	if len(now) == 0 {
		comp.finish(nil)
		return
	}
	payloads, buf := encode(msgs, now, nowMs)
	b.store.Append(topicName, t.log, payloads, func(first uint64, err error) {
		releaseEncoded(buf) // the log copied the payloads before it completed the append
		if errors.Is(err, seglog.ErrFailed) {
			t.recoverLog()
		}
		if err != nil {
			err = appendError(topicName, err)
		}
		res := make([]PublishResult, len(now))
		for k := range now {
			res[k] = PublishResult{Offset: first + uint64(k)}
		}
		if err == nil {
			t.notifyGroups()
		}
		b.settlePublish(t, msgs, now, res, err, nowMs, comp)
	})
}

// settlePublish records the results of one stored part of a publish:
// msgs[idx[k]] got res[k], or the part failed with err.
func (b *Broker) settlePublish(t *topic, msgs []*message.Message, idx []int, res []PublishResult, err error, nowMs int64, comp *completion) {
	if err == nil {
		comp.mu.Lock()
		for k, i := range idx {
			comp.results[i] = res[k]
		}
		comp.mu.Unlock()
	}
	for _, n := range t.dedupe.settle(msgs, idx, res, err, nowMs) {
		n()
	}
	comp.finish(err)
}

func appendError(topic string, err error) error {
	switch {
	case isNoSpace(err):
		return wrap(KindExhausted, err, "store message in topic %q: disk full", topic)
	case errors.Is(err, seglog.ErrClosed):
		return ErrClosed
	default:
		return wrap(KindUnavailable, err, "store message in topic %q", topic)
	}
}

// GroupSpec describes a group to create.
type GroupSpec struct {
	Topic      string
	Name       string
	Mode       string // ModeCluster (default) or ModeBroadcast
	AckMode    string // AckBusiness (default) or AckAuto
	AckTimeout time.Duration
	Earliest   bool // start at the oldest stored message instead of the end
	// RetryBackoff is the wait before redelivering a nacked message, by
	// failure number (the last value repeats); nil means DefaultRetryBackoff.
	RetryBackoff []time.Duration
	// MaxAttempts is how many deliveries a message gets before it moves to
	// the group's dead letters; 0 means DefaultMaxAttempts.
	MaxAttempts int
}

// DefaultRetryBackoff is the retry schedule of groups that set none.
var DefaultRetryBackoff = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// DefaultMaxAttempts is the max attempts of groups that set none.
const DefaultMaxAttempts = 16

// validateRetry checks a retry schedule and max attempts.
func validateRetry(backoff []time.Duration, maxAttempts int) error {
	if len(backoff) > 100 {
		return errorf(KindInvalid, "retry schedule has %d steps; at most 100", len(backoff))
	}
	for i, d := range backoff {
		if d < 0 || d > 7*24*time.Hour {
			return errorf(KindInvalid, "retry schedule step %d is %s; each step must be between 0 and 168h", i+1, d)
		}
	}
	if maxAttempts < 0 || maxAttempts > 10_000 {
		return errorf(KindInvalid, "max attempts %d out of range (1 to 10000)", maxAttempts)
	}
	return nil
}

// CreateGroup creates a consumer group.
func (b *Broker) CreateGroup(spec GroupSpec) (GroupInfo, error) {
	if err := validateGroupName(spec.Name); err != nil {
		return GroupInfo{}, err
	}
	if spec.Mode == "" {
		spec.Mode = ModeCluster
	}
	if spec.AckMode == "" {
		spec.AckMode = AckBusiness
	}
	if spec.Mode != ModeCluster && spec.Mode != ModeBroadcast {
		return GroupInfo{}, errorf(KindInvalid, "group mode %q is not cluster or broadcast", spec.Mode)
	}
	if spec.AckMode != AckBusiness && spec.AckMode != AckAuto {
		return GroupInfo{}, errorf(KindInvalid, "ack mode %q is not business or auto", spec.AckMode)
	}
	if spec.AckTimeout == 0 {
		spec.AckTimeout = b.cfg.AckTimeout
	}
	if spec.AckTimeout < 100*time.Millisecond || spec.AckTimeout > 24*time.Hour {
		return GroupInfo{}, errorf(KindInvalid, "ack timeout %s out of range (100ms to 24h)", spec.AckTimeout)
	}
	if err := validateRetry(spec.RetryBackoff, spec.MaxAttempts); err != nil {
		return GroupInfo{}, err
	}
	if spec.RetryBackoff == nil {
		spec.RetryBackoff = DefaultRetryBackoff
	}
	if spec.MaxAttempts == 0 {
		spec.MaxAttempts = DefaultMaxAttempts
	}
	t, err := b.topic(spec.Topic)
	if err != nil {
		return GroupInfo{}, err
	}
	return t.createGroup(spec)
}

// GetGroup describes one group.
func (b *Broker) GetGroup(topicName, name string) (GroupInfo, error) {
	g, err := b.group(topicName, name)
	if err != nil {
		return GroupInfo{}, err
	}
	return g.describe(), nil
}

// DeleteGroup removes a group with its positions, acks and dead letters. Its
// subscriptions end with KindNotFound; what only it held back from retention may
// go. A group created again under the name starts afresh.
func (b *Broker) DeleteGroup(topicName, name string) error {
	g, err := b.group(topicName, name)
	if err != nil {
		return err
	}
	t := g.t
	// Stopped first (its cursors persisted for the last time), still listed, so
	// that a group of the same name cannot be created in between.
	g.stop(errorf(KindNotFound, "group %q of topic %q was deleted", name, topicName))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.groups[name] != g {
		return errorf(KindNotFound, "group %q of topic %q does not exist", name, topicName)
	}
	if err := b.meta.DeleteGroup(topicName, name); err != nil {
		return wrap(KindInternal, err, "delete group %q of topic %q", name, topicName)
	}
	delete(t.groups, name)
	b.logger.Info("group deleted", "topic", topicName, "group", name)
	return nil
}

// ListGroups describes the groups of a topic, sorted by name.
func (b *Broker) ListGroups(topicName string) ([]GroupInfo, error) {
	t, err := b.topic(topicName)
	if err != nil {
		return nil, err
	}
	gs := t.groupList()
	out := make([]GroupInfo, len(gs))
	for i, g := range gs {
		out[i] = g.describe()
	}
	sortGroups(out)
	return out, nil
}

func (b *Broker) group(topicName, name string) (*group, error) {
	t, err := b.topic(topicName)
	if err != nil {
		return nil, err
	}
	g := t.group(name)
	if g == nil {
		if name == "" {
			return nil, errorf(KindInvalid, "group name is empty")
		}
		return nil, errorf(KindNotFound, "group %q of topic %q does not exist", name, topicName)
	}
	return g, nil
}

// Subscribe attaches a consumer with clientID to a group. Broadcast groups
// need a client id: it names the member's own position.
func (b *Broker) Subscribe(topicName, groupName, clientID string) (*Subscription, error) {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return nil, err
	}
	if err := g.t.usable(); err != nil {
		return nil, err
	}
	if clientID == "" && g.info.Mode == ModeBroadcast {
		return nil, errorf(KindInvalid, "a client id is required to join broadcast group %q", groupName)
	}
	if len(clientID) > 256 {
		return nil, errorf(KindInvalid, "client id longer than 256 bytes")
	}
	s := &Subscription{g: g, clientID: clientID, ready: make(chan struct{}, 1), done: make(chan struct{})}
	if err := g.attach(s); err != nil {
		return nil, err
	}
	g.notify()
	return s, nil
}

// Ack acknowledges messages delivered to clientID in a group.
func (b *Broker) Ack(topicName, groupName, clientID string, offs []uint64) error {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return err
	}
	return g.ackOrNack(clientID, offs, false, "")
}

// Nack gives messages delivered to clientID back for redelivery.
func (b *Broker) Nack(topicName, groupName, clientID string, offs []uint64, reason string) error {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return err
	}
	return g.ackOrNack(clientID, offs, true, reason)
}

// Read returns the stored message at off, for inspection.
func (b *Broker) Read(topicName string, off uint64) (message.Message, error) {
	t, err := b.topic(topicName)
	if err != nil {
		return message.Message{}, err
	}
	p, err := t.log.Read(off)
	if err != nil {
		if errors.Is(err, seglog.ErrOutOfRange) {
			return message.Message{}, errorf(KindNotFound, "message id %d is not stored in topic %q", off, topicName)
		}
		return message.Message{}, wrap(KindInternal, err, "read message %d of topic %q", off, topicName)
	}
	return message.Decode(p)
}

// EndSubscriptions ends every subscription with ErrClosed, so their streams
// finish before a shutdown; groups and positions stay as they are.
func (b *Broker) EndSubscriptions() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, t := range b.mu.topics {
		for _, g := range t.groupList() {
			g.mu.Lock()
			for _, c := range g.mu.cursors {
				for _, s := range c.sessions {
					s.end(ErrClosed)
				}
			}
			g.mu.Unlock()
		}
	}
}

// checkMetaPresent refuses to start on topic logs without the metadata store that
// describes them (meta.CheckPresent).
func checkMetaPresent(cfg Config) error {
	return meta.CheckPresent(cfg.FS, cfg.DataDir, func() ([]string, error) {
		return diskfs.ListDirs(cfg.FS, filepath.Join(cfg.DataDir, "topics"))
	})
}
