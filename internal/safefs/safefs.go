// Package safefs is how a process running as root does file work in places
// a user can change without being tricked by them: opens below a directory
// fd that never follow a symlink or leave the directory, non-blocking opens
// checked by fstat (regular file, expected owner) and bounded reads,
// directories made and given to a user by fd, and a way to run a function
// with a user's file-system rights (AsUser).
package safefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors, for callers that tell a hostile entry from a missing one.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrNotDir     = errors.New("not a directory (a symlink or another kind of file)")
	ErrOwner      = errors.New("owned by an unexpected user")
	ErrTooLarge   = errors.New("file too large")
	ErrBadName    = errors.New("name must be relative, without '..' components")
)

// OpenDir opens a directory whose path is controlled by the caller (root),
// refusing a symlink as its last component.
func OpenDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: dirErr(err)}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// OpenBeneath opens name, a relative path of one or more components, below
// dir without following any symlink (in any component) and without leaving
// dir. O_NOFOLLOW, O_NONBLOCK (a FIFO cannot block the open), O_NOCTTY and
// O_CLOEXEC are always added to flags.
func OpenBeneath(dir *os.File, name string, flags int, perm uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	flags |= unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	how := unix.OpenHow{
		Flags:   uint64(flags),
		Mode:    uint64(perm),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(int(dir.Fd()), name, &how)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = openWalk(int(dir.Fd()), name, flags, perm)
	}
	if err != nil {
		if flags&unix.O_DIRECTORY != 0 {
			err = dirErr(err)
		}
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name)), nil
}

// openWalk is OpenBeneath for kernels without openat2 (before 5.6): one
// component at a time, each with O_NOFOLLOW.
func openWalk(dirfd int, name string, flags int, perm uint32) (int, error) {
	parts := strings.Split(name, "/")
	cur := dirfd
	for i, p := range parts {
		last := i == len(parts)-1
		fl := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			fl = flags
		}
		fd, err := unix.Openat(cur, p, fl, perm)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

func checkName(name string) error {
	if name == "" || filepath.IsAbs(name) {
		return ErrBadName
	}
	for _, p := range strings.Split(name, "/") {
		if p == ".." || p == "" {
			return ErrBadName
		}
	}
	return nil
}

// dirErr turns what open(O_DIRECTORY|O_NOFOLLOW) says about a symlink or a
// file into ErrNotDir.
func dirErr(err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %v", ErrNotDir, err)
	}
	return err
}

// ReadFileBounded reads an opened file after checking with fstat that it
// is a regular file owned by uid (any owner when uid < 0) and not larger
// than limit bytes. It never reads more than limit+1 bytes.
func ReadFileBounded(f *os.File, limit int64, uid int) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: ErrNotRegular}
	}
	if uid >= 0 && int(st.Uid) != uid {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: fmt.Errorf("%w: uid %d, want %d", ErrOwner, st.Uid, uid)}
	}
	if st.Size > limit {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, st.Size, limit)}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: err}
	}
	if int64(len(b)) > limit {
		return nil, &os.PathError{Op: "read", Path: f.Name(), Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
	}
	return b, nil
}

// ReadBeneath is OpenBeneath(dir, name, O_RDONLY) then ReadFileBounded.
func ReadBeneath(dir *os.File, name string, limit int64, uid int) ([]byte, error) {
	f, err := OpenBeneath(dir, name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadFileBounded(f, limit, uid)
}

// MkdirOwned makes directory name (one component) in dir, or finds it
// there, and gives it uid:gid and perm — by fd, never by path. With
// exclusive an existing entry is an error wrapping os.ErrExist. An entry
// that is not a directory (a symlink, a file) gives ErrNotDir and is left
// alone: the caller decides whether to move it aside (dir must then be one
// the user cannot write, or the check means nothing).
func MkdirOwned(dir *os.File, name string, perm os.FileMode, uid, gid int, exclusive bool) (*os.File, bool, error) {
	if strings.Contains(name, "/") || checkName(name) != nil || name == "." {
		return nil, false, &os.PathError{Op: "mkdir", Path: name, Err: ErrBadName}
	}
	created := true
	err := unix.Mkdirat(int(dir.Fd()), name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		if exclusive {
			return nil, false, &os.PathError{Op: "mkdir", Path: filepath.Join(dir.Name(), name), Err: os.ErrExist}
		}
		created, err = false, nil
	}
	if err != nil {
		return nil, false, &os.PathError{Op: "mkdir", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	f, err := OpenBeneath(dir, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, created, err
	}
	if err := FchownMod(f, uid, gid, perm); err != nil {
		f.Close()
		return nil, created, err
	}
	return f, created, nil
}

// FchownMod sets an opened file's owner and mode, by fd.
func FchownMod(f *os.File, uid, gid int, perm os.FileMode) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Fchown(int(f.Fd()), uid, gid); err != nil {
			return &os.PathError{Op: "fchown", Path: f.Name(), Err: err}
		}
	}
	if os.FileMode(st.Mode)&os.ModePerm != perm {
		if err := unix.Fchmod(int(f.Fd()), uint32(perm)); err != nil {
			return &os.PathError{Op: "fchmod", Path: f.Name(), Err: err}
		}
	}
	return nil
}

// Owner is the uid and gid of an opened file.
func Owner(f *os.File) (uid, gid int, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return -1, -1, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return int(st.Uid), int(st.Gid), nil
}

// Rename renames an entry within dir (both names one component); it never
// follows a symlink, so it is how a bad entry is moved aside.
func Rename(dir *os.File, from, to string) error {
	if err := unix.Renameat(int(dir.Fd()), from, int(dir.Fd()), to); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(dir.Name(), from), New: filepath.Join(dir.Name(), to), Err: err}
	}
	return nil
}

// Rmdir removes the empty directory name in dir (rmdir never follows a
// symlink). A missing entry is not an error.
func Rmdir(dir *os.File, name string) error {
	err := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return nil
}

// RemoveContents empties the directory name below dir with unlinkat and
// openat(O_NOFOLLOW) only: a symlink inside is removed, never followed.
// Run it AsUser for a directory the user owns, so that a directory swapped
// in while it runs gives nothing the user could not remove themselves.
func RemoveContents(dir *os.File, name string) error {
	f, err := OpenBeneath(dir, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return removeIn(f, 0)
}

const maxRemoveDepth = 256

func removeIn(d *os.File, depth int) error {
	if depth > maxRemoveDepth {
		return &os.PathError{Op: "remove", Path: d.Name(), Err: errors.New("directories nested too deep")}
	}
	var first error
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if err := removeEntry(d, n, depth); err != nil && first == nil {
				first = err
			}
		}
		if err != nil || len(names) == 0 {
			break
		}
	}
	return first
}

func removeEntry(d *os.File, n string, depth int) error {
	err := unix.Unlinkat(int(d.Fd()), n, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "unlink", Path: filepath.Join(d.Name(), n), Err: err}
	}
	sub, err := OpenBeneath(d, n, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	err = removeIn(sub, depth+1)
	sub.Close()
	if err != nil {
		return err
	}
	return Rmdir(d, n)
}

// IsNotDir reports whether err says an entry was not a real directory.
func IsNotDir(err error) bool { return errors.Is(err, ErrNotDir) }
