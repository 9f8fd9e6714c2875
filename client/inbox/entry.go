package inbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dmqio/dmq/client"
)

// State is the state of an inbox entry.
type State int

const (
	// Pending entries wait for their next attempt or are running.
	Pending State = iota + 1
	// Failed entries used up MaxAttempts and wait for Retry or Delete.
	Failed
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Entry is a message held by the inbox.
type Entry struct {
	// ID names the entry in the inbox: Topic + "/" + MessageID (topic names
	// contain no slash).
	ID string
	// MessageID is the id the broker gave the message.
	MessageID       string
	Topic           string
	Key             string
	Headers         map[string]string
	Body            []byte
	ClientMessageID string
	PublishedAt     time.Time
	// ReceivedAt is when the inbox stored the message.
	ReceivedAt time.Time

	State State
	// Attempts counts failed runs of the handler (reset by Retry).
	Attempts  int
	LastError string
	// NextAttempt is when a pending entry runs next (zero for failed ones).
	NextAttempt time.Time
}

// message is the entry as the business handler receives it.
func (e *Entry) message() *client.Message {
	return &client.Message{
		ID: e.MessageID, Topic: e.Topic, PublishedAt: e.PublishedAt,
		Attempt: e.Attempts + 1, LastFailure: e.LastError,
		Key: e.Key, Headers: e.Headers, Body: e.Body, ClientMessageID: e.ClientMessageID,
	}
}

// entryID names the entry of message id in topic.
func entryID(topic, messageID string) string { return topic + "/" + messageID }

// The file holds these buckets:
//
//	entries:  id → record (JSON)
//	bodies:   id → message body, apart so that an attempt rewrites only the record
//	due:      next-attempt ++ id → empty, for pending entries: the work queue
//	received: received-at ++ id → empty, for pending entries: the oldest pending
//	failed:   failed-at ++ id → empty, for failed entries, oldest first
//	counts:   "pending", "failed" → uint64
//
// Times are Unix nanoseconds, 8 bytes big-endian, so that keys sort by time.
var (
	bucketEntries  = []byte("entries")
	bucketBodies   = []byte("bodies")
	bucketDue      = []byte("due")
	bucketReceived = []byte("received")
	bucketFailed   = []byte("failed")
	bucketCounts   = []byte("counts")
	allBuckets     = [][]byte{bucketEntries, bucketBodies, bucketDue, bucketReceived, bucketFailed, bucketCounts}

	countPending = []byte("pending")
	countFailed  = []byte("failed")
)

// record is an entry as stored, without its body.
type record struct {
	Topic           string            `json:"topic"`
	MessageID       string            `json:"message_id"`
	Key             string            `json:"key,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	ClientMessageID string            `json:"client_message_id,omitempty"`
	PublishedAt     int64             `json:"published_at"`
	ReceivedAt      int64             `json:"received_at"`
	State           State             `json:"state"`
	Attempts        int               `json:"attempts,omitempty"`
	LastError       string            `json:"last_error,omitempty"`
	// NextAttempt is the due key's time while pending; FailedAt the failed
	// key's time once failed.
	NextAttempt int64 `json:"next_attempt,omitempty"`
	FailedAt    int64 `json:"failed_at,omitempty"`
}

func newRecord(m *client.Message, now time.Time) *record {
	return &record{
		Topic: m.Topic, MessageID: m.ID, Key: m.Key, Headers: m.Headers, ClientMessageID: m.ClientMessageID,
		PublishedAt: unixNano(m.PublishedAt), ReceivedAt: now.UnixNano(),
		State: Pending, NextAttempt: now.UnixNano(),
	}
}

func (r *record) id() string { return entryID(r.Topic, r.MessageID) }

func (r *record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("inbox: encode record: %v", err)) // strings, ints and a map of strings always encode
	}
	return b
}

func decodeRecord(id, b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode inbox entry %q: %w", id, err)
	}
	return &r, nil
}

func (r *record) entry(body []byte) Entry {
	e := Entry{
		ID: r.id(), MessageID: r.MessageID, Topic: r.Topic, Key: r.Key, Headers: r.Headers,
		Body: body, ClientMessageID: r.ClientMessageID,
		PublishedAt: fromUnixNano(r.PublishedAt), ReceivedAt: time.Unix(0, r.ReceivedAt),
		State: r.State, Attempts: r.Attempts, LastError: r.LastError,
	}
	if r.State == Pending {
		e.NextAttempt = time.Unix(0, r.NextAttempt)
	}
	return e
}

// unixNano is t in Unix nanoseconds, 0 for the zero time (whose UnixNano
// is undefined).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano.
func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// timeKey is t ++ id, an index key that sorts by time.
func timeKey(t int64, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t))
	return append(k, id...)
}

// splitTimeKey is the inverse of timeKey.
func splitTimeKey(k []byte) (int64, string) {
	return int64(binary.BigEndian.Uint64(k[:8])), string(k[8:])
}
