// Package copier is `tether cp`: files to and from a session, through the
// session host, which serves SFTP (wire.OpSftp) as the session's user with
// the session's current directory as the working directory. The client
// side is github.com/pkg/sftp's client with concurrent reads and writes.
//
// Semantics are cp's and scp's: into an existing directory, else as the new
// name; -r copies trees (modes, symlinks as symlinks, empty directories);
// -p keeps times and modes; the destination's parent must exist unless
// Parents. Every file is written to a temp name in its destination
// directory and renamed over the destination only once the SHA-256 of what
// landed (the session host hashes its side, wire.OpHash) equals the
// SHA-256 of the source: a partial or corrupt file never replaces one.
// When the transport breaks, the copy reconnects to the same session and
// resumes each file from the prefix both sides hash alike.
package copier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/sftpserve"
	"github.com/tether-sh/tether/internal/wire"
)

// Options control a copy.
type Options struct {
	Recursive bool // -r: directories and what they hold
	Preserve  bool // -p: modification and access times, and modes
	Parents   bool // create the destination's missing parent directories
	// ReconnectTimeout bounds reconnecting after a broken transport; 0
	// means client.DefaultReconnectTimeout, negative never reconnects.
	ReconnectTimeout time.Duration
	Notify           io.Writer // reconnect notices; nil discards them
	// Workers is how many files of a tree travel at once (default 16).
	Workers int
	// OnTotal is told the bytes a copy will move, once it knows them.
	OnTotal func(bytes int64)
	// Progress is told every change of the bytes moved (concurrently).
	Progress func(delta int64)
	// OnFile is told of each file, directory and symlink done or failed
	// (concurrently).
	OnFile func(FileResult)
}

func (o *Options) reconnectTimeout() time.Duration {
	if o.ReconnectTimeout == 0 {
		return client.DefaultReconnectTimeout
	}
	return o.ReconnectTimeout
}

// FileResult is one file's outcome.
type FileResult struct {
	Source  string `json:"source"`
	Dest    string `json:"dest"`
	Type    string `json:"type"` // file, dir, symlink
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256,omitempty"`        // the checksum: SHA-256 against older hosts,
	XXH128  string `json:"xxh128,omitempty"`        // else XXH3-128 (sftpserve.HashXXH128)
	Resumed int64  `json:"resumed_bytes,omitempty"` // bytes not sent again after a cut
	Err     error  `json:"-"`
}

// Stats sum up a copy.
type Stats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
	Reconnects            int
	Session               string // the session copied to or from (a temporary one's name)
}

// Push copies local srcs to dst in target's session (a bare host: a
// temporary session, removed afterwards). It returns the first error, and
// every failure is also told to OnFile.
func Push(ctx context.Context, d *client.Dialer, target client.Target, srcs []string, dst string, o Options) (Stats, error) {
	r := newRemote(d, target, &o, true)
	for _, s := range srcs {
		if fi, err := os.Stat(s); err == nil && fi.Mode().IsRegular() && fi.Size() >= sftpserve.PassAfter {
			r.bulk = true
		}
	}
	if err := r.open(ctx); err != nil {
		return Stats{}, err
	}
	defer r.close(ctx)
	j := &job{ctx: ctx, o: &o, r: r, src: localFS{}, dst: remoteFS{r}, push: true, clientID: d.Client.ID}
	abs := make([]string, len(srcs))
	for i, s := range srcs {
		a, err := filepath.Abs(s)
		if err != nil {
			return Stats{}, err
		}
		abs[i] = a
	}
	st, err := j.run(abs, r.abs(dst), strings.HasSuffix(dst, "/"))
	st.Reconnects, st.Session = r.reconnects, r.session
	return st, err
}

// Pull copies srcs in target's session to local dst.
func Pull(ctx context.Context, d *client.Dialer, target client.Target, srcs []string, dst string, o Options) (Stats, error) {
	r := newRemote(d, target, &o, false)
	if err := r.open(ctx); err != nil {
		return Stats{}, err
	}
	defer r.close(ctx)
	j := &job{ctx: ctx, o: &o, r: r, src: remoteFS{r}, dst: localFS{}, clientID: d.Client.ID}
	abs := make([]string, len(srcs))
	for i, s := range srcs {
		abs[i] = r.abs(s)
	}
	ad, err := filepath.Abs(dst)
	if err != nil {
		return Stats{}, err
	}
	st, err := j.run(abs, ad, strings.HasSuffix(dst, "/"))
	st.Reconnects, st.Session = r.reconnects, r.session
	return st, err
}

type job struct {
	ctx      context.Context
	o        *Options
	r        *remote
	src, dst fsys
	push     bool
	clientID string

	files, links, dirs []*entry

	mu    sync.Mutex
	first error
	stats Stats
}

// entry is one thing to copy.
type entry struct {
	src, dst string
	fi       fs.FileInfo
	// fresh: dst's directory was made by this copy, so dst cannot exist
	// (no need to ask for its mode).
	fresh bool
	// made: this directory was made by this copy (it gets the source's
	// mode; an existing one keeps its own without -p).
	made bool
}

func (j *job) fail(err error, e *entry, typ string) {
	j.mu.Lock()
	if j.first == nil {
		j.first = err
	}
	j.mu.Unlock()
	if j.ctx.Err() != nil && errors.Is(err, j.ctx.Err()) {
		return // interrupted: one error for the copy, not one per file
	}
	if j.o.OnFile != nil {
		r := FileResult{Type: typ, Err: err}
		if e != nil {
			r.Source, r.Dest = where(j.src, e.src), where(j.dst, e.dst)
		}
		j.o.OnFile(r)
	}
}

func (j *job) run(srcs []string, dst string, slash bool) (Stats, error) {
	ctx := j.ctx
	dfi, err := j.dst.stat(ctx, dst)
	if err != nil && !notExist(err) {
		return Stats{}, fmt.Errorf("%s: %w", where(j.dst, dst), pathless(err))
	}
	into := err == nil && dfi.IsDir()
	if err == nil && !dfi.IsDir() && (len(srcs) > 1 || slash) {
		return Stats{}, fmt.Errorf("%s is not a directory; several sources (or a DEST ending in /) go into a directory", where(j.dst, dst))
	}
	if err != nil && (len(srcs) > 1 || slash) {
		if !j.o.Parents {
			return Stats{}, fmt.Errorf("%s does not exist; several sources (or a DEST ending in /) go into an existing directory (--parents creates it)", where(j.dst, dst))
		}
		if err := j.mkdirAll(dst); err != nil {
			return Stats{}, err
		}
		into = true
	}
	if !into {
		parent := path.Dir(dst)
		pfi, err := j.dst.stat(ctx, parent)
		switch {
		case err != nil && notExist(err) && j.o.Parents:
			if err := j.mkdirAll(parent); err != nil {
				return Stats{}, err
			}
		case err != nil && notExist(err):
			return Stats{}, fmt.Errorf("%s: its directory %s does not exist (--parents creates it)", where(j.dst, dst), parent)
		case err != nil:
			return Stats{}, fmt.Errorf("%s: %w", where(j.dst, parent), pathless(err))
		case !pfi.IsDir():
			return Stats{}, fmt.Errorf("%s: %s is not a directory", where(j.dst, dst), parent)
		}
	}
	for _, s := range srcs {
		// Named sources are followed if they are symlinks (as scp);
		// inside a tree, symlinks are copied as symlinks.
		fi, err := j.src.stat(ctx, s)
		if err != nil {
			j.fail(fmt.Errorf("%s: %w", where(j.src, s), pathless(err)), nil, "")
			continue
		}
		target := dst
		if into {
			b := path.Base(s)
			if b == "/" || b == "." || b == ".." {
				j.fail(fmt.Errorf("%s: name the directory to copy, not %q", where(j.src, s), b), nil, "")
				continue
			}
			target = path.Join(dst, b)
		}
		e := &entry{src: s, dst: target, fi: fi}
		if j.push && fi.Mode().IsRegular() {
			// A named symlink is copied as what it points to (files
			// inside trees are opened without following links).
			if real, err := filepath.EvalSymlinks(s); err == nil {
				e.src = real
			}
		}
		switch {
		case fi.IsDir() && !j.o.Recursive:
			j.fail(fmt.Errorf("%s is a directory (use -r to copy it and what it holds)", where(j.src, s)), nil, "")
		case fi.IsDir():
			j.walk(e)
		case fi.Mode().IsRegular():
			j.files = append(j.files, e)
		default:
			j.fail(fmt.Errorf("%s is a %s, not a file or directory; not copied", where(j.src, s), fi.Mode().Type()), nil, "")
		}
	}
	var total int64
	for _, e := range j.files {
		total += e.fi.Size()
	}
	if j.o.OnTotal != nil {
		j.o.OnTotal(total)
	}
	workers := j.o.Workers
	if workers <= 0 {
		workers = 16
	}
	if len(j.files) > 2*workers {
		// pkg/sftp's server does one open, close, chmod or rename at a
		// time per stream: a tree of small files goes over several.
		j.r.widen(4)
	}
	pend := make([]*pendingFile, len(j.files))
	client.Each(len(j.files), workers, func(i int) { pend[i] = j.copyFile(j.files[i]) })
	pend = slices.DeleteFunc(pend, func(p *pendingFile) bool { return p == nil })
	j.checkBatch(pend, workers)
	client.Each(len(j.links), workers, func(i int) { j.copyLink(j.links[i]) })
	// Directories last, deepest first: their modes may forbid writing in
	// them, and writing in them moved their times.
	for _, e := range slices.Backward(j.dirs) {
		j.finishDir(e)
	}
	return j.stats, j.first
}

func notExist(err error) bool {
	return errors.Is(pathless(err), fs.ErrNotExist)
}

func (j *job) mkdirAll(p string) error {
	if p == "/" || p == "." {
		return nil
	}
	fi, err := j.dst.stat(j.ctx, p)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", where(j.dst, p))
		}
		return nil
	}
	if err := j.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	if err := j.dst.mkdir(j.ctx, p); err != nil {
		if fi, serr := j.dst.stat(j.ctx, p); serr == nil && fi.IsDir() {
			return nil
		}
		return fmt.Errorf("mkdir %s: %w", where(j.dst, p), pathless(err))
	}
	return j.dst.chmod(j.ctx, p, 0o755)
}

// walk plans the tree at e: directories are made now (parents first),
// files and symlinks listed for later.
func (j *job) walk(e *entry) {
	ctx := j.ctx
	err := j.dst.mkdir(ctx, e.dst)
	switch {
	case err == nil:
		e.made = true
	default:
		fi, serr := j.dst.lstat(ctx, e.dst)
		if serr != nil || !fi.IsDir() {
			msg := fmt.Errorf("mkdir %s: %w", where(j.dst, e.dst), pathless(err))
			if serr == nil {
				msg = fmt.Errorf("%s exists and is not a directory", where(j.dst, e.dst))
			}
			j.fail(msg, e, "dir")
			return
		}
	}
	j.dirs = append(j.dirs, e)
	kids, err := j.src.readDir(ctx, e.src)
	if err != nil {
		j.fail(fmt.Errorf("list %s: %w", where(j.src, e.src), pathless(err)), e, "dir")
		return
	}
	slices.SortFunc(kids, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	for _, k := range kids {
		if err := checkName(j.src, e.src, k.Name()); err != nil {
			j.fail(err, nil, "")
			continue
		}
		c := &entry{src: path.Join(e.src, k.Name()), dst: path.Join(e.dst, k.Name()), fi: k, fresh: e.made}
		switch m := k.Mode(); {
		case m.IsDir():
			j.walk(c)
		case m.IsRegular():
			j.files = append(j.files, c)
		case m&fs.ModeSymlink != 0:
			j.links = append(j.links, c)
		default:
			j.fail(fmt.Errorf("%s is a %s, not a file, directory or symlink; not copied", where(j.src, c.src), m.Type()), c, "other")
		}
	}
}

// batchMax is the size below which a file's check waits for the batch
// (one hash request for many files) instead of being asked alone.
const batchMax = 1 << 20

// copyFile moves one file's bytes into its temp file. A large file is
// checked and put in place at once; a small one is returned, to be checked
// with the others in a few hash requests (checkBatch).
func (j *job) copyFile(e *entry) *pendingFile {
	if err := j.ctx.Err(); err != nil {
		j.fail(err, e, "file")
		return nil
	}
	res := FileResult{Source: where(j.src, e.src), Dest: where(j.dst, e.dst), Type: "file"}
	var l *landed
	var err error
	if j.push {
		l, err = j.pushFile(e, &res)
	} else {
		l, err = j.pullFile(e, &res)
	}
	if err != nil {
		j.fail(err, e, "file")
		return nil
	}
	if l.size < batchMax {
		return &pendingFile{l: l, res: res}
	}
	if l.verified {
		j.done(l, wire.HashResult{SHA256: l.sum, Sum: l.sum, Size: l.size}, nil, res)
		return nil
	}
	var got wire.HashResult
	if l.pre != nil {
		a := <-l.pre
		got, err = a.res, a.err
	} else {
		got, err = j.r.hash(j.ctx, l.hashed, 0, l.size)
	}
	j.done(l, got, err, res)
	return nil
}

type pendingFile struct {
	l   *landed
	res FileResult
}

func (j *job) done(l *landed, got wire.HashResult, err error, res FileResult) {
	if cerr := j.ctx.Err(); cerr != nil {
		l.cleanup()
		j.fail(cerr, l.e, "file")
		return
	}
	if err := j.check(l, got, err, &res); err != nil {
		j.fail(err, l.e, "file")
		return
	}
	j.mu.Lock()
	j.stats.Files++
	j.stats.Bytes += res.Bytes
	j.mu.Unlock()
	if j.o.OnFile != nil {
		j.o.OnFile(res)
	}
}

// checkBatch checks the small files in as few hash requests as the op
// allows, then puts them in place, workers at once.
func (j *job) checkBatch(pend []*pendingFile, workers int) {
	for len(pend) > 0 {
		if err := j.ctx.Err(); err != nil {
			for _, p := range pend {
				p.l.cleanup()
			}
			j.fail(err, nil, "")
			return
		}
		chunk := pend[:min(len(pend), wire.MaxHashFiles)]
		pend = pend[len(chunk):]
		files := make([]wire.HashFile, len(chunk))
		for i, p := range chunk {
			files[i] = wire.HashFile{Path: p.l.hashed, Length: p.l.size, Algo: j.algo()}
		}
		got, err := j.r.hashBatch(j.ctx, files)
		client.Each(len(chunk), workers, func(i int) {
			var g wire.HashResult
			if err == nil {
				g = got[i]
			}
			j.done(chunk[i].l, g, err, chunk[i].res)
		})
	}
}

// copyLink recreates a symlink (its target as it is, not followed) under a
// temp name and renames it into place.
func (j *job) copyLink(e *entry) {
	ctx := j.ctx
	t, err := j.src.readLink(ctx, e.src)
	if err != nil {
		j.fail(fmt.Errorf("readlink %s: %w", where(j.src, e.src), pathless(err)), e, "symlink")
		return
	}
	tmp := tempName(e.dst, e.src, e.fi, j.clientID)
	j.dst.remove(ctx, tmp)
	if err := j.dst.symlink(ctx, t, tmp); err != nil {
		j.fail(fmt.Errorf("symlink %s: %w", where(j.dst, e.dst), pathless(err)), e, "symlink")
		return
	}
	if err := j.dst.rename(ctx, tmp, e.dst); err != nil {
		j.dst.remove(context.WithoutCancel(ctx), tmp)
		j.fail(fmt.Errorf("rename into %s: %w", where(j.dst, e.dst), pathless(err)), e, "symlink")
		return
	}
	j.mu.Lock()
	j.stats.Symlinks++
	j.mu.Unlock()
	if j.o.OnFile != nil {
		j.o.OnFile(FileResult{Source: where(j.src, e.src), Dest: where(j.dst, e.dst), Type: "symlink"})
	}
}

// finishDir gives a directory its mode (a made one the source's, less
// umask 022 without -p) and, with -p, its times.
func (j *job) finishDir(e *entry) {
	ctx := j.ctx
	if j.o.Preserve || e.made {
		mode := e.fi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
		if !j.o.Preserve {
			mode &^= 0o022
		}
		if err := j.dst.chmod(ctx, e.dst, mode); err != nil {
			j.fail(fmt.Errorf("chmod %s: %w", where(j.dst, e.dst), pathless(err)), e, "dir")
			return
		}
	}
	if j.o.Preserve {
		if err := j.dst.chtimes(ctx, e.dst, atime(e.fi), e.fi.ModTime()); err != nil {
			j.fail(fmt.Errorf("set times of %s: %w", where(j.dst, e.dst), pathless(err)), e, "dir")
			return
		}
	}
	j.mu.Lock()
	j.stats.Dirs++
	j.mu.Unlock()
	if j.o.OnFile != nil {
		j.o.OnFile(FileResult{Source: where(j.src, e.src), Dest: where(j.dst, e.dst), Type: "dir"})
	}
}
