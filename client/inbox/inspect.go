package inbox

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats describes the inbox at one moment.
type Stats struct {
	// Pending entries wait for an attempt or are running.
	Pending int
	// Failed entries used up MaxAttempts.
	Failed int
	// Running is the number of business handlers running now.
	Running int
	// OldestPending is how long the oldest pending entry has been in the
	// inbox (zero when none is pending).
	OldestPending time.Duration
}

// Stats returns counts of the entries and the age of the oldest pending one.
func (ib *Inbox) Stats() (Stats, error) {
	if ib.closed.Load() {
		return Stats{}, ErrClosed
	}
	var st Stats
	err := ib.db.View(func(tx *bolt.Tx) error {
		st.Pending, st.Failed = int(count(tx, countPending)), int(count(tx, countFailed))
		if k, _ := tx.Bucket(bucketReceived).Cursor().First(); k != nil {
			at, _ := splitTimeKey(k)
			st.OldestPending = max(ib.opts.now().Sub(time.Unix(0, at)), 0)
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("inbox %s: stats: %w", ib.path, err)
	}
	st.Running = int(ib.running.Load())
	return st, nil
}

// defaultListLimit is the number of entries List returns for limit <= 0.
const defaultListLimit = 100

// List returns up to limit entries in state, with their bodies: pending
// entries by next attempt, failed ones by the time they failed, oldest
// first. A limit <= 0 means 100.
func (ib *Inbox) List(state State, limit int) ([]Entry, error) {
	if ib.closed.Load() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		limit = defaultListLimit
	}
	var index []byte
	switch state {
	case Pending:
		index = bucketDue
	case Failed:
		index = bucketFailed
	default:
		return nil, fmt.Errorf("inbox: list: unknown state %v", state)
	}
	var out []Entry
	err := ib.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(index).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			_, id := splitTimeKey(k)
			rec, err := getRecord(tx, []byte(id))
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("%s index names missing entry %q", index, id)
			}
			out = append(out, rec.entry(bytes.Clone(tx.Bucket(bucketBodies).Get([]byte(id)))))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox %s: list %s entries: %w", ib.path, state, err)
	}
	return out, nil
}

// Retry makes entry id pending and due now, with a fresh attempt budget
// (Attempts restarts at 0; LastError is kept). It is how a failed entry is
// run again; on a pending entry it skips the rest of its backoff.
func (ib *Inbox) Retry(id string) error {
	if ib.closed.Load() {
		return ErrClosed
	}
	now := ib.opts.now()
	err := ib.commit.Write(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, []byte(id))
		if err != nil {
			return err
		}
		if rec == nil {
			return ErrNotFound
		}
		if err := unindex(tx, rec); err != nil {
			return err
		}
		rec.State, rec.Attempts, rec.NextAttempt, rec.FailedAt = Pending, 0, now.UnixNano(), 0
		if err := addPending(tx, rec, 1); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("inbox %s: retry %s: %w", ib.path, id, err)
	}
	ib.notify()
	return nil
}

// Delete removes entry id without running it. A handler already running
// on it is not stopped; its outcome is then ignored.
func (ib *Inbox) Delete(id string) error {
	if ib.closed.Load() {
		return ErrClosed
	}
	err := ib.commit.Write(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, []byte(id))
		if err != nil {
			return err
		}
		if rec == nil {
			return ErrNotFound
		}
		if err := unindex(tx, rec); err != nil {
			return err
		}
		if err := tx.Bucket(bucketEntries).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketBodies).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("inbox %s: delete %s: %w", ib.path, id, err)
	}
	return nil
}
