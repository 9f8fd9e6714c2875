package seglog

import (
	"errors"
	"fmt"
	"io/fs"
)

// Sync makes every record written so far durable: it fsyncs each segment file and the
// directory. It is for logs opened with NoSync whose owner keeps another durable copy
// and must know when it may let that copy go (a cluster replica before a snapshot
// compacts its replication log). Segments removed meanwhile are skipped. It does not
// block appends.
func (l *Log) Sync() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	paths := make([]string, len(l.segs))
	for i, s := range l.segs {
		paths[i] = s.path
	}
	l.mu.RUnlock()
	for _, p := range paths {
		// A descriptor of its own: fsync flushes the file, whoever wrote it, and
		// sealed segments may have had theirs closed for being idle.
		f, err := l.opts.FS.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("seglog: sync %s: %w", p, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("seglog: sync %s: %w", p, err)
		}
	}
	return l.syncDir()
}
