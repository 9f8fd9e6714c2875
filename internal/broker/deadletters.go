package broker

import (
	"github.com/dmqio/dmq/internal/crashpoint"

	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/trace"
)

// DeadLetter is a message that failed a group's max attempts.
type DeadLetter struct {
	meta.DeadLetter
	Message message.Message
}

// DeadLetterSelector picks dead letters: by offsets, by business key, or all.
type DeadLetterSelector struct {
	Offsets []uint64
	Key     string
	All     bool
}

func (sel DeadLetterSelector) validate() error {
	n := 0
	if len(sel.Offsets) > 0 {
		n++
	}
	if sel.Key != "" {
		n++
	}
	if sel.All {
		n++
	}
	if n != 1 {
		return errorf(KindInvalid, "choose dead letters by ids, by key, or all (exactly one)")
	}
	return nil
}

func decodeDeadLetter(dl meta.DeadLetter) (DeadLetter, error) {
	m, err := message.Decode(dl.Payload)
	if err != nil {
		return DeadLetter{}, wrap(KindInternal, err, "dead letter %d", dl.Offset)
	}
	return DeadLetter{DeadLetter: dl, Message: m}, nil
}

// ListDeadLetters returns up to limit dead letters of a group with an
// offset at or above from, oldest first, optionally only those with key;
// and the group's total.
func (b *Broker) ListDeadLetters(topicName, groupName string, from uint64, limit int, key string) ([]DeadLetter, uint64, error) {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return nil, 0, err
	}
	if limit <= 0 || limit > 1000 {
		limit = min(max(limit, 100), 1000)
	}
	if err := b.store.Settle(); err != nil {
		return nil, 0, wrap(KindUnavailable, err, "list dead letters of group %q", groupName)
	}
	var out []DeadLetter
	var derr error
	err = b.meta.ScanDeadLetters(topicName, groupName, from, func(dl meta.DeadLetter) bool {
		d, err := decodeDeadLetter(dl)
		if err != nil {
			derr = err
			return false
		}
		if key == "" || d.Message.Key == key {
			out = append(out, d)
		}
		return len(out) < limit
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, 0, wrap(KindInternal, err, "list dead letters of group %q", groupName)
	}
	g.mu.Lock()
	total := g.mu.deadLetters
	g.mu.Unlock()
	return out, total, nil
}

// GetDeadLetter returns the dead letter at off (of any member).
func (b *Broker) GetDeadLetter(topicName, groupName string, off uint64) (DeadLetter, error) {
	ds, _, err := b.ListDeadLetters(topicName, groupName, off, 1, "")
	if err != nil {
		return DeadLetter{}, err
	}
	if len(ds) == 0 || ds[0].Offset != off {
		return DeadLetter{}, errorf(KindNotFound, "message id %d is not a dead letter of group %q of topic %q", off, groupName, topicName)
	}
	return ds[0], nil
}

// selectDeadLetters returns the dead letters sel picks.
func (b *Broker) selectDeadLetters(topicName, groupName string, sel DeadLetterSelector) ([]meta.DeadLetter, error) {
	if err := sel.validate(); err != nil {
		return nil, err
	}
	if err := b.store.Settle(); err != nil {
		return nil, wrap(KindUnavailable, err, "select dead letters of group %q", groupName)
	}
	want := map[uint64]bool{}
	for _, off := range sel.Offsets {
		want[off] = true
	}
	var out []meta.DeadLetter
	var derr error
	err := b.meta.ScanDeadLetters(topicName, groupName, 0, func(dl meta.DeadLetter) bool {
		switch {
		case sel.All, want[dl.Offset]:
			out = append(out, dl)
		case sel.Key != "":
			m, err := message.Decode(dl.Payload)
			if err != nil {
				derr = err
				return false
			}
			if m.Key == sel.Key {
				out = append(out, dl)
			}
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, wrap(KindInternal, err, "read dead letters of group %q", groupName)
	}
	for off := range want {
		found := false
		for _, dl := range out {
			found = found || dl.Offset == off
		}
		if !found {
			return nil, errorf(KindNotFound, "message id %d is not a dead letter of group %q of topic %q", off, groupName, topicName)
		}
	}
	return out, nil
}

// RedriveDeadLetters hands the selected dead letters back to the group for
// delivery with a fresh attempt count. It returns how many it redrove;
// dead letters already being redriven are not counted again.
func (b *Broker) RedriveDeadLetters(topicName, groupName string, sel DeadLetterSelector) (int, error) {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return 0, err
	}
	dls, err := b.selectDeadLetters(topicName, groupName, sel)
	if err != nil {
		return 0, err
	}
	var todo []meta.DeadLetter
	for _, dl := range dls {
		if !dl.Redriven {
			dl.Redriven = true
			todo = append(todo, dl)
		}
	}
	if len(todo) == 0 {
		return 0, errorf(KindPrecondition, "no dead letter to redrive in group %q of topic %q", groupName, topicName)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return 0, ErrClosed
	}
	if err := b.meta.PutDeadLetters(topicName, groupName, todo); err != nil {
		return 0, wrap(KindInternal, err, "redrive dead letters of group %q", groupName)
	}
	crashpoint.Hit(crashpoint.RedriveStored)
	nowMs := b.Now().UnixMilli()
	for _, dl := range todo {
		b.trace.Add(meta.TraceEvent{Kind: trace.Redriven, Topic: topicName, Group: groupName, Offset: dl.Offset, Count: 1, TimeMs: nowMs, Client: dl.Member})
		c := g.mu.cursors[dl.Member]
		if c == nil {
			// A broadcast member that left: it gets them when it returns.
			c = newCursor(meta.Cursor{Member: dl.Member, Floor: max(g.info.StartOffset, g.t.log.First())})
			g.mu.cursors[dl.Member] = c
		}
		c.redrive(dl.Offset)
	}
	g.notify()
	b.logger.Info("dead letters redriven", "topic", topicName, "group", groupName, "count", len(todo))
	return len(todo), nil
}

// PurgeDeadLetters deletes the selected dead letters and returns how many.
func (b *Broker) PurgeDeadLetters(topicName, groupName string, sel DeadLetterSelector) (int, error) {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return 0, err
	}
	dls, err := b.selectDeadLetters(topicName, groupName, sel)
	if err != nil {
		return 0, err
	}
	if len(dls) == 0 {
		return 0, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return 0, ErrClosed
	}
	if err := b.meta.DeleteDeadLetters(topicName, groupName, dls); err != nil {
		return 0, wrap(KindInternal, err, "purge dead letters of group %q", groupName)
	}
	for _, dl := range dls {
		if c := g.mu.cursors[dl.Member]; c != nil {
			c.purgeRedriven(dl.Offset)
		}
	}
	g.mu.deadLetters -= min(uint64(len(dls)), g.mu.deadLetters)
	b.logger.Info("dead letters purged", "topic", topicName, "group", groupName, "count", len(dls))
	return len(dls), nil
}
