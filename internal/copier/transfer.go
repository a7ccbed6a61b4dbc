package copier

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/tether-sh/tether/internal/sftpserve"
	"github.com/tether-sh/tether/internal/wire"
)

// resumeMin is the size from which a first attempt looks for the temp file
// of an earlier, cut run to resume; smaller files are simply sent again.
const resumeMin = 4 << 20

// tempName is where a file is written before it is renamed into place: in
// the destination's directory (so the rename is atomic), hidden, and the
// same for the same source and client, so that a later attempt finds it.
func tempName(dst, src string, fi fs.FileInfo, clientID string) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", clientID, src, fi.Size(), fi.ModTime().UnixNano()))
	base := path.Base(dst)
	if len(base) > 200 {
		base = base[:200]
	}
	return path.Join(path.Dir(dst), "."+base+".tether-"+hex.EncodeToString(h[:6]))
}

// counter reports bytes to the progress callback, and can take back what
// an attempt cut short reported.
type counter struct {
	fn      func(int64)
	counted int64
}

func (c *counter) set(n int64) {
	if c.fn != nil && n != c.counted {
		c.fn(n - c.counted)
	}
	c.counted = n
}

// hashingReader hashes and counts what is read through it, in order.
type hashingReader struct {
	ctx context.Context // an interrupted copy stops at the next read
	r   io.Reader
	h   hash.Hash
	c   *counter
	pos int64
}

func (h *hashingReader) Read(b []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(b)
	if n > 0 {
		h.h.Write(b[:n])
		h.pos += int64(n)
		h.c.set(h.pos)
	}
	return n, err
}

type hashingWriter struct {
	ctx context.Context
	w   io.Writer
	h   hash.Hash
	c   *counter
	pos int64
}

func (h *hashingWriter) Write(b []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.w.Write(b)
	if n > 0 {
		h.h.Write(b[:n])
		h.pos += int64(n)
		h.c.set(h.pos)
	}
	return n, err
}

// algo is the copy's checksum (sftpserve.HashSHA256 or HashXXH128): the
// fast one when the host offers it.
func (j *job) algo() string {
	if j.r == nil {
		return sftpserve.HashSHA256
	}
	return j.r.algo
}

// newHash is a new hash of the copy's checksum.
func (j *job) newHash() hash.Hash { return sftpserve.NewHash(j.algo()) }

// sumOf is the host's answer in the copy's checksum (older hosts: SHA-256
// only, in its own field).
func (j *job) sumOf(got wire.HashResult) string {
	if j.algo() == sftpserve.HashSHA256 && got.Sum == "" {
		return got.SHA256
	}
	return got.Sum
}

// hashPrefix hashes the first n bytes of r into a new hash.
func (j *job) hashPrefix(r io.ReaderAt, n int64) (hash.Hash, error) { return j.hashSection(r, 0, n) }

// hashSection hashes n bytes of r from off into a new hash.
func (j *job) hashSection(r io.ReaderAt, off, n int64) (hash.Hash, error) {
	h := j.newHash()
	if _, err := io.Copy(h, io.NewSectionReader(r, off, n)); err != nil {
		return nil, err
	}
	return h, nil
}

// pushFile sends local file e.src to the session as e.dst: into a temp
// file, resumed after a cut from what the temp file verifiably holds, its
// SHA-256 checked by the session host, then renamed over e.dst.
func (j *job) pushFile(e *entry, res *FileResult) (*landed, error) {
	ctx, r := j.ctx, j.r
	f, err := os.OpenFile(e.src, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", e.src, pathless(err))
	}
	defer f.Close()
	fi0, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", e.src, err)
	}
	if !fi0.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", e.src, fi0.Mode().Type())
	}
	size := fi0.Size()
	tmp := tempName(e.dst, e.src, fi0, j.clientID)
	cleanup := func() { j.dst.remove(context.WithoutCancel(ctx), tmp) }
	cnt := &counter{fn: j.o.Progress}
	defer cnt.set(size) // a failed file counts as done for the bar
	good := int64(-1)   // bytes of tmp known written, after a cut
	var h hash.Hash
	created := false
	var checks []<-chan error // segment checks of the last attempt; [0, its start) was checked before it
	for attempt := 0; ; attempt++ {
		sc, gen := r.client()
		off := int64(0)
		h = j.newHash()
		// The host's running hash of this attempt's tmp: each segment's
		// check hashes only that segment on both sides.
		chain := rand.Text()
		if attempt > 0 || (size >= resumeMin && !e.fresh) {
			st, err := sc.Lstat(tmp)
			if r.lost(gen, err) {
				if err := r.reconnect(ctx, gen, err); err != nil {
					return nil, err
				}
				continue
			}
			if err == nil && st.Mode().IsRegular() {
				n := min(st.Size(), size)
				if good >= 0 {
					n = min(n, good)
				}
				if ph, why := j.verifyPrefix(tmp, chain, f, n); why == nil {
					off, h = n, ph
				} else if n > 0 && j.o.Notify != nil {
					fmt.Fprintf(j.o.Notify, "tether: %s: the %d bytes already sent cannot be used (%v); sending it from the start\n", where(j.dst, e.dst), n, why)
				}
			}
		}
		cnt.set(off)
		res.Resumed += off
		var rf *sftp.File
		if off == 0 {
			// Exclusive first: a file this open made has a known mode.
			rf, err = sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
			created = err == nil
			if err != nil && !r.lost(gen, err) {
				rf, err = sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			}
		} else {
			created = false
			rf, err = sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE)
		}
		if err != nil {
			if r.lost(gen, err) {
				if err := r.reconnect(ctx, gen, err); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("%s: cannot create it: %w", where(j.dst, e.dst), pathless(err))
		}
		if off > 0 && size > off {
			// Drop what lies past the verified prefix.
			rf.Truncate(off)
		}
		rf.Seek(off, io.SeekStart)
		checks = checks[:0]
		var read, pos int64
		if size-off >= 2*segment {
			read, pos, checks, err = j.sendParallel(f, tmp, chain, off, size, h, cnt)
		} else {
			hr := &hashingReader{ctx: ctx, r: io.NewSectionReader(f, off, size-off), h: h, c: cnt, pos: off}
			if size-off > 2*128<<10 {
				_, err = rf.ReadFromWithConcurrency(hr, 0)
			} else {
				_, err = rf.ReadFrom(hr)
			}
			read = hr.pos
			pos, _ = rf.Seek(0, io.SeekCurrent)
		}
		if cerr := rf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if r.lost(gen, err) {
				good = pos
				if err := r.reconnect(ctx, gen, err); err != nil {
					return nil, err
				}
				continue
			}
			cleanup()
			return nil, fmt.Errorf("%s: write: %w; nothing was left behind", where(j.dst, e.dst), pathless(err))
		}
		if read != size {
			cleanup()
			return nil, fmt.Errorf("%s: %w (read %d bytes, expected %d); the destination was not changed", e.src, ErrChanged, read, size)
		}
		break
	}
	if fi1, err := f.Stat(); err != nil || fi1.Size() != size || !fi1.ModTime().Equal(fi0.ModTime()) {
		cleanup()
		return nil, fmt.Errorf("%s: %w (its size or modification time moved); the destination was not changed, copy it again", e.src, ErrChanged)
	}
	l := &landed{e: e, tmp: tmp, hashed: tmp, sum: hex.EncodeToString(h.Sum(nil)), size: size, fi: fi0, created: created, cleanup: cleanup}
	if len(checks) > 0 {
		// [0, prefix) was checked before this attempt, each segment
		// after it by the host: the whole file is verified.
		for _, c := range checks {
			if err := <-c; err != nil {
				cleanup()
				return nil, fmt.Errorf("%s: %w", where(j.dst, e.dst), err)
			}
		}
		l.verified = true
	}
	return l, nil
}

// segment is the unit a large push is checked in.
const segment = 64 << 20

// streamsPerPush SFTP streams (SSH channels) carry a large push, each
// with writesPerStream writes in flight: x/crypto/ssh gives a channel a
// 2 MiB window, which drains in a few milliseconds while the agent and
// the session host wait for a core; one stream alone left the copy
// waiting for window more than for CPU.
const (
	streamsPerPush  = 4
	writesPerStream = 8
)

// sendParallel sends bytes [off, size) of f into tmp over every stream of
// the connection: this goroutine reads f in order, hashing it into h and
// counting it, and writers on the streams send its pieces at once. When
// all writes of a segment are acknowledged, the segment is checked (in
// order: the host's chain). It returns the bytes of f read, the bytes of
// tmp known written (the whole segments before the first failed write),
// the checks, and the first error.
func (j *job) sendParallel(f *os.File, tmp, chain string, off, size int64, h hash.Hash, cnt *counter) (read, good int64, checks []<-chan error, err error) {
	j.r.widen(streamsPerPush)
	scs, _, chunk := j.r.all()
	var files []*sftp.File
	defer func() {
		for _, hf := range files {
			if cerr := hf.Close(); err == nil {
				err = cerr
			}
		}
	}()
	for _, sc := range scs {
		hf, err := sc.OpenFile(tmp, os.O_WRONLY)
		if err != nil {
			return off, off, nil, err
		}
		files = append(files, hf)
	}
	ctx, cancel := context.WithCancel(j.ctx)
	defer cancel()
	var emu sync.Mutex
	fail := func(e error) {
		emu.Lock()
		if err == nil {
			err = e
		}
		emu.Unlock()
		cancel()
	}
	nseg := int((size - off + segment - 1) / segment)
	type segState struct {
		wg     sync.WaitGroup
		failed atomic.Bool
		whole  bool // every piece was read and handed to a writer
	}
	segs := make([]segState, nseg)
	type piece struct {
		b   []byte
		off int64
		seg *segState
	}
	nw := len(files) * writesPerStream
	work := make(chan piece)
	free := make(chan []byte, nw+2)
	for range nw + 2 {
		free <- make([]byte, chunk)
	}
	var writers sync.WaitGroup
	for i := range nw {
		hf := files[i%len(files)]
		writers.Add(1)
		go func() {
			defer writers.Done()
			for p := range work {
				if _, werr := hf.WriteAt(p.b, p.off); werr != nil {
					p.seg.failed.Store(true)
					fail(werr)
				}
				p.seg.wg.Done()
				free <- p.b[:cap(p.b)]
			}
		}()
	}
	pos := off
	prev := make(chan struct{}) // closed when the previous segment's check is queued
	close(prev)
reading:
	for k := range segs {
		sg := &segs[k]
		start := off + int64(k)*segment
		end := min(start+segment, size)
		for pos < end {
			var b []byte
			select {
			case b = <-free:
			case <-ctx.Done():
				break reading
			}
			n, rerr := f.ReadAt(b[:min(int64(len(b)), end-pos)], pos)
			if n > 0 {
				h.Write(b[:n])
				sg.wg.Add(1)
				select {
				case work <- piece{b[:n], pos, sg}:
				case <-ctx.Done():
					sg.wg.Done()
					break reading
				}
				pos += int64(n)
				cnt.set(pos)
			}
			if rerr == io.EOF {
				break reading // shorter than it was: the caller says so
			}
			if rerr != nil {
				fail(fmt.Errorf("read %s: %w", f.Name(), rerr))
				break reading
			}
		}
		sg.whole = true
		sum := hex.EncodeToString(h.Sum(nil))
		wait, next := prev, make(chan struct{})
		prev = next
		res := make(chan error, 1)
		checks = append(checks, res)
		go func() {
			sg.wg.Wait()
			<-wait
			// j.ctx, not ctx: ctx ends when sendParallel returns,
			// which may be before the last segments are checked.
			if sg.failed.Load() || j.ctx.Err() != nil {
				close(next)
				res <- errors.New("not sent")
				return
			}
			c := j.checkSegment(f, tmp, chain, start, end-start, size, sum)
			close(next)
			res <- <-c
		}()
	}
	close(work)
	writers.Wait()
	if cerr := j.ctx.Err(); cerr != nil {
		fail(cerr)
	}
	good = off
	for k := range segs {
		if !segs[k].whole || segs[k].failed.Load() {
			break
		}
		good = min(off+int64(k+1)*segment, size)
	}
	emu.Lock()
	defer emu.Unlock()
	return pos, good, checks, err
}

// checkSegment asks the session host, in the background, for the SHA-256
// of the first off+n bytes of tmp, continuing the chain's running hash,
// and compares it with sum, the local file's. The last segment must also
// end the file (size bytes). A host that does not know chains answers
// with the hash of the segment alone, which is then compared with the
// local segment's, read again. The request is queued before it returns,
// so checks go to the host in the order they are made.
func (j *job) checkSegment(f *os.File, tmp, chain string, off, n, size int64, sum string) <-chan error {
	c := make(chan error, 1)
	call := j.r.ask(j.ctx, wire.HashFile{Path: tmp, Offset: off, Length: n, Chain: chain, Algo: j.algo()})
	go func() {
		<-call.done
		got, err := call.res, call.err
		if err == nil && got.Error == "" && !got.Prefix {
			var sh hash.Hash
			if sh, err = j.hashSection(f, off, n); err == nil {
				sum = hex.EncodeToString(sh.Sum(nil))
			}
		}
		switch {
		case err != nil:
		case got.Error != "":
			err = errors.New(got.Error)
		case off+n == size && got.Size != size:
			err = fmt.Errorf("%w: the host's copy has %d bytes, not %d; the destination was not changed", ErrChecksum, got.Size, size)
		case j.sumOf(got) != sum:
			err = fmt.Errorf("%w in bytes 0-%d: sent %s %s, the host has %s; the destination was not changed", ErrChecksum, off+n, sftpserve.HashName(j.algo()), sum, j.sumOf(got))
		}
		c <- err
	}()
	return c
}

// verifyPrefix checks that the first n bytes of the session's tmp are the
// first n bytes of local f (hashed on both sides) and returns the running
// hash of that prefix, or why they cannot be used. The host keeps its own under chain, for
// the segment checks that follow.
func (j *job) verifyPrefix(tmp, chain string, f *os.File, n int64) (hash.Hash, error) {
	if n <= 0 {
		return nil, errors.New("nothing arrived")
	}
	ph, err := j.hashPrefix(f, n)
	if err != nil {
		return nil, err
	}
	got, err := j.r.hashFile(j.ctx, wire.HashFile{Path: tmp, Length: n, Chain: chain, Algo: j.algo()})
	if err != nil {
		return nil, err
	}
	if got.Error != "" {
		return nil, errors.New(got.Error)
	}
	if want := hex.EncodeToString(cloneSum(ph)); j.sumOf(got) != want {
		return nil, fmt.Errorf("the host's copy of them differs: %s, not %s", j.sumOf(got), want)
	}
	return ph, nil
}

// cloneSum is h's sum so far, leaving h to go on (Sum appends, it does not
// reset).
func cloneSum(h hash.Hash) []byte { return h.Sum(nil) }

// pullFile fetches the session's e.src to local e.dst the same way: a temp
// file hashed while written, resumed after a cut from its verified prefix,
// checked against the session host's SHA-256 of the source, renamed.
func (j *job) pullFile(e *entry, res *FileResult) (*landed, error) {
	ctx, r := j.ctx, j.r
	size := e.fi.Size()
	tmp := tempName(e.dst, where(j.src, e.src), e.fi, j.clientID)
	cleanup := func() { os.Remove(tmp) }
	lf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create it: %w", e.dst, pathless(err))
	}
	defer lf.Close()
	cnt := &counter{fn: j.o.Progress}
	defer cnt.set(size)
	// The host hashes the source while it sends it, not after: the
	// check's answer is there when the last byte is. A source that
	// changes in between does not match what arrived, as it would not
	// after.
	var pre chan hashAnswer
	if size >= batchMax {
		pre = make(chan hashAnswer, 1)
		go func() {
			got, err := r.hash(ctx, e.src, 0, size)
			pre <- hashAnswer{got, err}
		}()
	}
	var h hash.Hash
	for attempt := 0; ; attempt++ {
		sc, gen := r.client()
		off := int64(0)
		h = j.newHash()
		if st, err := lf.Stat(); err == nil && st.Size() > 0 && (attempt > 0 || size >= resumeMin) {
			n := min(st.Size(), size)
			if ph, err := j.hashPrefix(lf, n); err == nil {
				got, err := r.hash(ctx, e.src, 0, n)
				if err == nil && got.Error == "" && j.sumOf(got) == hex.EncodeToString(ph.Sum(nil)) {
					off, h = n, ph
				}
			}
		}
		cnt.set(off)
		res.Resumed += off
		if err := lf.Truncate(off); err != nil {
			cleanup()
			return nil, fmt.Errorf("truncate %s: %w", tmp, err)
		}
		rf, err := sc.Open(e.src)
		if err != nil {
			if r.lost(gen, err) {
				if err := r.reconnect(ctx, gen, err); err != nil {
					return nil, err
				}
				continue
			}
			cleanup()
			return nil, fmt.Errorf("%s: %w", where(j.src, e.src), pathless(err))
		}
		rf.Seek(off, io.SeekStart)
		hw := &hashingWriter{ctx: ctx, w: io.NewOffsetWriter(lf, off), h: h, c: cnt, pos: off}
		_, err = rf.WriteTo(hw)
		rf.Close()
		if err != nil {
			if r.lost(gen, err) {
				if err := r.reconnect(ctx, gen, err); err != nil {
					return nil, err
				}
				continue
			}
			cleanup()
			return nil, fmt.Errorf("%s: read: %w; %s was not changed", where(j.src, e.src), pathless(err), e.dst)
		}
		if hw.pos != size {
			cleanup()
			return nil, fmt.Errorf("%s: %w (%d bytes, expected %d); %s was not changed", where(j.src, e.src), ErrChanged, hw.pos, size, e.dst)
		}
		break
	}
	return &landed{e: e, tmp: tmp, hashed: e.src, sum: hex.EncodeToString(h.Sum(nil)), size: size, fi: e.fi, cleanup: cleanup, pre: pre}, nil
}

// hashAnswer is a hash request's answer, for a channel.
type hashAnswer struct {
	res wire.HashResult
	err error
}

// landed is a file whose bytes are in its temp file, to be checked against
// the session host's SHA-256 (of the temp file after a push, of the source
// after a pull) and renamed into place.
type landed struct {
	e       *entry
	tmp     string
	hashed  string // the session's path the host hashes
	sum     string // SHA-256 of what the client read (push) or wrote (pull)
	size    int64
	fi      fs.FileInfo // the source's
	created bool        // the temp file is new (exclusive create): it has the server's creation mode
	// verified: the host already checked every byte (segment by
	// segment), no whole-file hash is asked for.
	verified bool
	// pre, when not nil, brings the host's hash of the source, asked
	// for when the pull began.
	pre     <-chan hashAnswer
	cleanup func()
}

// check compares the host's hash with the client's; only equal ones are
// renamed into place.
func (j *job) check(l *landed, got wire.HashResult, err error, res *FileResult) error {
	e := l.e
	if err == nil && got.Error != "" {
		err = errors.New(got.Error)
	}
	if err != nil {
		l.cleanup()
		return fmt.Errorf("%s: checksum: %w", where(j.dst, e.dst), err)
	}
	name := sftpserve.HashName(j.algo())
	if j.sumOf(got) != l.sum || got.Size != l.size {
		l.cleanup()
		if j.push {
			return fmt.Errorf("%s: %w: sent %s %s, the host has %s (%d bytes); the destination was not changed", where(j.dst, e.dst), ErrChecksum, name, l.sum, j.sumOf(got), got.Size)
		}
		return fmt.Errorf("%s: %w (now %d bytes, %s %s; received %s); %s was not changed, copy it again", where(j.src, e.src), ErrChanged, got.Size, name, j.sumOf(got), l.sum, e.dst)
	}
	res.Bytes = l.size
	if j.algo() == sftpserve.HashSHA256 {
		res.SHA256 = l.sum
	} else {
		res.XXH128 = l.sum
	}
	return j.finish(e, l.tmp, l.fi, l.created, l.cleanup)
}

// finish gives the temp file its mode (and times with -p) and renames it
// over the destination.
// created says the temp file was made by this attempt's exclusive open
// (so its mode is the server's creation mode).
func (j *job) finish(e *entry, tmp string, src fs.FileInfo, created bool, cleanup func()) error {
	ctx := j.ctx
	mode := j.fileMode(e, src)
	// A file the session's SFTP server created already has its mode when
	// that is 0644 less the server's umask: one round trip less per file.
	if !(created && j.r.created >= 0 && mode == fs.FileMode(j.r.created)) {
		if err := j.dst.chmod(ctx, tmp, mode); err != nil {
			cleanup()
			return fmt.Errorf("%s: chmod: %w", where(j.dst, e.dst), pathless(err))
		}
	}
	if j.o.Preserve {
		if err := j.dst.chtimes(ctx, tmp, atime(src), src.ModTime()); err != nil {
			cleanup()
			return fmt.Errorf("%s: set times: %w", where(j.dst, e.dst), pathless(err))
		}
	}
	if err := j.dst.rename(ctx, tmp, e.dst); err != nil {
		cleanup()
		if fi, serr := j.dst.lstat(ctx, e.dst); serr == nil && fi.IsDir() {
			return fmt.Errorf("%s is a directory; a file cannot replace it", where(j.dst, e.dst))
		}
		return fmt.Errorf("%s: rename into place: %w", where(j.dst, e.dst), pathless(err))
	}
	return nil
}

// fileMode is what a copied file's mode becomes: the source's with -p;
// else an existing destination keeps its own, and a new file gets the
// source's less group and other write (umask 022), as cp and scp do.
func (j *job) fileMode(e *entry, src fs.FileInfo) fs.FileMode {
	const keep = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if j.o.Preserve {
		return src.Mode() & keep
	}
	if !e.fresh {
		if fi, err := j.dst.lstat(j.ctx, e.dst); err == nil && fi.Mode().IsRegular() {
			return fi.Mode() & fs.ModePerm
		}
	}
	return src.Mode().Perm() &^ 0o022
}

// pathless strips the path and operation that *PathError and sftp's
// status errors repeat, so a message names the path once.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	var se *sftp.StatusError
	if errors.As(err, &se) {
		switch se.FxCode() {
		case sftp.ErrSSHFxPermissionDenied:
			return fs.ErrPermission
		case sftp.ErrSSHFxNoSuchFile:
			return fs.ErrNotExist
		}
		// "sftp: \"write /p/.x.tether-…: no space left on device\" (SSH_FX_FAILURE)":
		// the cause is what follows the last ": " of the quoted text.
		msg := se.Error()
		if i, j := strings.Index(msg, "\""), strings.LastIndex(msg, "\""); i >= 0 && j > i {
			q := msg[i+1 : j]
			if k := strings.LastIndex(q, ": "); k >= 0 {
				q = q[k+2:]
			}
			return errors.New(q)
		}
	}
	return err
}
