package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// walMetaFile is the name of the Raft log's meta file in its directory: raft-wal's
// persistent state (the segment list and the next segment id) and the stable store
// (hashicorp/raft's term and vote).
//
// The file has two slots of walMetaSlot bytes, written in turn, each whole state with
// a sequence number; the valid slot with the highest number is the state. Integers
// little-endian:
//
//	magic    8 bytes "DMQWALM2"
//	seq      uint64, one more than the other slot's
//	length   uint32, of the payload
//	crc      uint32, CRC-32C (Castagnoli) of seq and the payload
//	payload  JSON: {"State": types.PersistentState, "Stable": [{"K": key, "V": value}, ...]}
//	         (keys and values base64, keys sorted)
//
// A change overwrites the older slot in place and syncs the file: the file never grows,
// so a term or vote is saved on a full disk too (hashicorp/raft panics when it cannot
// save them: a rename of a new file failed with ENOSPC and took the node down on a
// full disk). A power cut during a write tears at most that slot, whose change was not
// acknowledged: the other one holds the state before it. The file is created whole,
// through a temporary file renamed into place.
const walMetaFile = "wal-meta"

var walMetaMagic = [8]byte{'D', 'M', 'Q', 'W', 'A', 'L', 'M', '2'}

const (
	walMetaHeaderLen = 24
	// walMetaSlot bounds the state: about 1,500 segments' descriptions.
	walMetaSlot = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walMeta is raft-wal's meta store (types.MetaStore) in walMetaFile on a vfs.FS. It
// replaces raft-wal's bbolt database (metadb.BoltMetaDB, the file wal-meta.db), which
// it migrates once on Load. Every change is durable when the call returns; the
// contents are kept in memory, and change there only once they are on disk.
type walMeta struct {
	fs  vfs.FS
	log hclog.Logger

	mu     sync.Mutex
	dir    string // set by the first Load
	loaded bool
	state  types.PersistentState
	stable map[string][]byte
	seq    uint64 // of the newest slot; 0 while the file does not exist
}

// walMetaData is the payload of walMetaFile.
type walMetaData struct {
	State  types.PersistentState
	Stable []walStableValue
}

type walStableValue struct {
	K, V []byte
}

var errWalMetaClosed = errors.New("raft log meta store is not open")

func newWalMeta(fs vfs.FS, log hclog.Logger) *walMeta {
	return &walMeta{fs: fs, log: log}
}

// Load reads the meta file in dir, or migrates raft-wal's bbolt database there, or
// returns the empty state of a new log (as raft-wal's does: the WAL then creates its
// first segment and commits the state).
func (m *walMeta) Load(dir string) (types.PersistentState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loaded {
		if dir != m.dir {
			return types.PersistentState{}, fmt.Errorf("raft log meta store: cannot load %s, open in %s", dir, m.dir)
		}
		return cloneState(m.state), nil
	}
	path := m.fs.PathJoin(dir, walMetaFile)
	boltPath := m.fs.PathJoin(dir, metadb.FileName)
	state, stable, seq, err := readWalMeta(m.fs, path)
	switch {
	case err == nil:
		// A migration cut short after the new file was written leaves the bbolt file.
		if err := removeIfExists(m.fs, boltPath); err != nil {
			return types.PersistentState{}, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return types.PersistentState{}, fmt.Errorf("%w: %s: %v; %s", ErrDamagedLog, path, err, logRemedy(dir))
	default:
		state, stable = types.PersistentState{}, map[string][]byte{}
		if _, err := m.fs.Stat(boltPath); err == nil {
			if state, stable, err = readBoltMeta(m.fs, boltPath); err != nil {
				return types.PersistentState{}, fmt.Errorf("%w: %s: %v; %s", ErrDamagedLog, boltPath, err, logRemedy(dir))
			}
			if err := writeWalMeta(m.fs, dir, state, stable, 1); err != nil {
				return types.PersistentState{}, fmt.Errorf("migrate %s: %w", boltPath, err)
			}
			seq = 1
			if err := removeIfExists(m.fs, boltPath); err != nil {
				return types.PersistentState{}, err
			}
			m.log.Info("moved the log's meta database to its own file", "from", boltPath, "to", path,
				"segments", len(state.Segments), "stable_keys", len(stable))
		} else if !errors.Is(err, os.ErrNotExist) {
			return types.PersistentState{}, err
		}
	}
	m.dir, m.loaded, m.state, m.stable, m.seq = dir, true, state, stable, seq
	return cloneState(state), nil
}

// CommitState replaces the persistent state, durably.
func (m *walMeta) CommitState(state types.PersistentState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		return errWalMetaClosed
	}
	state = cloneState(state)
	if err := writeWalMeta(m.fs, m.dir, state, m.stable, m.seq+1); err != nil {
		return err
	}
	m.state, m.seq = state, m.seq+1
	return nil
}

// GetStable returns the value of key, nil if it has none.
func (m *walMeta) GetStable(key []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		return nil, errWalMetaClosed
	}
	v, ok := m.stable[string(key)]
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

// SetStable sets key to value, or deletes it when value is nil, durably.
func (m *walMeta) SetStable(key, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		return errWalMetaClosed
	}
	stable := make(map[string][]byte, len(m.stable)+1)
	for k, v := range m.stable {
		stable[k] = v
	}
	if value == nil {
		delete(stable, string(key))
	} else {
		stable[string(key)] = bytes.Clone(value)
	}
	if err := writeWalMeta(m.fs, m.dir, m.state, stable, m.seq+1); err != nil {
		return err
	}
	m.stable, m.seq = stable, m.seq+1
	return nil
}

// Close ends the store's use; it is safe to call twice. Nothing is left to write.
func (m *walMeta) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loaded = false
	return nil
}

func cloneState(s types.PersistentState) types.PersistentState {
	s.Segments = slices.Clone(s.Segments)
	return s
}

// writeWalMeta writes walMetaFile in dir, durably, replacing the old one atomically.
// encodeWalMeta is a slot holding state and stable under seq.
func encodeWalMeta(state types.PersistentState, stable map[string][]byte, seq uint64) ([]byte, error) {
	data := walMetaData{State: state, Stable: make([]walStableValue, 0, len(stable))}
	for k, v := range stable {
		data.Stable = append(data.Stable, walStableValue{K: []byte(k), V: v})
	}
	slices.SortFunc(data.Stable, func(a, b walStableValue) int { return bytes.Compare(a.K, b.K) })
	payload, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode the raft log's meta file: %w", err)
	}
	if walMetaHeaderLen+len(payload) > walMetaSlot {
		return nil, fmt.Errorf("the raft log's meta state takes %d bytes, over the %d of its file's slot", len(payload), walMetaSlot-walMetaHeaderLen)
	}
	buf := make([]byte, walMetaHeaderLen, walMetaHeaderLen+len(payload))
	copy(buf, walMetaMagic[:])
	binary.LittleEndian.PutUint64(buf[8:], seq)
	binary.LittleEndian.PutUint32(buf[16:], uint32(len(payload)))
	buf = append(buf, payload...)
	crc := crc32.Update(crc32.Checksum(buf[8:16], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(buf[20:], crc)
	return buf, nil
}

// writeWalMeta makes state and stable, under seq, the meta file's state in dir: in the
// slot seq picks, or, for seq 1, in a new file.
func writeWalMeta(fs vfs.FS, dir string, state types.PersistentState, stable map[string][]byte, seq uint64) error {
	slot, err := encodeWalMeta(state, stable, seq)
	if err != nil {
		return err
	}
	path := fs.PathJoin(dir, walMetaFile)
	if seq == 1 {
		return createWalMeta(fs, dir, path, slot)
	}
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(slot, int64(seq%2)*walMetaSlot); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// createWalMeta writes a new meta file at path, both slots' size, slot 1 holding slot.
func createWalMeta(fs vfs.FS, dir, path string, slot []byte) error {
	buf := make([]byte, 2*walMetaSlot)
	copy(buf[walMetaSlot:], slot)
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	if err := diskfs.SyncDir(fs, dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// readWalMeta returns the state of the meta file at path and its sequence number.
func readWalMeta(fs vfs.FS, path string) (types.PersistentState, map[string][]byte, uint64, error) {
	buf, err := diskfs.ReadFile(fs, path)
	if err != nil {
		return types.PersistentState{}, nil, 0, err
	}
	var best []byte
	var seq uint64
	var errs []error
	for i := range 2 {
		slot := buf[min(len(buf), i*walMetaSlot):min(len(buf), (i+1)*walMetaSlot)]
		payload, n, err := decodeWalMetaSlot(slot)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if best == nil || n > seq {
			best, seq = payload, n
		}
	}
	if best == nil {
		return types.PersistentState{}, nil, 0, fmt.Errorf("no valid slot in %d bytes: %w", len(buf), errors.Join(errs...))
	}
	var data walMetaData
	if err := json.Unmarshal(best, &data); err != nil {
		return types.PersistentState{}, nil, 0, fmt.Errorf("decode: %w", err)
	}
	stable := make(map[string][]byte, len(data.Stable))
	for _, kv := range data.Stable {
		if kv.V == nil {
			kv.V = []byte{}
		}
		stable[string(kv.K)] = kv.V
	}
	return data.State, stable, seq, nil
}

// decodeWalMetaSlot returns a slot's payload and sequence number, or why it holds none.
func decodeWalMetaSlot(slot []byte) ([]byte, uint64, error) {
	if len(slot) < walMetaHeaderLen || !bytes.Equal(slot[:8], walMetaMagic[:]) {
		return nil, 0, errors.New("no header")
	}
	n := int(binary.LittleEndian.Uint32(slot[16:]))
	if walMetaHeaderLen+n > len(slot) {
		return nil, 0, fmt.Errorf("payload of %d bytes past the slot's end", n)
	}
	payload := slot[walMetaHeaderLen : walMetaHeaderLen+n]
	crc := crc32.Update(crc32.Checksum(slot[8:16], castagnoli), castagnoli, payload)
	if crc != binary.LittleEndian.Uint32(slot[20:]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	return payload, binary.LittleEndian.Uint64(slot[8:]), nil
}

func readBoltMeta(fs vfs.FS, path string) (types.PersistentState, map[string][]byte, error) {
	var state types.PersistentState
	buf, err := diskfs.ReadFile(fs, path)
	if err != nil {
		return state, nil, err
	}
	tmpDir, err := os.MkdirTemp("", "dmq-wal-meta-")
	if err != nil {
		return state, nil, err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, metadb.FileName)
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return state, nil, err
	}
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return state, nil, err
	}
	defer db.Close()
	stable := map[string][]byte{}
	err = db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(metadb.MetaBucket)); b != nil {
			if raw := b.Get([]byte(metadb.MetaKey)); raw != nil {
				if err := json.Unmarshal(raw, &state); err != nil {
					return fmt.Errorf("decode the persisted state: %w", err)
				}
			}
		}
		b := tx.Bucket([]byte(metadb.StableBucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			stable[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	return state, stable, err
}

// removeIfExists removes the file at path and syncs its directory, if it exists.
func removeIfExists(fs vfs.FS, path string) error {
	if _, err := fs.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if err := fs.Remove(path); err != nil {
		return err
	}
	return diskfs.SyncDir(fs, fs.PathDir(path))
}
