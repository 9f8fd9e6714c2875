package inbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dmqio/dmq/client"
	bolt "go.etcd.io/bbolt"
)

// put stores m as a pending entry due now, unless it is there already.
func (ib *Inbox) put(m *client.Message) error {
	if m.ID == "" || m.Topic == "" {
		return errors.New("message has no id or no topic")
	}
	rec := newRecord(m, ib.opts.now())
	id := []byte(rec.id())
	val := rec.encode()
	err := ib.commit.Write(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEntries).Get(id) != nil {
			return nil // a redelivery of a message still in the inbox
		}
		if ib.opts.maxPending > 0 && count(tx, countPending) >= uint64(ib.opts.maxPending) {
			return ErrFull
		}
		if err := tx.Bucket(bucketEntries).Put(id, val); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBodies).Put(id, m.Body); err != nil {
			return err
		}
		return addPending(tx, rec, 1)
	})
	if err != nil {
		return err
	}
	ib.notify()
	return nil
}

// addPending adds the index keys of pending rec and counts it (delta 1), or
// removes them and uncounts it (delta -1).
func addPending(tx *bolt.Tx, rec *record, delta int) error {
	id := rec.id()
	due, received := timeKey(rec.NextAttempt, id), timeKey(rec.ReceivedAt, id)
	if delta > 0 {
		if err := tx.Bucket(bucketDue).Put(due, nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketReceived).Put(received, nil); err != nil {
			return err
		}
	} else {
		if err := tx.Bucket(bucketDue).Delete(due); err != nil {
			return err
		}
		if err := tx.Bucket(bucketReceived).Delete(received); err != nil {
			return err
		}
	}
	return addCount(tx, countPending, delta)
}

// addFailed is addPending for failed entries.
func addFailed(tx *bolt.Tx, rec *record, delta int) error {
	k := timeKey(rec.FailedAt, rec.id())
	var err error
	if delta > 0 {
		err = tx.Bucket(bucketFailed).Put(k, nil)
	} else {
		err = tx.Bucket(bucketFailed).Delete(k)
	}
	if err != nil {
		return err
	}
	return addCount(tx, countFailed, delta)
}

// unindex removes rec from the indexes and counts of its state.
func unindex(tx *bolt.Tx, rec *record) error {
	if rec.State == Failed {
		return addFailed(tx, rec, -1)
	}
	return addPending(tx, rec, -1)
}

func count(tx *bolt.Tx, name []byte) uint64 {
	v := tx.Bucket(bucketCounts).Get(name)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func addCount(tx *bolt.Tx, name []byte, delta int) error {
	n := int64(count(tx, name)) + int64(delta)
	if n < 0 {
		return fmt.Errorf("inbox count %s would go negative", name)
	}
	return tx.Bucket(bucketCounts).Put(name, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// getRecord reads the record of id; nil if there is none.
func getRecord(tx *bolt.Tx, id []byte) (*record, error) {
	v := tx.Bucket(bucketEntries).Get(id)
	if v == nil {
		return nil, nil
	}
	return decodeRecord(id, v)
}

// putRecord writes rec back.
func putRecord(tx *bolt.Tx, rec *record) error {
	return tx.Bucket(bucketEntries).Put([]byte(rec.id()), rec.encode())
}

// dueEntries reads up to limit pending entries due at now, earliest first,
// skipping those in skip (running). When fewer are due it also returns
// when the next one is (zero if none is pending).
func (ib *Inbox) dueEntries(now time.Time, limit int, skip map[string]bool) ([]*Entry, time.Time, error) {
	var out []*Entry
	var next time.Time
	err := ib.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			at, id := splitTimeKey(k)
			if at > now.UnixNano() {
				next = time.Unix(0, at)
				return nil
			}
			if skip[id] {
				continue
			}
			rec, err := getRecord(tx, []byte(id))
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("due index names missing entry %q", id)
			}
			e := rec.entry(bytes.Clone(tx.Bucket(bucketBodies).Get([]byte(id))))
			out = append(out, &e)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("inbox %s: read due entries: %w", ib.path, err)
	}
	return out, next, nil
}

// succeeded deletes entry e after its handler succeeded.
func (ib *Inbox) succeeded(e *Entry) error {
	id := []byte(e.ID)
	err := ib.commit.Write(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, id)
		if err != nil || rec == nil || rec.ReceivedAt != e.ReceivedAt.UnixNano() {
			return err // deleted (and maybe stored anew) while it ran
		}
		if err := unindex(tx, rec); err != nil {
			return err
		}
		if err := tx.Bucket(bucketEntries).Delete(id); err != nil {
			return err
		}
		return tx.Bucket(bucketBodies).Delete(id)
	})
	if err != nil {
		return fmt.Errorf("inbox %s: delete processed entry %s: %w", ib.path, e.ID, err)
	}
	return nil
}

// failed records a failed attempt of entry e: it is due again after the
// backoff, or moves to state Failed once MaxAttempts failed.
func (ib *Inbox) failed(e *Entry, cause error) error {
	id := []byte(e.ID)
	now := ib.opts.now()
	err := ib.commit.Write(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, id)
		if err != nil || rec == nil || rec.ReceivedAt != e.ReceivedAt.UnixNano() || rec.State != Pending {
			return err // deleted or changed while it ran
		}
		if err := addPending(tx, rec, -1); err != nil {
			return err
		}
		rec.Attempts++
		rec.LastError = cause.Error()
		if ib.opts.maxAttempts > 0 && rec.Attempts >= ib.opts.maxAttempts {
			rec.State, rec.NextAttempt, rec.FailedAt = Failed, 0, now.UnixNano()
			err = addFailed(tx, rec, 1)
		} else {
			rec.NextAttempt = now.Add(ib.backoff(rec.Attempts)).UnixNano()
			err = addPending(tx, rec, 1)
		}
		if err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("inbox %s: record failed attempt of %s: %w", ib.path, e.ID, err)
	}
	return nil
}
