package sessionhost

import (
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/sftpserve"
	"github.com/tether-sh/tether/internal/wire"
)

// opSftp serves tether cp: it answers with the session's current directory
// (after any cd) and its user's home, then speaks SFTP on the rest of the
// connection with this process's rights — the session's user, never the
// agent's — relative paths resolved against that directory. A copy neither
// claims the session nor disturbs a running command; while one is open the
// session is not idle, and a temporary session waits for its client only
// once the copy's stream has ended.
func (h *Host) opSftp(nc net.Conn, c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	err := h.checkHeldLocked(req.Client, false)
	if h.closing {
		err = h.closingErrLocked()
	}
	if err != nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	h.copies++
	h.graceUntil = time.Time{}
	h.pipes[nc] = struct{}{} // Close ends the copy
	info := h.infoLocked()
	h.mu.Unlock()
	h.poke()
	copyGC(+1)
	defer copyGC(-1)
	defer func() {
		h.mu.Lock()
		h.copies--
		if h.pipes != nil {
			delete(h.pipes, nc)
		}
		h.idleSince = h.now()
		if h.opts.Temporary && h.copies == 0 && h.att == nil {
			// The client removes a temporary session after its copy;
			// one cut off gets the grace to come back and resume.
			grace := time.Duration(req.Grace)
			if grace <= 0 {
				grace = 4 * time.Minute
			}
			h.graceUntil = h.now().Add(grace)
		}
		h.mu.Unlock()
		h.poke()
	}()
	dir, err := h.rs.Dir()
	if err != nil {
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeInternal, "session %s: %v", h.opts.Name, err)))
		return
	}
	home := h.opts.Home
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if err := c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info, Cwd: dir, Home: home, Umask: umask(), MaxPacket: sftpserve.MaxPacket, Hash: sftpserve.HashXXH128}); err != nil {
		return
	}
	// Bytes the client sent after its request may already sit in c's
	// buffer: read through it, write to the socket itself. The client
	// resolves relative paths against dir itself and sends absolute ones:
	// pkg/sftp's server, given a working directory, would also make a
	// relative symlink's target absolute (e0/f -> DIR/e0/f).
	// With FdPass (the agent asks for it) the fds of the regular files
	// opened here go to the agent, which does their reads and writes
	// itself: the bulk bytes skip this process (sftpserve.ServeFD).
	var serr error
	if uc, ok := nc.(*net.UnixConn); ok && req.FdPass {
		serr = sftpserve.ServeFD(c.Reader(), uc)
	} else {
		serr = sftpserve.Serve(sftpStream{Reader: c.Reader(), nc: nc}, "")
	}
	if serr != nil {
		h.log.Info("tether cp stream ended", "err", serr)
	}
}

// copyGCPercent is the collector's GOGC while copies are open. pkg/sftp's
// server and the connection allocate a buffer per packet, gigabytes per
// large copy: at the default 100 the host spent about 10 % of a push in
// the collector; at 400 it collects a quarter as often. The memory limit
// (memwatch) still bounds the heap.
const copyGCPercent = 400

var gcCopies struct {
	sync.Mutex
	n    int
	prev int
}

// copyGC counts open copies (d = +1, -1): the first raises GOGC to
// copyGCPercent, the last puts back what was there.
func copyGC(d int) {
	gcCopies.Lock()
	defer gcCopies.Unlock()
	if gcCopies.n == 0 && d > 0 {
		gcCopies.prev = debug.SetGCPercent(copyGCPercent)
	}
	gcCopies.n += d
	if gcCopies.n == 0 {
		debug.SetGCPercent(gcCopies.prev)
	}
}

// umask is this process's file mode creation mask, as /proc shows it
// (reading it with umask(2) would change it for a moment, for every
// thread); "" when /proc does not say.
func umask() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type sftpStream struct {
	io.Reader
	nc net.Conn
}

func (s sftpStream) Write(b []byte) (int, error) { return s.nc.Write(b) }
func (s sftpStream) Close() error                { return s.nc.Close() }

// opHash answers tether cp's checks: the SHA-256 of the first Length bytes
// of each file, read with this process's (the session user's) rights.
func (h *Host) opHash(c *wire.Conn, req *wire.Request) {
	if len(req.Files) > wire.MaxHashFiles {
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeBadRequest, "%d files in one hash request, at most %d", len(req.Files), wire.MaxHashFiles)))
		return
	}
	out := make([]wire.HashResult, len(req.Files))
	for i, f := range req.Files {
		out[i] = hashFile(f)
	}
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Hashes: out})
}

// chains keeps the running SHA-256 of the files tether cp checks segment
// by segment (wire.HashFile.Chain), so that each check reads and hashes
// only the segment just written, not the whole prefix again. The state is
// only a shortcut: without it the prefix is hashed from the file, with the
// same answer.
var chains = struct {
	sync.Mutex
	m map[chainKey]*chainState
}{m: map[chainKey]*chainState{}}

// maxChains bounds the states kept: a few pushes at once each hold one;
// an abandoned one (a client gone) is dropped when the map is full.
const maxChains = 64

type chainKey struct{ chain, path, algo string }

type chainState struct {
	h        hash.Hash
	off      int64 // bytes of the file h has seen
	dev, ino uint64
}

// takeChain removes and returns the state of k if it has hashed exactly
// the first off bytes of the file dev/ino; else nil.
func takeChain(k chainKey, off int64, dev, ino uint64) *chainState {
	chains.Lock()
	defer chains.Unlock()
	st := chains.m[k]
	delete(chains.m, k)
	if st == nil || st.off != off || st.dev != dev || st.ino != ino {
		return nil
	}
	return st
}

func putChain(k chainKey, st *chainState) {
	chains.Lock()
	defer chains.Unlock()
	if len(chains.m) >= maxChains {
		for old := range chains.m {
			delete(chains.m, old)
			break
		}
	}
	chains.m[k] = st
}

func hashFile(f wire.HashFile) wire.HashResult {
	if !filepath.IsAbs(f.Path) || f.Length < 0 || f.Offset < 0 {
		return wire.HashResult{Error: fmt.Sprintf("hash %q: want an absolute path, and an offset and a length of 0 or more", f.Path)}
	}
	if sftpserve.NewHash(f.Algo) == nil {
		return wire.HashResult{Error: fmt.Sprintf("hash %q: no checksum %q here; this host speaks sha256 and %s", f.Path, f.Algo, sftpserve.HashXXH128)}
	}
	// O_NONBLOCK: a FIFO put where a file was must not hang the host.
	fd, err := os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return wire.HashResult{Error: err.Error()}
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return wire.HashResult{Error: err.Error()}
	}
	if !fi.Mode().IsRegular() {
		return wire.HashResult{Error: fmt.Sprintf("%s is not a regular file (%s)", f.Path, fi.Mode().Type())}
	}
	if f.Chain != "" {
		return hashChained(fd, fi, f)
	}
	sum := sftpserve.NewHash(f.Algo)
	n, err := io.Copy(sum, io.NewSectionReader(fd, f.Offset, f.Length))
	if err != nil {
		return wire.HashResult{Error: fmt.Sprintf("read %s: %v", f.Path, err)}
	}
	if n < f.Length {
		return wire.HashResult{Size: fi.Size(), Error: fmt.Sprintf("%s has %d bytes from offset %d, fewer than the %d asked for", f.Path, n, f.Offset, f.Length)}
	}
	return result(f.Algo, hex.EncodeToString(sum.Sum(nil)), fi.Size(), false)
}

// result is an answer in sum: as Sum, and as SHA256 too for SHA-256 (what
// older clients read).
func result(algo, sum string, size int64, prefix bool) wire.HashResult {
	r := wire.HashResult{Sum: sum, Size: size, Prefix: prefix}
	if algo == sftpserve.HashSHA256 {
		r.SHA256 = sum
	}
	return r
}

// hashChained answers a Chain request: the SHA-256 of the first
// Offset+Length bytes, continuing the chain's state when it stopped at
// Offset of this same file (device and inode), else from byte 0.
func hashChained(fd *os.File, fi os.FileInfo, f wire.HashFile) wire.HashResult {
	var dev, ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(st.Dev), st.Ino
	}
	k := chainKey{f.Chain, f.Path, f.Algo}
	st := takeChain(k, f.Offset, dev, ino)
	if st == nil {
		st = &chainState{h: sftpserve.NewHash(f.Algo), dev: dev, ino: ino}
	}
	end := f.Offset + f.Length
	n, err := io.Copy(st.h, io.NewSectionReader(fd, st.off, end-st.off))
	if err != nil {
		return wire.HashResult{Error: fmt.Sprintf("read %s: %v", f.Path, err)}
	}
	if st.off+n < end {
		return wire.HashResult{Size: fi.Size(), Error: fmt.Sprintf("%s has %d bytes, fewer than the %d asked for", f.Path, st.off+n, end)}
	}
	st.off = end
	sum := hex.EncodeToString(st.h.Sum(nil))
	putChain(k, st)
	return result(f.Algo, sum, fi.Size(), true)
}
