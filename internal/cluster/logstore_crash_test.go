package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/dmqio/dmq/internal/diskfs"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/segment"
)

// The Raft log survives power cuts: on a file system that keeps only what was synced
// (and a random part of the rest), every entry whose StoreLogs returned before the cut
// reads back identical, the log is contiguous, term and vote set before the cut are
// there, and the log opens without refusing. Cuts fall at random file writes, in appends,
// segment rotations, cuts of the tail and of the head, stable-store writes and the
// repairs of a reopened log, and the log goes on on the cut file system, so recoveries
// stack.
//
// DMQ_POWERCUT_SEED replays a seed (the goroutines of raft-wal and the zero filler make
// a replay close, not exact); DMQ_POWERCUT_CUTS changes the number of cuts.
func TestLogSurvivesPowerCuts(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DMQ_POWERCUT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DMQ_POWERCUT_SEED=%q: %v", s, err)
		}
	}
	cuts := 300
	if s := os.Getenv("DMQ_POWERCUT_CUTS"); s != "" {
		var err error
		if cuts, err = strconv.Atoi(s); err != nil {
			t.Fatalf("DMQ_POWERCUT_CUTS=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with DMQ_POWERCUT_SEED=%d)", seed, seed)
	start := time.Now()
	r := newPowerCutRun(t, seed)
	stats := r.run(cuts)
	t.Logf("%d power cuts (%d during a reopen), %d ops, %d entries appended, in %v",
		stats.cuts, stats.cutsInOpen, stats.ops, stats.appended, time.Since(start).Round(time.Millisecond))
}

const powerCutDir = "/node/raft/g/wal"

type powerCutRun struct {
	t   *testing.T
	rng *rand.Rand // the ops'; the cuts have their own

	mu      sync.Mutex
	cutRNG  *rand.Rand
	gen     int        // the file system's generation: one per cut
	mem     *vfs.MemFS // of gen
	cut     *powerCut  // taken in gen, not yet recovered
	model   logModel   // what returned before now
	pending *logOp     // the op under way
	history []string   // the last ops, for failure messages
}

// powerCut is a crash clone and what the log must hold on it.
type powerCut struct {
	mem      *vfs.MemFS
	unsynced int
	at       string // the file operation it fell before; "" between ops
	model    logModel
	pending  *logOp
}

type powerCutStats struct {
	cuts, cutsInOpen, ops, appended int
}

func newPowerCutRun(t *testing.T, seed uint64) *powerCutRun {
	return &powerCutRun{
		t:      t,
		rng:    rand.New(rand.NewPCG(seed, 1)),
		cutRNG: rand.New(rand.NewPCG(seed, 2)),
		mem:    vfs.NewCrashableMem(),
		model:  logModel{stable: map[string][]byte{}},
	}
}

// fs returns the current file system, cut at random before its writes.
func (r *powerCutRun) fs() vfs.FS {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen, mem := r.gen, r.mem
	return errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
			return nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if gen == r.gen && r.cut == nil && r.cutRNG.IntN(25) == 0 {
			r.takeCutLocked(fmt.Sprintf("%s %s@%d", opName(op.Kind), op.Path, op.Offset))
		}
		return nil
	}))
}

func opName(k errorfs.OpKind) string {
	switch k {
	case errorfs.OpCreate:
		return "create"
	case errorfs.OpRemove:
		return "remove"
	case errorfs.OpRename:
		return "rename"
	case errorfs.OpMkdirAll:
		return "mkdir"
	case errorfs.OpFilePreallocate:
		return "preallocate"
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
		return "write"
	case errorfs.OpFileSync, errorfs.OpFileSyncData:
		return "sync"
	case errorfs.OpFileClose:
		return "close"
	}
	return fmt.Sprintf("op %d", k)
}

func (r *powerCutRun) takeCutLocked(at string) {
	unsynced := r.cutRNG.IntN(101)
	r.cut = &powerCut{
		mem:      r.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: r.cutRNG}),
		unsynced: unsynced,
		at:       at,
		model:    r.model.clone(),
		pending:  r.pending,
	}
}

// takeCut returns the cut taken since the last call, and moves the run onto it.
func (r *powerCutRun) takeCut() *powerCut {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cut
	if c != nil {
		r.cut = nil
		r.gen++
		r.mem = c.mem
	}
	return c
}

func (r *powerCutRun) run(cuts int) powerCutStats {
	t := r.t
	var stats powerCutStats
	var store *walStore
	var last *powerCut // the cut the next open recovers from
	defer func() {
		if store != nil {
			store.Close()
		}
	}()
	for stats.cuts < cuts || store == nil {
		if store == nil {
			var before *vfs.MemFS // the cut file system as the open found it, for failures
			if last != nil {
				before = last.mem.CrashClone(vfs.CrashCloneCfg{})
			}
			s, err := openLogStore(powerCutDir, 16<<10, r.fs(), false, hclog.NewNullLogger())
			if c := r.takeCut(); c != nil {
				if s != nil {
					s.Close()
				}
				stats.cuts++
				stats.cutsInOpen++
				last = c
				continue
			}
			if err != nil {
				t.Fatalf("open after %s: %v\n%s\n%s", last, err, r.trace(), dumpLogDir(before, powerCutDir))
			}
			if err := r.check(s, last); err != nil {
				s.Close()
				t.Fatalf("after %s: %v\n%s\n%s", last, err, r.trace(), dumpLogDir(before, powerCutDir))
			}
			store = s
			continue
		}
		if r.rng.IntN(40) == 0 {
			r.mu.Lock()
			if r.cut == nil {
				r.takeCutLocked("")
			}
			r.mu.Unlock()
		}
		op := r.nextOp()
		r.mu.Lock()
		r.pending = op
		r.mu.Unlock()
		err := op.do(store)
		stats.ops++
		if c := r.takeCut(); c != nil {
			store.Close()
			store = nil
			stats.cuts++
			last = c
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", op, err, r.trace())
		}
		r.mu.Lock()
		r.model.apply(op)
		r.pending = nil
		r.note(op.String())
		r.mu.Unlock()
		stats.appended += len(op.logs)
		if r.rng.IntN(6) == 0 { // a clean restart now and then
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			store, last = nil, nil
		}
	}
	return stats
}

func (r *powerCutRun) note(s string) {
	r.history = append(r.history, s)
	if len(r.history) > 12 {
		r.history = r.history[1:]
	}
}

func (r *powerCutRun) trace() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "last ops:\n  " + strings.Join(r.history, "\n  ")
}

// nextOp picks an op on the model: appends mostly, stable-store writes, cuts of the
// log's tail (a follower clearing a suffix) and of its head (compaction after a
// snapshot, at times all of it, after which the log may go on at a later index, as
// after installing a snapshot).
func (r *powerCutRun) nextOp() *logOp {
	m := r.model
	first, last := m.first, m.last()
	switch n := r.rng.IntN(100); {
	case n < 8:
		keys := []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"}
		v := make([]byte, 1+r.rng.IntN(40))
		for i := range v {
			v[i] = byte(r.rng.Uint32())
		}
		return &logOp{kind: opSet, key: keys[r.rng.IntN(len(keys))], value: v}
	case n < 14 && len(m.ents) > 1:
		return &logOp{kind: opCutTail, from: first + 1 + r.rng.Uint64N(last-first)}
	case n < 18 && len(m.ents) > 0:
		to := first + r.rng.Uint64N(last-first+1)
		if r.rng.IntN(5) == 0 {
			to = last
		}
		return &logOp{kind: opCutHead, to: to}
	}
	next := last + 1
	if len(m.ents) == 0 {
		next = m.high + 1
		if r.rng.IntN(3) == 0 {
			next += 1 + r.rng.Uint64N(1000)
		}
	}
	op := &logOp{kind: opAppend}
	for i := range 1 + r.rng.IntN(5) {
		size := r.rng.IntN(2 << 10)
		if r.rng.IntN(10) == 0 {
			size = r.rng.IntN(12 << 10)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.rng.Uint32())
		}
		op.logs = append(op.logs, &raft.Log{Index: next + uint64(i), Term: 1 + next/50, Type: raft.LogCommand, Data: data})
	}
	return op
}

// check reads the reopened log and compares it with the model of the cut: what
// returned before it, and the op under way.
func (r *powerCutRun) check(s *walStore, c *powerCut) error {
	r.mu.Lock()
	want, pending := r.model.clone(), r.pending
	r.mu.Unlock()
	if c != nil {
		want, pending = c.model, c.pending
	}
	got, err := readModel(s, want, pending)
	if err != nil {
		return err
	}
	if err := want.admits(got, pending); err != nil {
		return err
	}
	r.mu.Lock()
	got.high = max(want.high, got.last())
	r.model, r.pending = got, nil
	r.note(fmt.Sprintf("reopened after %v: entries %d-%d", c, got.first, got.last()))
	r.mu.Unlock()
	return nil
}

func (c *powerCut) String() string {
	if c == nil {
		return "a clean restart"
	}
	at := "between ops"
	if c.at != "" {
		at = "before " + c.at + " during " + c.pending.String()
	}
	return fmt.Sprintf("a power cut %s (%d%% of unsynced data kept)", at, c.unsynced)
}

type opKind int

const (
	opAppend opKind = iota
	opSet
	opCutTail
	opCutHead
)

type logOp struct {
	kind  opKind
	logs  []*raft.Log // opAppend
	from  uint64      // opCutTail: the entries from here on go
	to    uint64      // opCutHead: the entries up to here go
	key   string      // opSet
	value []byte
}

func (op *logOp) do(s *walStore) error {
	switch op.kind {
	case opAppend:
		return s.StoreLogs(op.logs)
	case opSet:
		return s.Set([]byte(op.key), op.value)
	case opCutTail:
		last, err := s.LastIndex()
		if err != nil {
			return err
		}
		return s.DeleteRange(op.from, last)
	default:
		first, err := s.FirstIndex()
		if err != nil {
			return err
		}
		return s.DeleteRange(first, op.to)
	}
}

func (op *logOp) String() string {
	if op == nil {
		return "no op"
	}
	switch op.kind {
	case opAppend:
		return fmt.Sprintf("append %d-%d", op.logs[0].Index, op.logs[len(op.logs)-1].Index)
	case opSet:
		return fmt.Sprintf("set %s (%d bytes)", op.key, len(op.value))
	case opCutTail:
		return fmt.Sprintf("cut the tail from %d", op.from)
	default:
		return fmt.Sprintf("cut the head up to %d", op.to)
	}
}

// logModel is what a log holds: entries first..last, and the stable store.
type logModel struct {
	first  uint64
	ents   []*raft.Log
	high   uint64 // the highest index appended so far
	stable map[string][]byte
}

func (m logModel) last() uint64 {
	if len(m.ents) == 0 {
		return 0
	}
	return m.first + uint64(len(m.ents)) - 1
}

func (m logModel) clone() logModel {
	m.ents = slices.Clone(m.ents)
	m.stable = maps.Clone(m.stable)
	return m
}

func (m *logModel) apply(op *logOp) {
	switch op.kind {
	case opAppend:
		if len(m.ents) == 0 {
			m.first = op.logs[0].Index
		}
		m.ents = append(m.ents, op.logs...)
		m.high = max(m.high, op.logs[len(op.logs)-1].Index)
	case opSet:
		m.stable[op.key] = op.value
	case opCutTail:
		m.ents = m.ents[:op.from-m.first]
	case opCutHead:
		if op.to >= m.last() {
			m.first, m.ents = 0, nil
		} else {
			m.ents = m.ents[op.to+1-m.first:]
			m.first = op.to + 1
		}
	}
	if len(m.ents) == 0 {
		m.first = 0
	}
}

// readModel reads the whole log: every index from its first to its last must read back.
func readModel(s *walStore, want logModel, pending *logOp) (logModel, error) {
	got := logModel{stable: map[string][]byte{}}
	first, err := s.FirstIndex()
	if err != nil {
		return got, err
	}
	last, err := s.LastIndex()
	if err != nil {
		return got, err
	}
	if (first == 0) != (last == 0) || first > last {
		return got, fmt.Errorf("first index %d, last index %d", first, last)
	}
	got.first = first
	for i := first; first != 0 && i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			return got, fmt.Errorf("entry %d of %d-%d: %w", i, first, last, err)
		}
		if l.Index != i {
			return got, fmt.Errorf("entry %d reads as entry %d", i, l.Index)
		}
		got.ents = append(got.ents, &l)
	}
	keys := slices.Collect(maps.Keys(want.stable))
	if pending != nil && pending.kind == opSet {
		keys = append(keys, pending.key)
	}
	for _, k := range keys {
		v, err := s.Get([]byte(k))
		if err != nil {
			return got, fmt.Errorf("stable %s: %w", k, err)
		}
		if v != nil {
			got.stable[k] = v
		}
	}
	return got, nil
}

// admits says whether a log that held m, with op under way, may hold got after a
// power cut: what returned is there; of op, all or nothing (of an append, a prefix).
func (m logModel) admits(got logModel, op *logOp) error {
	for k, v := range m.stable {
		if g := got.stable[k]; !bytes.Equal(g, v) && (op == nil || op.kind != opSet || op.key != k || !bytes.Equal(g, op.value)) {
			return fmt.Errorf("stable %s = %x, want %x", k, g, v)
		}
	}
	if op != nil && op.kind == opSet {
		if g, ok := got.stable[op.key]; ok && !bytes.Equal(g, op.value) && !bytes.Equal(g, m.stable[op.key]) {
			return fmt.Errorf("stable %s = %x, want the old value or %x", op.key, g, op.value)
		}
	}

	after := m.clone()
	if op != nil && op.kind != opSet {
		after.apply(op)
	}
	span := func(x logModel) string { return fmt.Sprintf("%d-%d", x.first, x.last()) }
	okFirst := got.first == m.first || got.first == after.first
	okLast := got.last() == m.last() || got.last() == after.last()
	if op != nil && op.kind == opAppend {
		okLast = got.last() >= m.last() && got.last() <= after.last()
	}
	if !okFirst || !okLast {
		return fmt.Errorf("the log holds entries %s, want %s (or %s, with %v under way)", span(got), span(m), span(after), op)
	}
	for _, l := range got.ents {
		w := entryAt(after, l.Index)
		if w == nil || (l.Index <= m.last() && l.Index >= m.first) {
			if x := entryAt(m, l.Index); x != nil {
				w = x
			}
		}
		if w == nil {
			return fmt.Errorf("entry %d is in the log, neither written before nor under way", l.Index)
		}
		if l.Term != w.Term || l.Type != w.Type || !bytes.Equal(l.Data, w.Data) {
			return fmt.Errorf("entry %d reads back as term %d, %d bytes; want term %d, %d bytes",
				l.Index, l.Term, len(l.Data), w.Term, len(w.Data))
		}
	}
	return nil
}

func entryAt(m logModel, i uint64) *raft.Log {
	if len(m.ents) == 0 || i < m.first || i > m.last() {
		return nil
	}
	return m.ents[i-m.first]
}

// dumpLogDir lists the files of a log directory: the meta file's payload, and the
// frames of each segment (offset, type, length or checksum) up to its end.
func dumpLogDir(fs vfs.FS, dir string) string {
	if fs == nil {
		return ""
	}
	var b strings.Builder
	names, _ := fs.List(dir)
	slices.Sort(names)
	for _, n := range names {
		buf, err := diskfs.ReadFile(fs, fs.PathJoin(dir, n))
		fmt.Fprintf(&b, "%s: %d bytes %v\n", n, len(buf), err)
		if n == walMetaFile && len(buf) > walMetaHeaderLen {
			fmt.Fprintf(&b, "  %s\n", buf[walMetaHeaderLen:])
		}
		if !strings.HasSuffix(n, ".wal") {
			continue
		}
		for off := 32; off+segmentFrameHeaderLen <= len(buf); {
			typ, l := buf[off], int(binary.LittleEndian.Uint32(buf[off+4:]))
			fmt.Fprintf(&b, "  @%d type %d len/crc %d\n", off, typ, l)
			switch typ {
			case segment.FrameEntry, segment.FrameIndex:
				off += segmentFrameHeaderLen + l + (8-l%8)%8
			case segment.FrameCommit:
				off += segmentFrameHeaderLen
			default:
				off = len(buf)
			}
		}
	}
	return b.String()
}
