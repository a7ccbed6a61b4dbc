package copier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// fsys is one side of a copy: the local file system, or a session's
// through SFTP. Paths are absolute and slash-separated on both.
type fsys interface {
	lstat(ctx context.Context, p string) (fs.FileInfo, error)
	stat(ctx context.Context, p string) (fs.FileInfo, error)
	readDir(ctx context.Context, p string) ([]fs.FileInfo, error)
	readLink(ctx context.Context, p string) (string, error)
	mkdir(ctx context.Context, p string) error
	symlink(ctx context.Context, target, p string) error
	rename(ctx context.Context, from, to string) error // replaces to
	remove(ctx context.Context, p string) error
	chmod(ctx context.Context, p string, m fs.FileMode) error
	chtimes(ctx context.Context, p string, atime, mtime time.Time) error
	name() string // for messages: "" local, else the target
}

type localFS struct{}

func (localFS) lstat(_ context.Context, p string) (fs.FileInfo, error) { return os.Lstat(p) }
func (localFS) stat(_ context.Context, p string) (fs.FileInfo, error)  { return os.Stat(p) }
func (localFS) readDir(_ context.Context, p string) ([]fs.FileInfo, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make([]fs.FileInfo, 0, len(ents))
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // gone since the listing
			}
			return nil, err
		}
		out = append(out, fi)
	}
	return out, nil
}
func (localFS) readLink(_ context.Context, p string) (string, error) { return os.Readlink(p) }
func (localFS) mkdir(_ context.Context, p string) error              { return os.Mkdir(p, 0o700) }
func (localFS) symlink(_ context.Context, t, p string) error         { return os.Symlink(t, p) }
func (localFS) rename(_ context.Context, a, b string) error          { return os.Rename(a, b) }
func (localFS) remove(_ context.Context, p string) error             { return os.Remove(p) }
func (localFS) chmod(_ context.Context, p string, m fs.FileMode) error {
	return os.Chmod(p, m)
}
func (localFS) chtimes(_ context.Context, p string, a, m time.Time) error {
	return os.Chtimes(p, a, m)
}
func (localFS) name() string { return "" }

type remoteFS struct{ r *remote }

func (f remoteFS) lstat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = f.r.do(ctx, func(sc *sftp.Client) (e error) { fi, e = sc.Lstat(p); return })
	return
}
func (f remoteFS) stat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = f.r.do(ctx, func(sc *sftp.Client) (e error) { fi, e = sc.Stat(p); return })
	return
}
func (f remoteFS) readDir(ctx context.Context, p string) (fis []fs.FileInfo, err error) {
	err = f.r.do(ctx, func(sc *sftp.Client) (e error) { fis, e = sc.ReadDir(p); return })
	return
}
func (f remoteFS) readLink(ctx context.Context, p string) (t string, err error) {
	err = f.r.do(ctx, func(sc *sftp.Client) (e error) { t, e = sc.ReadLink(p); return })
	return
}
func (f remoteFS) mkdir(ctx context.Context, p string) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.Mkdir(p) })
}
func (f remoteFS) symlink(ctx context.Context, t, p string) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.Symlink(t, p) })
}
func (f remoteFS) rename(ctx context.Context, a, b string) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.PosixRename(a, b) })
}
func (f remoteFS) remove(ctx context.Context, p string) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.Remove(p) })
}
func (f remoteFS) chmod(ctx context.Context, p string, m fs.FileMode) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.Chmod(p, m) })
}
func (f remoteFS) chtimes(ctx context.Context, p string, a, m time.Time) error {
	return f.r.do(ctx, func(sc *sftp.Client) error { return sc.Chtimes(p, a, m) })
}
func (f remoteFS) name() string { return f.r.target.WithSession(f.r.session).String() }

// where names p on side f for a message: TARGET:PATH, or PATH locally.
func where(f fsys, p string) string {
	if n := f.name(); n != "" {
		return n + ":" + p
	}
	return p
}

// atime is the access time in fi, or its mtime when the side has none.
func atime(fi fs.FileInfo) time.Time {
	switch st := fi.Sys().(type) {
	case *syscall.Stat_t:
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	case *sftp.FileStat:
		return time.Unix(int64(st.Atime), 0)
	}
	return fi.ModTime()
}

// checkName refuses a directory entry name that is not one plain name: a
// hostile host listing "../x" or "a/b" must not place files outside the
// destination.
func checkName(side fsys, dir, n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
		return fmt.Errorf("%s lists an entry named %q, which is not a file name (a path or '..'); refusing to copy it", where(side, dir), n)
	}
	return nil
}

func joinRemote(dir, rel string) string { return path.Join(dir, rel) }
func cleanRemote(p string) string       { return path.Clean(p) }
func joinLocal(dir, rel string) string  { return filepath.Join(dir, rel) }
