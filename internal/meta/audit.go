package meta

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// The audit log of administrative actions, oldest first by key:
//
//	al/<time ms 8 bytes><seq 8 bytes> → AuditEntry as JSON

// AuditEntry is one administrative action.
type AuditEntry struct {
	TimeMs int64  `json:"time_ms"`
	Who    string `json:"who"`
	Action string `json:"action"`
	Target string `json:"target"`
	From   string `json:"from,omitempty"`
	Detail string `json:"detail,omitempty"`
}

var auditSeq atomic.Uint64

func auditKey(ms int64, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte("al/"), uint64(ms))
	return binary.BigEndian.AppendUint64(k, seq)
}

// AddAudit stores an entry durably.
func (s *Store) AddAudit(e AuditEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.set(auditKey(e.TimeMs, auditSeq.Add(1)), v, pebble.Sync)
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	FromMs, ToMs int64 // [from, to); zero: unbounded
	Who, Action  string
	Limit        int
}

// ListAudit returns the entries matching f, newest first.
func (s *Store) ListAudit(f AuditFilter) ([]AuditEntry, error) {
	lower, upper := auditKey(max(f.FromMs, 0), 0), []byte("al0") // '0' follows '/'
	if f.ToMs > 0 {
		upper = auditKey(f.ToMs, 0)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []AuditEntry
	for it.Last(); it.Valid() && len(out) < f.Limit; it.Prev() {
		var e AuditEntry
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("audit record %x: %w", it.Key(), err)
		}
		if (f.Who == "" || e.Who == f.Who) && (f.Action == "" || e.Action == f.Action) {
			out = append(out, e)
		}
	}
	return out, it.Error()
}
