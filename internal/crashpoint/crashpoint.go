// Package crashpoint lets fault tests kill the broker process at named
// points inside multi-step operations (a segment roll, a retention
// cleanup, a group reset, a dead-letter redrive), to prove that a crash
// between any two steps loses nothing acknowledged.
//
// Points are armed only by the environment variable DMQ_CRASHPOINTS, a
// comma-separated list of names, each optionally followed by @N to crash
// at the N-th time the point is reached (default the first). Unarmed,
// Hit costs one atomic load. The names are listed in docs/design/core.md
// next to what each step does.
package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// EnvVar arms crash points.
const EnvVar = "DMQ_CRASHPOINTS"

// The crash points.
const (
	// RollSealed: the full segment was fsynced, its index not yet written.
	RollSealed = "seglog/roll/sealed"
	// RollIndexed: the index of the full segment was written, the new
	// segment not yet created.
	RollIndexed = "seglog/roll/indexed"
	// RollCreated: the new segment file exists, its directory entry was
	// not yet fsynced.
	RollCreated = "seglog/roll/created"
	// RetentionRemoved: retention removed the first old segment file, not
	// yet its index nor the next segments.
	RetentionRemoved = "seglog/retention/removed"
	// ResetStored: a group reset was stored, not yet applied in memory.
	ResetStored = "broker/reset/stored"
	// RedriveStored: redriven dead letters were stored as such, not yet
	// handed to the group in memory.
	RedriveStored = "broker/redrive/stored"
)

var (
	armed atomic.Bool
	mu    sync.Mutex
	left  map[string]int // hits left before the crash, by point
)

func init() {
	if spec := os.Getenv(EnvVar); spec != "" {
		if err := arm(spec); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%q: %v\n", EnvVar, spec, err)
			os.Exit(2)
		}
	}
}

func arm(spec string) error {
	left = map[string]int{}
	for _, p := range strings.Split(spec, ",") {
		name, n := strings.TrimSpace(p), 1
		if i := strings.IndexByte(name, '@'); i >= 0 {
			var err error
			if n, err = strconv.Atoi(name[i+1:]); err != nil || n < 1 {
				return fmt.Errorf("crash point %q: the count after @ must be a positive number", p)
			}
			name = name[:i]
		}
		left[name] = n
	}
	armed.Store(true)
	return nil
}

// Hit kills the process with SIGKILL, as a power cut or an OOM kill would,
// when the point is armed and reached for the chosen time.
func Hit(name string) {
	if !armed.Load() {
		return
	}
	mu.Lock()
	n, ok := left[name]
	if ok {
		left[name] = n - 1
	}
	mu.Unlock()
	if !ok || n != 1 {
		return
	}
	fmt.Fprintf(os.Stderr, "crash point %s reached: killing the process\n", name)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
