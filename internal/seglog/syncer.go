package seglog

import (
	"context"
	"fmt"
	"time"
)

// syncer is the goroutine that makes written groups durable: it takes
// every group the writer has handed over, fsyncs once for all of them,
// publishes their records to readers and then completes their requests.
type syncer struct {
	l    *Log
	jobs <-chan *syncJob
	free chan<- *syncJob
	done chan struct{}
}

// run sleeps until the writer hands over a group (or closes jobs on
// shutdown) and then commits it together with all other groups waiting.
func (s *syncer) run() {
	defer close(s.done)
	var group []*syncJob
	for j := range s.jobs {
		group = append(group[:0], j)
	gather:
		for {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break gather
				}
				group = append(group, j)
			default:
				break gather
			}
		}
		s.commit(group)
		for i, j := range group {
			j.reset()
			s.free <- j
			group[i] = nil
		}
	}
}

// commit fsyncs, publishes and completes a group of jobs, or fails them.
func (s *syncer) commit(group []*syncJob) {
	l := s.l
	err := l.q.failure()
	if err == nil && !l.opts.NoSync {
		// The writer rolls only when the syncer is idle, so all jobs of
		// the group are for the same segment and one fsync covers them.
		if ferr := l.fsync(group[len(group)-1].seg); ferr != nil {
			err = l.fail(ferr)
		}
	}
	if err != nil {
		for _, j := range group {
			for _, r := range j.reqs {
				r.complete(0, err)
			}
		}
		return
	}
	l.publish(group)
	for _, j := range group {
		for _, r := range j.reqs {
			r.complete(r.first, nil)
		}
	}
}

// publish makes the records of durable jobs visible to readers.
func (l *Log) publish(group []*syncJob) {
	now := time.Now()
	l.mu.Lock()
	for _, j := range group {
		s := j.seg
		l.size.Add(j.size - s.size)
		s.size, s.next, s.modTime = j.size, j.next, now
		s.index = append(s.index, j.index...)
	}
	l.next.Store(group[len(group)-1].next)
	l.mu.Unlock()
}

// fsync fsyncs a segment file; every data fsync of the log goes through
// here and is counted.
func (l *Log) fsync(s *segment) error {
	l.syncs.Add(1)
	if err := l.opts.fsync(s.f); err != nil {
		return fmt.Errorf("seglog: fsync %s: %w", s.path, err)
	}
	return nil
}

// fail makes the log refuse appends from now on and returns the sticky
// error; the first failure is logged and wins.
func (l *Log) fail(cause error) error {
	err, first := l.q.fail(cause)
	if first {
		l.logger.Log(context.Background(), l.failLevel(), "seglog: append failed; the log refuses appends until reopened", "err", cause)
	}
	return err
}
