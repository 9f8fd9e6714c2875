// Package faultfs is an in-memory vfs.FS that behaves like a disk on a
// machine that can lose power and fail: file contents survive a power cut
// only up to their last fsync, new, renamed and removed directory entries
// only once their directory was fsynced, and writes and fsyncs can be made
// to fail with EIO or ENOSPC. Tests run the broker's logs (package seglog),
// its Pebble store and whole broker nodes on it to prove that nothing
// acknowledged is lost and nothing corrupt is served. Its files are
// diskfs.Truncaters.
//
// The model is a tree of inodes. A directory holds its entries (name to
// inode) twice: as the running system sees them, and as its last fsync left
// them on disk (OpenDir, then Sync; nothing else changes them). A file holds
// the contents the running system sees and the contents its last Sync made
// durable. Paths are looked up through the running entries from the root;
// the disk a reboot finds is what the durable entries reach from the root,
// each directory there with its own durable entries.
//
// So a rename, of a file or a directory, reaches the disk in two halves: the
// new name once the new parent is fsynced, the removal of the old one once
// the old parent is. A crash between them can show the inode under both
// names (new parent synced) or under neither (old parent synced), which a
// journaling file system avoids; stores must not rely on either outcome, and
// sync both parents (or keep the rename within one directory). A directory
// has one name in the image, though: if the durable entries name it twice,
// the first name in a sorted walk from the root keeps it (this also breaks
// the cycles such half-durable renames can make). A renamed directory's own
// entries keep their durability, and a file with two names (Link) is one
// inode on the disk and after a reboot. Removals (Remove, RemoveAll) detach
// entries from the running tree; the disk still has them until their parent
// is fsynced.
//
// CutPower fixes, at that instant, what the disk holds, and makes every later
// operation fail, as if the machine died; CutPowerUnnoticed fixes it the same
// way but lets the running system go on, unaware, on a disk that keeps
// nothing more (Pebble panics on a failed write or sync of its log, so a
// Pebble store needs it). Crash returns the file system the machine finds
// when it boots again: the durable tree, each file with its durable contents
// plus, at random, part of what was written after its last fsync (a torn
// write) or a zero-filled tail (a size update that reached the disk before
// the data).
package faultfs

import (
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

type inode struct {
	dir     bool
	modTime time.Time

	// A file's contents.
	data   []byte // as the running system sees it
	synced []byte // as the last Sync left it on disk
	// rewrote is set when data changed inside its synced prefix, so the
	// next Sync copies all of it rather than only what was appended.
	rewrote bool

	// A directory's entries.
	entries map[string]*inode // as the running system sees them
	durable map[string]*inode // as the last Sync left them on disk
}

func newDir() *inode {
	return &inode{dir: true, modTime: time.Now(), entries: map[string]*inode{}, durable: map[string]*inode{}}
}

// FS is an in-memory file system; the zero value is not usable, use New.
type FS struct {
	mu    sync.Mutex
	root  *inode
	locks map[string]bool // paths held by Lock
	// image is what the disk held when the power was cut: a copy of the
	// root and of what its durable entries reach, each directory's durable
	// entries only; nil while powered.
	image *inode
	dead  bool // the power was cut and the running system is told so
	// Injected faults: writeErr fails writes, truncations, file creations
	// and links, syncErr fails fsyncs of files and directories; capacity
	// (when > 0) fails writes that would make the files' total size exceed
	// it with ENOSPC.
	writeErr, syncErr error
	capacity          int64
}

var _ vfs.FS = (*FS)(nil)

// New returns an empty file system with a durable root directory.
func New() *FS {
	return &FS{root: newDir(), locks: map[string]bool{}}
}

// FailWrites makes every later write, truncation, file creation and link
// fail with err (nil: writes work again).
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

// Used returns the total size of the files the running system sees, each
// file once however many names it has.
func (fs *FS) Used() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.usedLocked()
}

func (fs *FS) usedLocked() int64 {
	var n int64
	seen := map[*inode]bool{}
	var walk func(dir *inode)
	walk = func(dir *inode) {
		for _, ino := range dir.entries {
			switch {
			case ino.dir:
				walk(ino) // a directory has one name in the running tree
			case !seen[ino]:
				seen[ino] = true
				n += int64(len(ino.data))
			}
		}
	}
	walk(fs.root)
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

// CutPowerTogether cuts the power of several disks at one instant, as
// CutPowerUnnoticed does for one: no write or sync reaches any of them between
// the cuts. Machines whose disks are cut one after the other are not cut
// together: one whose disk died first goes on answering (a follower
// acknowledging entries its disk never kept, say) while the others still
// record what it told them, which no machine without power does.
func CutPowerTogether(disks ...*FS) {
	for _, fs := range disks {
		fs.mu.Lock()
	}
	for _, fs := range disks {
		fs.cutLocked()
	}
	for _, fs := range disks {
		fs.mu.Unlock()
	}
}

// cutLocked takes the disk's image at the power cut (the first one counts).
func (fs *FS) cutLocked() {
	if fs.image == nil {
		fs.image = fs.imageLocked()
	}
}

// imageLocked copies the durable tree: the root, and the inodes its durable
// entries reach, walked in sorted order. A file reached by two names stays
// one inode; a directory reached twice keeps only its first name.
func (fs *FS) imageLocked() *inode {
	copies := map[*inode]*inode{}
	var walk func(ino *inode) *inode
	walk = func(ino *inode) *inode {
		c := &inode{dir: ino.dir, modTime: ino.modTime}
		copies[ino] = c
		if !ino.dir {
			c.data, c.synced = slices.Clone(ino.data), slices.Clone(ino.synced)
			return c
		}
		c.durable = make(map[string]*inode, len(ino.durable))
		for _, name := range slices.Sorted(maps.Keys(ino.durable)) {
			child := ino.durable[name]
			switch cc := copies[child]; {
			case cc == nil:
				c.durable[name] = walk(child)
			case !child.dir:
				c.durable[name] = cc // a hard link
			}
		}
		return c
	}
	return walk(fs.root)
}

// Crash returns the file system found after a reboot: what was durable at
// the power cut (call CutPower or CutPowerUnnoticed first, or the crash
// happens now), with rng choosing for each file whether unsynced writes are
// lost, partly kept or left as zeros. The same rng draws give the same file
// system.
func (fs *FS) Crash(rng *rand.Rand) *FS {
	fs.mu.Lock()
	img := fs.image
	if img == nil {
		img = fs.imageLocked()
	}
	fs.mu.Unlock()
	// The image is never changed once taken: it is read without the lock.
	copies := map[*inode]*inode{}
	var walk func(ino *inode) *inode
	walk = func(ino *inode) *inode {
		if c := copies[ino]; c != nil {
			return c // a hard link
		}
		c := &inode{dir: ino.dir, modTime: ino.modTime}
		copies[ino] = c
		if !ino.dir {
			c.data = afterCrash(ino, rng)
			c.synced = slices.Clone(c.data)
			return c
		}
		c.entries = make(map[string]*inode, len(ino.durable))
		c.durable = make(map[string]*inode, len(ino.durable))
		for _, name := range slices.Sorted(maps.Keys(ino.durable)) {
			child := walk(ino.durable[name])
			c.entries[name], c.durable[name] = child, child
		}
		return c
	}
	return &FS{root: walk(img), locks: map[string]bool{}}
}

// afterCrash is what a file holds after a power cut: its synced contents,
// and maybe part of the writes after them.
func afterCrash(ino *inode, rng *rand.Rand) []byte {
	data := slices.Clone(ino.synced)
	if len(ino.data) <= len(ino.synced) || !slices.Equal(ino.data[:len(ino.synced)], ino.synced) {
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

// walkLocked returns the inode at the clean path p in the running tree, or
// the error op meets on the way (ENOENT, or ENOTDIR for a file on the way).
func (fs *FS) walkLocked(op, p string) (*inode, error) {
	ino := fs.root
	if p == "/" {
		return ino, nil
	}
	for _, name := range strings.Split(p[1:], "/") {
		if !ino.dir {
			return nil, pathErr(op, p, syscall.ENOTDIR)
		}
		if ino = ino.entries[name]; ino == nil {
			return nil, pathErr(op, p, syscall.ENOENT)
		}
	}
	return ino, nil
}

// lookupLocked returns name's clean path and inode, or the error op meets
// there (the disk's, ENOENT or ENOTDIR).
func (fs *FS) lookupLocked(op, name string) (string, *inode, error) {
	p := clean(name)
	if err := fs.check(op, p); err != nil {
		return p, nil, err
	}
	ino, err := fs.walkLocked(op, p)
	return p, ino, err
}

// parentLocked returns the directory that holds (or would hold) the entry
// of the clean path p, and the entry's name; the root has no parent
// (EBUSY).
func (fs *FS) parentLocked(op, p string) (*inode, string, error) {
	if p == "/" {
		return nil, "", pathErr(op, p, syscall.EBUSY)
	}
	parent, err := fs.walkLocked(op, filepath.Dir(p))
	switch {
	case err != nil:
		return nil, "", pathErr(op, p, err.(*os.PathError).Err)
	case !parent.dir:
		return nil, "", pathErr(op, p, syscall.ENOTDIR)
	}
	return parent, filepath.Base(p), nil
}

// createLocked puts a new empty file at p, replacing a file there (whose
// open handles keep the old one, as with POSIX).
func (fs *FS) createLocked(op, p string) (*inode, error) {
	parent, name, err := fs.parentLocked(op, p)
	if err != nil {
		return nil, err
	}
	if ino := parent.entries[name]; ino != nil && ino.dir {
		return nil, pathErr(op, p, syscall.EISDIR)
	}
	if fs.writeErr != nil {
		return nil, pathErr(op, p, fs.writeErr)
	}
	ino := &inode{modTime: time.Now()}
	parent.entries[name] = ino
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

// Link implements vfs.FS: newname becomes a second name of oldname's file
// (one inode: a write through either name shows through the other).
func (fs *FS) Link(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	from, to := clean(oldname), clean(newname)
	linkErr := func(err error) error { return &os.LinkError{Op: "link", Old: from, New: to, Err: err} }
	if fs.dead {
		return linkErr(syscall.EIO)
	}
	ino, err := fs.walkLocked("link", from)
	if err != nil {
		return linkErr(err.(*os.PathError).Err)
	}
	if ino.dir {
		return linkErr(syscall.EPERM)
	}
	parent, name, err := fs.parentLocked("link", to)
	switch {
	case err != nil:
		return linkErr(err.(*os.PathError).Err)
	case parent.entries[name] != nil:
		return linkErr(syscall.EEXIST)
	case fs.writeErr != nil:
		return linkErr(fs.writeErr)
	}
	parent.entries[name] = ino
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
	p, ino, err := fs.lookupLocked("open", name)
	switch {
	case err != nil && !os.IsNotExist(err):
	case ino != nil && ino.dir:
		err = pathErr("open", p, syscall.EISDIR)
	case ino == nil:
		ino, err = fs.createLocked("open", p)
	}
	if err != nil {
		fs.mu.Unlock()
		return nil, err
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

// Remove implements vfs.FS: the entry leaves the running tree (the disk
// keeps it until its parent is synced); a directory must be empty.
func (fs *FS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, ino, err := fs.lookupLocked("remove", name)
	if err != nil {
		return err
	}
	parent, base, err := fs.parentLocked("remove", p)
	if err != nil {
		return err
	}
	if ino.dir && len(ino.entries) > 0 {
		return pathErr("remove", p, syscall.ENOTEMPTY)
	}
	delete(parent.entries, base)
	return nil
}

// RemoveAll implements vfs.FS: name and everything under it leave the
// running tree; a missing name is no error. The disk keeps the tree until
// name's parent is synced, and each directory under it keeps its durable
// entries.
func (fs *FS) RemoveAll(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(name)
	if err := fs.check("removeall", p); err != nil {
		return err
	}
	if p == "/" {
		return pathErr("removeall", p, syscall.EBUSY)
	}
	parent, base, err := fs.parentLocked("removeall", p)
	if err != nil {
		return nil // nothing there
	}
	if ino := parent.entries[base]; ino != nil {
		emptyRunning(ino)
		delete(parent.entries, base)
	}
	return nil
}

// emptyRunning removes every entry under the directory ino from the running
// system's view, as unlinking them one by one does (a directory still open
// and synced afterwards is empty on disk).
func emptyRunning(ino *inode) {
	if !ino.dir {
		return
	}
	for _, child := range ino.entries {
		emptyRunning(child)
	}
	clear(ino.entries)
}

// Rename implements vfs.FS with rename(2)'s rules, for files and
// directories: newname is replaced if it is a file (oldname a file) or an
// empty directory (oldname a directory); a file cannot replace a directory
// (EISDIR), nor a directory a file (ENOTDIR) or a non-empty directory
// (ENOTEMPTY), and a directory cannot move into itself (EINVAL). The new
// name is durable once newname's parent is synced, the old one gone from
// the disk once oldname's parent is.
func (fs *FS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, err := fs.renameLocked(clean(oldname), clean(newname))
	return err
}

// renameLocked renames from to to and returns the renamed inode.
func (fs *FS) renameLocked(from, to string) (*inode, error) {
	if err := fs.check("rename", from); err != nil {
		return nil, err
	}
	renameErr := func(err error) error { return &os.LinkError{Op: "rename", Old: from, New: to, Err: err} }
	fromParent, fromName, err := fs.parentLocked("rename", from)
	if err != nil {
		return nil, renameErr(err.(*os.PathError).Err)
	}
	ino := fromParent.entries[fromName]
	if ino == nil {
		return nil, renameErr(syscall.ENOENT)
	}
	if to == "/" || (ino.dir && strings.HasPrefix(to, from+"/")) {
		return nil, renameErr(syscall.EINVAL)
	}
	toParent, toName, err := fs.parentLocked("rename", to)
	if err != nil {
		return nil, renameErr(err.(*os.PathError).Err)
	}
	switch old := toParent.entries[toName]; {
	case old == ino: // the same path, or two names of one file: nothing to do
		return ino, nil
	case old == nil:
	case !ino.dir && old.dir:
		return nil, renameErr(syscall.EISDIR)
	case ino.dir && !old.dir:
		return nil, renameErr(syscall.ENOTDIR)
	case ino.dir && len(old.entries) > 0:
		return nil, renameErr(syscall.ENOTEMPTY)
	}
	delete(fromParent.entries, fromName)
	toParent.entries[toName] = ino
	return ino, nil
}

// ReuseForWrite implements vfs.FS: oldname is renamed to newname and
// opened for writing.
func (fs *FS) ReuseForWrite(oldname, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	to := clean(newname)
	ino, err := fs.renameLocked(clean(oldname), to)
	if err != nil {
		return nil, err
	}
	if ino.dir {
		return nil, pathErr("open", to, syscall.EISDIR)
	}
	return &file{fs: fs, ino: ino, name: to, writable: true}, nil
}

// MkdirAll implements vfs.FS: the new directories are in the running tree
// only, until their parents are synced (diskfs.MkdirAll does that).
func (fs *FS) MkdirAll(dir string, _ os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := clean(dir)
	if err := fs.check("mkdir", p); err != nil {
		return err
	}
	if p == "/" {
		return nil
	}
	ino := fs.root
	names := strings.Split(p[1:], "/")
	for i, name := range names {
		child := ino.entries[name]
		switch {
		case child == nil:
			child = newDir()
			ino.entries[name] = child
		case !child.dir:
			return pathErr("mkdir", "/"+strings.Join(names[:i+1], "/"), syscall.ENOTDIR)
		}
		ino = child
	}
	return nil
}

// Lock implements vfs.FS: it creates the file if missing and holds it until
// the returned Closer is closed; a second Lock of the path fails with
// EAGAIN, as fcntl's lock does in another process.
func (fs *FS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, ino, err := fs.lookupLocked("lock", name)
	switch {
	case err != nil && !os.IsNotExist(err):
		return nil, err
	case fs.locks[p]:
		return nil, pathErr("lock", p, syscall.EAGAIN)
	case ino == nil:
		if _, err := fs.createLocked("lock", p); err != nil {
			return nil, err
		}
	case ino.dir:
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
		return nil, pathErr("readdir", d, syscall.ENOTDIR)
	}
	return slices.Sorted(maps.Keys(ino.entries)), nil
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

// syncDirLocked makes the entries of the directory ino (open as name)
// durable as the running system sees them. A directory removed since it
// was opened is synced too, as fsync on its descriptor does; nothing on
// the disk reaches it unless its parent's durable entries still do.
func (fs *FS) syncDirLocked(ino *inode, name string) error {
	if err := fs.check("fsync", name); err != nil {
		return err
	}
	if fs.syncErr != nil {
		return pathErr("fsync", name, fs.syncErr)
	}
	ino.durable = maps.Clone(ino.entries)
	return nil
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
		return f.fs.syncDirLocked(f.ino, f.name)
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
