package broker

import (
	"time"
)

// retentionLoop removes old segments every RetentionInterval until the
// broker closes. Woken only by its ticker and by quit.
func (b *Broker) retentionLoop() {
	tick := time.NewTicker(b.cfg.RetentionInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.quit:
			return
		case now := <-tick.C:
			b.applyRetention(now)
		}
	}
}

// applyRetention removes, per topic, the oldest segments that are past the
// retention age or beyond the retention size, and that every group has
// acked entirely. It returns how many segments it removed.
func (b *Broker) applyRetention(now time.Time) int {
	b.mu.RLock()
	ts := make([]*topic, 0, len(b.mu.topics))
	for _, t := range b.mu.topics {
		ts = append(ts, t)
	}
	b.mu.RUnlock()
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
		n, err := t.log.DeleteSegmentsBefore(bound)
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
