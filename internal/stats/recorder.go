// Package stats counts, per topic and client and per minute, the messages
// produced, consumed (acked) and failed (nacks, ack timeouts, consumers
// that went away), and writes each finished minute to the metadata store.
// Counting is a map update under a mutex per publish batch or ack batch;
// nothing is written per message.
package stats

import (
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/meta"
)

// MinuteMs is the length of a minute in milliseconds.
const MinuteMs = int64(time.Minute / time.Millisecond)

// Truncate returns the start of the minute holding ms.
func Truncate(ms int64) int64 { return ms - ms%MinuteMs }

// MaxClientsPerMinute bounds the client ids counted separately per topic
// and minute, so the store stays bounded however many clients come and go
// (ids made of host and pid change at every restart). Further clients of
// that minute are counted together under OtherClients.
const MaxClientsPerMinute = 1000

// OtherClients is the client id that counts clients beyond
// MaxClientsPerMinute in one topic and minute.
const OtherClients = "(other clients)"

type key struct {
	minute        int64
	topic, client string
}

type topicMinute struct {
	minute int64
	topic  string
}

type counts struct{ produced, consumed, failures uint64 }

// Recorder accumulates counters until their minute is over.
type Recorder struct {
	server string
	now    func() time.Time

	mu  sync.Mutex
	cur map[key]*counts
	// clients counts the client ids in cur per topic and minute.
	clients map[topicMinute]int
	// totals are per-topic counts since the broker started, for Prometheus.
	totals map[string]*counts
}

// New returns a recorder for this server's name.
func New(server string) *Recorder {
	return &Recorder{server: server, now: time.Now, cur: make(map[key]*counts), clients: make(map[topicMinute]int), totals: make(map[string]*counts)}
}

// Server is the server name counters are recorded under.
func (r *Recorder) Server() string { return r.server }

func (r *Recorder) add(topic, client string, produced, consumed, failures int) {
	if produced == 0 && consumed == 0 && failures == 0 {
		return
	}
	k := key{Truncate(r.now().UnixMilli()), topic, client}
	r.mu.Lock()
	c := r.cur[k]
	if c == nil {
		tm := topicMinute{k.minute, topic}
		if r.clients[tm] >= MaxClientsPerMinute {
			k.client = OtherClients
			c = r.cur[k]
		}
		if c == nil {
			c = &counts{}
			r.cur[k] = c
			r.clients[tm]++
		}
	}
	c.produced += uint64(produced)
	c.consumed += uint64(consumed)
	c.failures += uint64(failures)
	t := r.totals[topic]
	if t == nil {
		t = &counts{}
		r.totals[topic] = t
	}
	t.produced += uint64(produced)
	t.consumed += uint64(consumed)
	t.failures += uint64(failures)
	r.mu.Unlock()
}

// Totals returns per-topic produced, consumed and failure counts since the
// broker started.
func (r *Recorder) Totals() map[string][3]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][3]uint64, len(r.totals))
	for topic, c := range r.totals {
		out[topic] = [3]uint64{c.produced, c.consumed, c.failures}
	}
	return out
}

// Forget drops every counter of topic (deleted): a topic created again under
// the name starts with none.
func (r *Recorder) Forget(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.cur {
		if k.topic == topic {
			delete(r.cur, k)
			delete(r.clients, topicMinute{k.minute, k.topic})
		}
	}
	delete(r.totals, topic)
}

// Produced counts n messages stored for client in topic.
func (r *Recorder) Produced(topic, client string, n int) { r.add(topic, client, n, 0, 0) }

// Consumed counts n messages acked by client in topic.
func (r *Recorder) Consumed(topic, client string, n int) { r.add(topic, client, 0, n, 0) }

// Failed counts n failed deliveries to client in topic.
func (r *Recorder) Failed(topic, client string, n int) { r.add(topic, client, 0, 0, n) }

// TakeFinished removes and returns the counters of minutes before the
// current one, or of every minute with all (at shutdown).
func (r *Recorder) TakeFinished(all bool) []meta.MinuteCount {
	now := Truncate(r.now().UnixMilli())
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []meta.MinuteCount
	for k, c := range r.cur {
		if all || k.minute < now {
			out = append(out, r.record(k, c))
			delete(r.cur, k)
			delete(r.clients, topicMinute{k.minute, k.topic})
		}
	}
	return out
}

// Pending returns the counters of topic not yet written, for queries.
func (r *Recorder) Pending(topic string) []meta.MinuteCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []meta.MinuteCount
	for k, c := range r.cur {
		if k.topic == topic {
			out = append(out, r.record(k, c))
		}
	}
	return out
}

func (r *Recorder) record(k key, c *counts) meta.MinuteCount {
	return meta.MinuteCount{Topic: k.topic, MinuteMs: k.minute, Server: r.server, Client: k.client,
		Produced: c.produced, Consumed: c.consumed, Failures: c.failures}
}
