// Package faultfs is an in-memory vfs.FS that behaves like a disk on a
// machine that can lose power and fail: file contents survive a power cut
// only up to their last fsync, new, renamed and removed directory entries
// only once their directory was fsynced, and writes and fsyncs can be made
// to fail with EIO or ENOSPC. Tests run the broker's logs (package seglog)
// and its Pebble store on it to prove that nothing acknowledged is lost and
// nothing corrupt is served. Its files are diskfs.Truncaters.
//
// The model: every path maps to an inode in two namespaces, the one the
// running system sees and the durable one a reboot would find (changed by
// syncing a directory: OpenDir, then Sync). Each inode keeps the contents the
// running system sees and the contents its last Sync made durable. CutPower
// fixes, at that instant, what the disk holds, and makes every later
// operation fail, as if the machine died; CutPowerUnnoticed fixes it the same
// way but lets the running system go on, unaware, on a disk that keeps
// nothing more (Pebble panics on a failed write or sync of its log, so a
// Pebble store needs it). Crash returns the file system the machine finds
// when it boots again: the durable namespace, each file with its durable
// contents plus, at random, part of what was written after its last fsync (a
// torn write) or a zero-filled tail (a size update that reached the disk
// before the data).
package faultfs

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
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
	locks   map[string]bool // paths held by Lock
	// image is what the disk held when the power was cut (paths of the
	// durable namespace to copies of their inodes); nil while powered.
	image map[string]*inode
	dead  bool // the power was cut and the running system is told so
	// Injected faults: writeErr fails writes, truncations and file
	// creations, syncErr fails fsyncs of files and directories; capacity
	// (when > 0) fails writes that would make the files' total size exceed
	// it with ENOSPC.
	writeErr, syncErr error
	capacity          int64
}

var _ vfs.FS = (*FS)(nil)

// errDirRename is returned for a rename of a directory, which the model does
// not support (the durable namespace is kept by path).
var errDirRename = errors.New("faultfs: renaming a directory is not supported")

// New returns an empty file system with a durable root directory.
func New() *FS {
	root := &inode{dir: true}
	return &FS{cur: map[string]*inode{"/": root}, durable: map[string]*inode{"/": root}, locks: map[string]bool{}}
}

// FailWrites makes every later write, truncation and file creation fail
// with err (nil: writes work again).
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
	fs.cutLocked()
	fs.dead = true
}

// CutPowerUnnoticed fixes what the disk holds at this instant, as CutPower
// does, but later operations go on working for the running system, which
// does not learn of the cut: nothing it does from now on reaches the disk
// that Crash returns. A test must treat what the system reports after the
// cut (acknowledgements) as never seen, since a dead machine sends nothing.
func (fs *FS) CutPowerUnnoticed() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.cutLocked()
}

// cutLocked takes the disk's image at the power cut (the first one counts).
func (fs *FS) cutLocked() {
	if fs.image == nil {
		fs.image = fs.imageLocked()
	}
}

// imageLocked copies the durable namespace and the inodes it names, hard
// links kept.
func (fs *FS) imageLocked() map[string]*inode {
	img := make(map[string]*inode, len(fs.durable))
	copies := map[*inode]*inode{}
	for p, ino := range fs.durable {
		c := copies[ino]
		if c == nil {
			c = &inode{dir: ino.dir, modTime: ino.modTime, data: slices.Clone(ino.data), synced: slices.Clone(ino.synced)}
			copies[ino] = c
		}
		img[p] = c
	}
	return img
}

// Crash returns the file system found after a reboot: what was durable at
// the power cut (call CutPower or CutPowerUnnoticed first, or the crash
// happens now), with rng choosing for each file whether unsynced writes are
// lost, partly kept or left as zeros.
func (fs *FS) Crash(rng *rand.Rand) *FS {
	fs.mu.Lock()
	img := fs.image
	if img == nil {
		img = fs.imageLocked()
	}
	fs.mu.Unlock()
	out := &FS{cur: map[string]*inode{}, durable: map[string]*inode{}, locks: map[string]bool{}}
	copies := map[*inode]*inode{}
	paths := make([]string, 0, len(img))
	for p := range img {
		paths = append(paths, p)
	}
	sort.Strings(paths) // the same rng draws for the same seed
	for _, p := range paths {
		ino := img[p]
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

// check fails every operation after a power cut the system noticed.
func (fs *FS) check(op, name string) error {
	if fs.dead {
		return pathErr(op, name, syscall.EIO)
	}
	return nil
}

// lookupLocked returns name's clean path and inode, or the error op meets there (the
// disk's, or ENOENT).
func (fs *FS) lookupLocked(op, name string) (string, *inode, error) {
	p := clean(name)
	if err := fs.check(op, p); err != nil {
		return p, nil, err
	}
	ino := fs.cur[p]
	if ino == nil {
		return p, nil, pathErr(op, p, syscall.ENOENT)
	}
	return p, ino, nil
}

// parentLocked fails unless p's parent is a directory.
func (fs *FS) parentLocked(op, p string) error {
	if parent := fs.cur[filepath.Dir(p)]; parent == nil || !parent.dir {
		return pathErr(op, p, syscall.ENOENT)
	}
	return nil
}

// createLocked puts a new empty file at p, replacing a file there (whose
// open handles keep the old one, as with POSIX).
func (fs *FS) createLocked(op, p string) (*inode, error) {
	if err := fs.parentLocked(op, p); err != nil {
		return nil, err
	}
	if ino := fs.cur[p]; ino != nil && ino.dir {
		return nil, pathErr(op, p, syscall.EISDIR)
	}
	if fs.writeErr != nil {
		return nil, pathErr(op, p, fs.writeErr)
	}
	ino := &inode{modTime: time.Now()}
	fs.cur[p] = ino
	return ino, nil
}

// Create implements vfs.FS: a new file, in place of any file at name.
func (fs *FS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
	if err := fs.check("open", p); err != nil {
		return nil, err
	}
	ino, err := fs.createLocked("open", p)
	if err != nil {
		return nil, err
	}
	return &file{fs: fs, ino: ino, name: p, writable: true}, nil
}

// Link implements vfs.FS: newname becomes a second name of oldname's file.
func (fs *FS) Link(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	from, to := clean(oldname), clean(newname)
	linkErr := func(err error) error { return &os.LinkError{Op: "link", Old: from, New: to, Err: err} }
	if fs.dead {
		return linkErr(syscall.EIO)
	}
	ino := fs.cur[from]
	switch {
	case ino == nil:
		return linkErr(syscall.ENOENT)
	case ino.dir:
		return linkErr(syscall.EPERM)
	case fs.cur[to] != nil:
		return linkErr(syscall.EEXIST)
	}
	if parent := fs.cur[filepath.Dir(to)]; parent == nil || !parent.dir {
		return linkErr(syscall.ENOENT)
	}
	if fs.writeErr != nil {
		return linkErr(fs.writeErr)
	}
	fs.cur[to] = ino
	return nil
}

// Open implements vfs.FS: the file (or directory) for reading.
func (fs *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	fs.mu.Lock()
	p, ino, err := fs.lookupLocked("open", name)
	if err != nil {
		fs.mu.Unlock()
		return nil, err
	}
	f := &file{fs: fs, ino: ino, name: p}
	fs.mu.Unlock()
	for _, o := range opts {
		o.Apply(f)
	}
	return f, nil
}

// OpenReadWrite implements vfs.FS: the file for reading and writing,
// created if missing.
func (fs *FS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	fs.mu.Lock()
	p := clean(name)
	if err := fs.check("open", p); err != nil {
		fs.mu.Unlock()
		return nil, err
	}
	ino := fs.cur[p]
	switch {
	case ino != nil && ino.dir:
		fs.mu.Unlock()
		return nil, pathErr("open", p, syscall.EISDIR)
	case ino == nil:
		var err error
		if ino, err = fs.createLocked("open", p); err != nil {
			fs.mu.Unlock()
			return nil, err
		}
	}
	f := &file{fs: fs, ino: ino, name: p, writable: true}
	fs.mu.Unlock()
	for _, o := range opts {
		o.Apply(f)
	}
	return f, nil
}

// OpenDir implements vfs.FS: the directory, whose Sync makes its entries
// durable as the running system sees them.
func (fs *FS) OpenDir(name string) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, ino, err := fs.lookupLocked("open", name)
	switch {
	case err != nil:
		return nil, err
	case !ino.dir:
		return nil, pathErr("open", p, syscall.ENOTDIR)
	default:
		return &file{fs: fs, ino: ino, name: p}, nil
	}
}

// Remove implements vfs.FS.
func (fs *FS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, ino, err := fs.lookupLocked("remove", name)
	if err != nil {
		return err
	}
	if ino.dir && len(fs.children(p)) > 0 {
		return pathErr("remove", p, syscall.ENOTEMPTY)
	}
	delete(fs.cur, p)
	return nil
}

// RemoveAll implements vfs.FS.
func (fs *FS) RemoveAll(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
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

// Rename implements vfs.FS for files: newname is replaced if it exists.
// Directories cannot be renamed.
func (fs *FS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.renameLocked(clean(oldname), clean(newname))
}

func (fs *FS) renameLocked(from, to string) error {
	if err := fs.check("rename", from); err != nil {
		return err
	}
	ino := fs.cur[from]
	if ino == nil {
		return pathErr("rename", from, syscall.ENOENT)
	}
	if ino.dir {
		return pathErr("rename", from, errDirRename)
	}
	if err := fs.parentLocked("rename", to); err != nil {
		return err
	}
	if old := fs.cur[to]; old != nil && old.dir {
		return pathErr("rename", to, syscall.EISDIR)
	}
	fs.cur[to] = ino
	delete(fs.cur, from)
	return nil
}

// ReuseForWrite implements vfs.FS: oldname is renamed to newname and
// opened for writing.
func (fs *FS) ReuseForWrite(oldname, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	to := clean(newname)
	if err := fs.renameLocked(clean(oldname), to); err != nil {
		return nil, err
	}
	return &file{fs: fs, ino: fs.cur[to], name: to, writable: true}, nil
}

// MkdirAll implements vfs.FS.
func (fs *FS) MkdirAll(dir string, _ os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(dir)
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

// Lock implements vfs.FS: it creates the file if missing and holds it until
// the returned Closer is closed; a second Lock of the path fails with
// EAGAIN, as fcntl's lock does in another process.
func (fs *FS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
	if err := fs.check("lock", p); err != nil {
		return nil, err
	}
	if fs.locks[p] {
		return nil, pathErr("lock", p, syscall.EAGAIN)
	}
	if ino := fs.cur[p]; ino == nil {
		if _, err := fs.createLocked("lock", p); err != nil {
			return nil, err
		}
	} else if ino.dir {
		return nil, pathErr("lock", p, syscall.EISDIR)
	}
	fs.locks[p] = true
	return &lock{fs: fs, path: p}, nil
}

type lock struct {
	fs   *FS
	path string
	once sync.Once
}

func (l *lock) Close() error {
	l.once.Do(func() {
		l.fs.mu.Lock()
		delete(l.fs.locks, l.path)
		l.fs.mu.Unlock()
	})
	return nil
}

// List implements vfs.FS: the sorted names in dir.
func (fs *FS) List(dir string) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, ino, err := fs.lookupLocked("readdir", dir)
	if err != nil {
		return nil, err
	}
	if !ino.dir {
		return nil, pathErr("readdir", d, syscall.ENOENT)
	}
	var names []string
	for _, p := range fs.children(d) {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	return names, nil
}

// Stat implements vfs.FS.
func (fs *FS) Stat(name string) (vfs.FileInfo, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, ino, err := fs.lookupLocked("stat", name)
	if err != nil {
		return nil, err
	}
	return ino.infoLocked(filepath.Base(p)), nil
}

// PathBase implements vfs.FS.
func (*FS) PathBase(path string) string { return filepath.Base(path) }

// PathJoin implements vfs.FS.
func (*FS) PathJoin(elem ...string) string { return filepath.Join(elem...) }

// PathDir implements vfs.FS.
func (*FS) PathDir(path string) string { return filepath.Dir(path) }

// GetDiskUsage implements vfs.FS: the disk holds the files' total size of
// its capacity (SetCapacity); without one, it reports 2^62 bytes.
func (fs *FS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.check("statfs", clean(path)); err != nil {
		return vfs.DiskUsage{}, err
	}
	total, used := fs.capacity, fs.usedLocked()
	if total <= 0 {
		total = math.MaxInt64 / 2
	}
	return vfs.DiskUsage{TotalBytes: uint64(total), UsedBytes: uint64(used), AvailBytes: uint64(max(total-used, 0))}, nil
}

// Unwrap implements vfs.FS: faultfs wraps no other file system.
func (*FS) Unwrap() vfs.FS { return nil }

// syncDirLocked makes the entries of d durable as the running system sees
// them.
func (fs *FS) syncDirLocked(d string) error {
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

// fileInfo implements vfs.FileInfo.
type fileInfo struct {
	name    string
	size    int64
	dir     bool
	modTime time.Time
}

func (ino *inode) infoLocked(name string) fileInfo {
	return fileInfo{name: name, size: int64(len(ino.data)), dir: ino.dir, modTime: ino.modTime}
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) ModTime() time.Time { return fi.modTime }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }

func (fi fileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}

// DeviceID is the zero DeviceID: one device.
func (fi fileInfo) DeviceID() vfs.DeviceID { return vfs.DeviceID{} }

// file is an open file or directory; it stays usable after its name is
// removed, like a POSIX file descriptor.
type file struct {
	fs       *FS
	ino      *inode
	name     string
	writable bool
	pos      int64 // for Read and Write
}

var _ vfs.File = (*file)(nil)

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.readAtLocked(p, off)
}

func (f *file) readAtLocked(p []byte, off int64) (int, error) {
	if err := f.fs.check("read", f.name); err != nil {
		return 0, err
	}
	if f.ino.dir {
		return 0, pathErr("read", f.name, syscall.EISDIR)
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

func (f *file) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.readAtLocked(p, f.pos)
	f.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil // io.Reader: the next call reports the end
	}
	return n, err
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.writeAtLocked(p, off)
}

func (f *file) writeAtLocked(p []byte, off int64) (int, error) {
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
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n, err := f.writeAtLocked(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *file) Stat() (vfs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("stat", f.name); err != nil {
		return nil, err
	}
	return f.ino.infoLocked(filepath.Base(f.name)), nil
}

// Truncate implements diskfs.Truncater: the file is cut back to size, or
// extended with zeros.
func (f *file) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.check("truncate", f.name); err != nil {
		return err
	}
	if !f.writable {
		return pathErr("truncate", f.name, syscall.EINVAL)
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
	f.ino.modTime = time.Now()
	return nil
}

// Sync makes a file's contents durable (not its name: sync its directory),
// or a directory's entries.
func (f *file) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ino.dir {
		return f.fs.syncDirLocked(f.name)
	}
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

// SyncData is Sync.
func (f *file) SyncData() error { return f.Sync() }

// SyncTo syncs the whole file (fullSync true).
func (f *file) SyncTo(int64) (bool, error) {
	if err := f.Sync(); err != nil {
		return false, err
	}
	return true, nil
}

// Preallocate reserves nothing: the files take what they hold.
func (f *file) Preallocate(_, _ int64) error { return nil }

// Prefetch does nothing: the file is in memory.
func (f *file) Prefetch(_, _ int64) error { return nil }

// Fd is vfs.InvalidFd: the file has no descriptor.
func (f *file) Fd() uintptr { return vfs.InvalidFd }

func (f *file) Close() error { return nil }
