// Package faultfs is an in-memory file system for the message log
// (seglog.FS) that behaves like a disk on a machine that can lose power
// and fail: file contents survive a power cut only up to their last
// fsync, new, renamed and removed directory entries only once their
// directory was fsynced, and writes and fsyncs can be made to fail with
// EIO or ENOSPC. Tests run the broker's logs on it to prove that nothing
// acknowledged is lost and nothing corrupt is served.
//
// The model: every path maps to an inode in two namespaces, the one the
// running system sees and the durable one a reboot would find (changed
// by SyncDir). Each inode keeps the contents the running system sees and
// the contents its last Sync made durable. CutPower makes every later
// operation fail, as if the machine died; Crash returns the file system
// the machine finds when it boots again: the durable namespace, each file
// with its durable contents plus, at random, part of what was written
// after its last fsync (a torn write) or a zero-filled tail (a size
// update that reached the disk before the data).
package faultfs

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dmqio/dmq/internal/seglog"
)

type inode struct {
	dir     bool
	data    []byte // as the running system sees it
	synced  []byte // as the last Sync left it on disk
	modTime time.Time
	// rewrote is set when data changed inside its synced prefix, so the
	// next Sync copies all of it rather than only what was appended.
	rewrote bool
}

// FS is an in-memory file system; the zero value is not usable, use New.
type FS struct {
	mu      sync.Mutex
	cur     map[string]*inode
	durable map[string]*inode
	dead    bool
	// Injected faults: writeErr fails writes and truncations, syncErr
	// fails fsyncs of files and directories; capacity (when > 0) fails
	// writes that would make the files' total size exceed it with ENOSPC.
	writeErr, syncErr error
	capacity          int64
}

var _ seglog.FS = (*FS)(nil)

// New returns an empty file system with a durable root directory.
func New() *FS {
	root := &inode{dir: true}
	return &FS{cur: map[string]*inode{"/": root}, durable: map[string]*inode{"/": root}}
}

// FailWrites makes every later write and truncation fail with err (nil:
// writes work again).
func (fs *FS) FailWrites(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.writeErr = err
}

// FailSyncs makes every later fsync, of files and directories, fail with
// err (nil: fsyncs work again).
func (fs *FS) FailSyncs(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.syncErr = err
}

// SetCapacity makes writes fail with ENOSPC once the files' total size
// would exceed n bytes (0: no limit).
func (fs *FS) SetCapacity(n int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.capacity = n
}

// Used returns the total size of the files the running system sees.
func (fs *FS) Used() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.usedLocked()
}

func (fs *FS) usedLocked() int64 {
	var n int64
	seen := map[*inode]bool{}
	for _, ino := range fs.cur {
		if !seen[ino] {
			seen[ino] = true
			n += int64(len(ino.data))
		}
	}
	return n
}

// CutPower makes every later operation fail with EIO, as if the machine
// died at this instant: nothing more reaches the disk.
func (fs *FS) CutPower() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.dead = true
}

// Crash returns the file system found after a reboot: what was durable at
// the power cut (call CutPower first, or the crash happens now), with rng
// choosing for each file whether unsynced writes are lost, partly kept or
// left as zeros.
func (fs *FS) Crash(rng *rand.Rand) *FS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := &FS{cur: map[string]*inode{}, durable: map[string]*inode{}}
	copies := map[*inode]*inode{}
	paths := make([]string, 0, len(fs.durable))
	for p := range fs.durable {
		paths = append(paths, p)
	}
	sort.Strings(paths) // the same rng draws for the same seed
	for _, p := range paths {
		ino := fs.durable[p]
		c := copies[ino]
		if c == nil {
			c = &inode{dir: ino.dir, modTime: ino.modTime, data: afterCrash(ino, rng)}
			c.synced = slices.Clone(c.data)
			copies[ino] = c
		}
		out.cur[p], out.durable[p] = c, c
	}
	return out
}

// afterCrash is what a file holds after a power cut: its synced contents,
// and maybe part of the writes after them.
func afterCrash(ino *inode, rng *rand.Rand) []byte {
	data := slices.Clone(ino.synced)
	if ino.dir || len(ino.data) <= len(ino.synced) || !slices.Equal(ino.data[:len(ino.synced)], ino.synced) {
		return data
	}
	tail := ino.data[len(ino.synced):]
	switch rng.IntN(4) {
	case 0: // a prefix of the unsynced writes made it, cut anywhere
		return append(data, tail[:rng.IntN(len(tail)+1)]...)
	case 1: // the size grew but the data never came: zeros
		return append(data, make([]byte, 1+rng.IntN(len(tail)))...)
	default: // nothing after the last fsync
		return data
	}
}

func clean(name string) string { return filepath.Clean("/" + name) }

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

// check fails every operation after a power cut.
func (fs *FS) check(op, name string) error {
	if fs.dead {
		return pathErr(op, name, syscall.EIO)
	}
	return nil
}

// OpenFile implements seglog.FS.
func (fs *FS) OpenFile(name string, flag int, perm os.FileMode) (seglog.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
	if err := fs.check("open", p); err != nil {
		return nil, err
	}
	if parent := fs.cur[filepath.Dir(p)]; parent == nil || !parent.dir {
		return nil, pathErr("open", p, syscall.ENOENT)
	}
	ino := fs.cur[p]
	switch {
	case ino != nil && ino.dir:
		return nil, pathErr("open", p, syscall.EISDIR)
	case ino != nil && flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, pathErr("open", p, syscall.EEXIST)
	case ino == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", p, syscall.ENOENT)
	case ino == nil:
		if fs.writeErr != nil {
			return nil, pathErr("open", p, fs.writeErr)
		}
		ino = &inode{modTime: time.Now()}
		fs.cur[p] = ino
	}
	if flag&os.O_TRUNC != 0 {
		ino.data, ino.rewrote = ino.data[:0], ino.rewrote || len(ino.synced) > 0
	}
	return &file{fs: fs, ino: ino, name: p, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

// ListFiles implements seglog.FS.
func (fs *FS) ListFiles(dir string) ([]string, error) { return fs.list(dir, false) }

// ListDirs implements seglog.FS.
func (fs *FS) ListDirs(dir string) ([]string, error) { return fs.list(dir, true) }

func (fs *FS) list(dir string, dirs bool) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := clean(dir)
	if err := fs.check("readdir", d); err != nil {
		return nil, err
	}
	if ino := fs.cur[d]; ino == nil || !ino.dir {
		return nil, pathErr("readdir", d, syscall.ENOENT)
	}
	var names []string
	for p, ino := range fs.cur {
		if ino.dir == dirs && p != d && filepath.Dir(p) == d {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Remove implements seglog.FS.
func (fs *FS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
	if err := fs.check("remove", p); err != nil {
		return err
	}
	ino := fs.cur[p]
	if ino == nil {
		return pathErr("remove", p, syscall.ENOENT)
	}
	if ino.dir && len(fs.children(p)) > 0 {
		return pathErr("remove", p, syscall.ENOTEMPTY)
	}
	delete(fs.cur, p)
	return nil
}

// RemoveAll implements seglog.FS.
func (fs *FS) RemoveAll(path string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(path)
	if err := fs.check("removeall", p); err != nil {
		return err
	}
	for q := range fs.cur {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(fs.cur, q)
		}
	}
	return nil
}

// Rename implements seglog.FS.
func (fs *FS) Rename(oldpath, newpath string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	from, to := clean(oldpath), clean(newpath)
	if err := fs.check("rename", from); err != nil {
		return err
	}
	ino := fs.cur[from]
	if ino == nil {
		return pathErr("rename", from, syscall.ENOENT)
	}
	if ino.dir {
		return pathErr("rename", from, syscall.EISDIR) // not needed by the log
	}
	if parent := fs.cur[filepath.Dir(to)]; parent == nil || !parent.dir {
		return pathErr("rename", to, syscall.ENOENT)
	}
	fs.cur[to] = ino
	delete(fs.cur, from)
	return nil
}

// MkdirAll implements seglog.FS.
func (fs *FS) MkdirAll(path string, perm os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(path)
	if err := fs.check("mkdir", p); err != nil {
		return err
	}
	for d := p; d != "/"; d = filepath.Dir(d) {
		switch ino := fs.cur[d]; {
		case ino == nil:
			fs.cur[d] = &inode{dir: true, modTime: time.Now()}
		case !ino.dir:
			return pathErr("mkdir", d, syscall.ENOTDIR)
		}
	}
	return nil
}

// SyncDir implements seglog.FS: the entries of dir become durable as the
// running system sees them.
func (fs *FS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := clean(dir)
	if err := fs.check("fsync", d); err != nil {
		return err
	}
	if ino := fs.cur[d]; ino == nil || !ino.dir {
		return pathErr("fsync", d, syscall.ENOENT)
	}
	if fs.syncErr != nil {
		return pathErr("fsync", d, fs.syncErr)
	}
	for p := range fs.durable {
		if filepath.Dir(p) == d && p != d {
			delete(fs.durable, p)
		}
	}
	for _, p := range fs.children(d) {
		fs.durable[p] = fs.cur[p]
	}
	return nil
}

// children returns the paths directly under dir in the running namespace.
func (fs *FS) children(dir string) []string {
	var out []string
	for p := range fs.cur {
		if p != dir && filepath.Dir(p) == dir {
			out = append(out, p)
		}
	}
	return out
}

// file is an open file; it stays usable after its name is removed, like a
// POSIX file descriptor.
type file struct {
	fs       *FS
	ino      *inode
	name     string
	writable bool
	pos      int64 // for Write
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("read", f.name); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("write", f.name); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if f.fs.writeErr != nil {
		return 0, pathErr("write", f.name, f.fs.writeErr)
	}
	end := off + int64(len(p))
	if grow := end - int64(len(f.ino.data)); grow > 0 && f.fs.capacity > 0 && f.fs.usedLocked()+grow > f.fs.capacity {
		return 0, pathErr("write", f.name, syscall.ENOSPC)
	}
	if end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], p)
	f.ino.rewrote = f.ino.rewrote || off < int64(len(f.ino.synced))
	f.ino.modTime = time.Now()
	return len(p), nil
}

func (f *file) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *file) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("stat", f.name); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *file) ModTime() (time.Time, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("stat", f.name); err != nil {
		return time.Time{}, err
	}
	return f.ino.modTime, nil
}

func (f *file) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("truncate", f.name); err != nil {
		return err
	}
	if f.fs.writeErr != nil {
		return pathErr("truncate", f.name, f.fs.writeErr)
	}
	f.ino.rewrote = f.ino.rewrote || size < int64(len(f.ino.synced))
	if size < int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

// Sync makes the file's contents durable (not its name: see SyncDir).
func (f *file) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("fsync", f.name); err != nil {
		return err
	}
	if f.fs.syncErr != nil {
		return pathErr("fsync", f.name, f.fs.syncErr)
	}
	if f.ino.rewrote || len(f.ino.data) < len(f.ino.synced) {
		f.ino.synced, f.ino.rewrote = slices.Clone(f.ino.data), false
	} else {
		f.ino.synced = append(f.ino.synced, f.ino.data[len(f.ino.synced):]...)
	}
	return nil
}

func (f *file) Close() error { return nil }
