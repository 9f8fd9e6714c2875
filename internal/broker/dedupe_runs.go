package broker

import (
	"slices"
	"sort"
	"strings"
)

// The SDK names messages "<prefix>-<counter>": a random prefix per producer
// and a counter in base 36 that grows by one per message. A producer's ids
// are therefore stored in runs: counters lo..hi at consecutive offsets
// first..first+(hi-lo). The duplicate window keeps such ids as runs — one
// small record per run of a producer's messages instead of one hash entry
// per message — and keeps every other id one by one (dedupeWindow.stored).

// producerID splits a client message id of the SDK's shape into its prefix
// (up to and including the last '-') and its counter, written in canonical
// base 36 (digits and lower-case letters, no leading zero, at most 12
// digits). Two different ids never give the same prefix and counter.
func producerID(id string) (prefix string, counter uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	digits := id[i+1:]
	if i < 0 || len(digits) == 0 || len(digits) > 12 || (len(digits) > 1 && digits[0] == '0') {
		return "", 0, false
	}
	for j := 0; j < len(digits); j++ {
		c := digits[j]
		var v uint64
		switch {
		case c >= '0' && c <= '9':
			v = uint64(c - '0')
		case c >= 'a' && c <= 'z':
			v = uint64(c-'a') + 10
		default:
			return "", 0, false
		}
		counter = counter*36 + v // 36^12 < 2^64: no overflow
	}
	return id[:i+1], counter, true
}

// idRun is a run of one producer's ids stored at consecutive offsets.
type idRun struct {
	lo, hi uint64 // counters
	first  uint64 // offset of counter lo
	lastMs int64  // when counter hi was stored
	// lastSeq orders the runs of every producer by when they last grew: the window's
	// count of recorded ids then. Milliseconds tie; this does not.
	lastSeq uint64
}

// counterSpan is a range of counters whose messages are being stored.
type counterSpan struct{ lo, hi uint64 }

// maxPendingSpans bounds the spans a producer keeps reserved; beyond it its
// ids go to the one-by-one path (ids arriving far out of order).
const maxPendingSpans = 64

// producerIDs is what the window knows of one producer's ids.
type producerIDs struct {
	runs    []idRun       // ascending and disjoint counters; lastMs ascending too
	pending []counterSpan // reserved by publishes in progress
}

// find returns the offset the id with counter n was stored at.
func (p *producerIDs) find(n uint64) (uint64, bool) {
	i := sort.Search(len(p.runs), func(i int) bool { return p.runs[i].hi >= n })
	if i < len(p.runs) && p.runs[i].lo <= n {
		return p.runs[i].first + (n - p.runs[i].lo), true
	}
	return 0, false
}

// isPending says whether counter n is reserved by a publish in progress.
func (p *producerIDs) isPending(n uint64) bool {
	for _, s := range p.pending {
		if s.lo <= n && n <= s.hi {
			return true
		}
	}
	return false
}

// reserve marks counter n as being stored; false when too many spans are
// reserved already (the caller keeps the id one by one instead).
func (p *producerIDs) reserve(n uint64) bool {
	if k := len(p.pending); k > 0 && p.pending[k-1].hi+1 == n {
		p.pending[k-1].hi = n
		return true
	}
	if len(p.pending) >= maxPendingSpans {
		return false
	}
	p.pending = append(p.pending, counterSpan{n, n})
	return true
}

// release removes counter n from the reserved spans; false if it was not
// reserved here.
func (p *producerIDs) release(n uint64) bool {
	for i, s := range p.pending {
		if n < s.lo || n > s.hi {
			continue
		}
		switch {
		case s.lo == s.hi:
			p.pending = slices.Delete(p.pending, i, i+1)
		case n == s.lo:
			p.pending[i].lo++
		case n == s.hi:
			p.pending[i].hi--
		default:
			p.pending[i].hi = n - 1
			p.pending = slices.Insert(p.pending, i+1, counterSpan{n + 1, s.hi})
		}
		return true
	}
	return false
}

// record remembers that counter n was stored at offset off. It extends the
// last run or starts a new one; false when n is not above every counter
// stored (an id out of order), which the caller keeps one by one.
func (p *producerIDs) record(n, off uint64, atMs int64, seq uint64) (newRun, ok bool) {
	k := len(p.runs)
	if k > 0 {
		last := &p.runs[k-1]
		if n <= last.hi {
			return false, false
		}
		if n == last.hi+1 && off == last.first+(last.hi-last.lo)+1 {
			last.hi, last.lastMs, last.lastSeq = n, max(last.lastMs, atMs), seq
			return false, true
		}
		atMs = max(atMs, last.lastMs) // keeps lastMs ascending along runs
	}
	p.runs = append(p.runs, idRun{lo: n, hi: n, first: off, lastMs: atMs, lastSeq: seq})
	return true, true
}

// expire drops the runs whose last id was stored before limitMs, or that last grew
// before keepSeq, and returns how many it dropped. The ids of a live run are kept even
// when older than the window: the window is the least a retransmission is detected
// within.
func (p *producerIDs) expire(limitMs int64, keepSeq uint64) int {
	i := 0
	for i < len(p.runs) && (p.runs[i].lastMs < limitMs || p.runs[i].lastSeq < keepSeq) {
		i++
	}
	p.runs = p.runs[i:]
	return i
}
