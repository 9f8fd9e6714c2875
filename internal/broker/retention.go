package broker

import (
	"time"
)

// retentionLoop removes old segments, closes the files of segments nobody read
// lately and forgets clients offline for long, every RetentionInterval until the
// broker closes.
// Woken only by its ticker and by quit.
func (b *Broker) retentionLoop() {
	tick := time.NewTicker(b.cfg.RetentionInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.quit:
			return
		case now := <-tick.C:
			b.applyRetention(now)
			b.closeIdleFiles()
			b.expireClients()
		}
	}
}

// applyRetention removes, per topic, the oldest segments that are past the
// retention age or beyond the retention size, and that every group has
// acked entirely. It returns how many segments it removed.
func (b *Broker) applyRetention(now time.Time) int {
	ts := b.topicList()
	removed := 0
	for _, t := range ts {
		segs := t.log.Segments()
		if len(segs) < 2 {
			continue // the active segment is never removed
		}
		floor := t.floor()
		var total int64
		for _, s := range segs {
			total += s.Bytes
		}
		bound := uint64(0)
		for _, s := range segs[:len(segs)-1] {
			expired := now.Sub(s.ModTime) > b.cfg.RetentionAge ||
				(b.cfg.RetentionBytes > 0 && total > b.cfg.RetentionBytes)
			if !expired || s.Next > floor {
				break
			}
			bound = s.Next
			total -= s.Bytes
		}
		if bound == 0 {
			continue
		}
		n, err := b.store.DeleteSegmentsBefore(t.name, t.log, bound)
		if err != nil {
			b.logger.Error("retention", "topic", t.name, "err", err)
			continue
		}
		if n > 0 {
			b.logger.Info("retention removed segments", "topic", t.name, "segments", n, "first_offset", t.log.First())
		}
		removed += n
	}
	return removed
}

// idleFileAge is how long a sealed segment's file stays open unread.
const idleFileAge = 2 * time.Minute

// closeIdleFiles closes the files of sealed segments nobody read lately,
// so that open files stay bounded however much a topic keeps.
func (b *Broker) closeIdleFiles() {
	ts := b.topicList()
	for _, t := range ts {
		t.log.CloseIdleFiles(idleFileAge)
	}
}
