package sessionhost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	if err := c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info, Cwd: dir, Home: home, Umask: umask()}); err != nil {
		return
	}
	// Bytes the client sent after its request may already sit in c's
	// buffer: read through it, write to the socket itself. The client
	// resolves relative paths against dir itself and sends absolute ones:
	// pkg/sftp's server, given a working directory, would also make a
	// relative symlink's target absolute (e0/f -> DIR/e0/f).
	if err := sftpserve.Serve(sftpStream{Reader: c.Reader(), nc: nc}, ""); err != nil {
		h.log.Info("tether cp stream ended", "err", err)
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

func hashFile(f wire.HashFile) wire.HashResult {
	if !filepath.IsAbs(f.Path) || f.Length < 0 || f.Offset < 0 {
		return wire.HashResult{Error: fmt.Sprintf("hash %q: want an absolute path, and an offset and a length of 0 or more", f.Path)}
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
	sum := sha256.New()
	n, err := io.Copy(sum, io.NewSectionReader(fd, f.Offset, f.Length))
	if err != nil {
		return wire.HashResult{Error: fmt.Sprintf("read %s: %v", f.Path, err)}
	}
	if n < f.Length {
		return wire.HashResult{Size: fi.Size(), Error: fmt.Sprintf("%s has %d bytes from offset %d, fewer than the %d asked for", f.Path, n, f.Offset, f.Length)}
	}
	return wire.HashResult{SHA256: hex.EncodeToString(sum.Sum(nil)), Size: fi.Size()}
}
