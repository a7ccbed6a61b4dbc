// Package mux is Tether's equivalent of OpenSSH's ControlMaster: a
// background process (the master, `tether mux-master`) holds one
// authenticated SSH connection to an agent and lends channels on it to later
// tether processes of the same user through a unix socket, so they skip the
// TCP connect, the SSH handshake and key loading.
//
// Each channel is one unix connection. The client sends one request frame
// (open a channel of a type, status, or stop); the master answers OK or
// Fail; after a successful open both sides exchange Data, EOF (CloseWrite)
// and Close frames, which the master maps onto the SSH channel. A client
// may send Data right after its open, before the answer (Pending): the
// master reads none of it before its OK. Frames rather
// than raw bytes because a stream socket cannot tell its peer's
// shutdown(SHUT_WR) from its close(): a client that gives up on a command
// must close the SSH channel (so the session host marks the session
// detached), not just half-close it.
//
// Security: the socket lives in a 0700 directory owned by the user (checked
// with lstat before use, by both sides), is created 0600, and each side
// checks the other's uid with SO_PEERCRED. The master opens only the channel
// type it was started for.
package mux

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/peercred"
)

// Frame types.
const (
	fOpen   = 'O' // client → master, first: payload is the channel type
	fStatus = 'S' // client → master, first: answered with OK and a text
	fStop   = 'X' // client → master, first: the master answers OK and exits
	fOK     = 'K'
	fFail   = 'F' // payload: reason u32 | message
	fData   = 'D'
	fEOF    = 'E'
	fClose  = 'C'
)

// maxFrame bounds a frame's payload.
const maxFrame = 64 << 10

// ErrNoMaster means no master answers on the socket (none was started, or
// it exited): the caller dials directly.
var ErrNoMaster = errors.New("mux: no master")

// ErrNoAnswer means a master did not answer a channel request sent with
// its first bytes (Pending.Finish) in time, or answered only in part: it
// may have forwarded them since, so the caller must not send them again
// elsewhere.
var ErrNoAnswer = errors.New("mux: the master did not answer")

// OpenError is the agent's refusal to open a channel, passed on by the
// master (ssh.OpenChannelError's reason and message).
type OpenError struct {
	Reason  uint32
	Message string
}

func (e *OpenError) Error() string { return "mux: channel refused: " + e.Message }

// Dir is the directory of the sockets: $XDG_RUNTIME_DIR/tether, or
// HOME/.cache/tether/mux.
func Dir(getenv func(string) string, home string) string {
	if x := getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "tether")
	}
	return filepath.Join(home, ".cache", "tether", "mux")
}

// SocketPath is the socket of the master for key (user@host:port) in dir.
// The name is a hash, as OpenSSH's %C, so it stays short and has no odd
// characters.
func SocketPath(dir, key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(dir, hex.EncodeToString(h[:10])+".sock")
}

// MakeDir creates dir (0700) if needed and checks it.
func MakeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return CheckDir(dir)
}

// CheckDir refuses a socket directory another user could reach: it must be
// a real directory (not a symlink), owned by this user, mode 0700.
func CheckDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("mux: %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("mux: %s is not owned by uid %d", dir, os.Geteuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("mux: %s has mode %#o; want 0700", dir, fi.Mode().Perm())
	}
	return nil
}

// checkPeer refuses a peer of another uid.
func checkPeer(c *net.UnixConn) error {
	uid, err := peercred.UID(c)
	if err != nil {
		return err
	}
	if uid != os.Geteuid() {
		return fmt.Errorf("mux: peer uid %d is not %d", uid, os.Geteuid())
	}
	return nil
}

// frameConn reads and writes frames on a unix connection.
type frameConn struct {
	c   *net.UnixConn
	r   *bufio.Reader
	wmu sync.Mutex
	hdr [5]byte
}

func newFrameConn(c *net.UnixConn) *frameConn {
	return &frameConn{c: c, r: bufio.NewReaderSize(c, 32<<10)}
}

func (f *frameConn) write(typ byte, payload []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.hdr[0] = typ
	binary.BigEndian.PutUint32(f.hdr[1:], uint32(len(payload)))
	if len(payload) == 0 {
		_, err := f.c.Write(f.hdr[:])
		return err
	}
	bufs := net.Buffers{f.hdr[:], payload}
	_, err := bufs.WriteTo(f.c)
	return err
}

// writeData writes p as data frames.
func (f *frameConn) writeData(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), maxFrame)
		if err := f.write(fData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// readHeader reads a frame's type and length.
func (f *frameConn) readHeader() (byte, int, error) {
	var h [5]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, 0, fmt.Errorf("mux: frame of %d bytes", n)
	}
	return h[0], int(n), nil
}

// readFrame reads a whole (small) frame.
func (f *frameConn) readFrame() (byte, []byte, error) {
	typ, n, err := f.readHeader()
	if err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(f.r, p); err != nil {
		return 0, nil, err
	}
	return typ, p, nil
}

func encodeFail(reason uint32, msg string) []byte {
	b := binary.BigEndian.AppendUint32(nil, reason)
	return append(b, msg[:min(len(msg), maxFrame-4)]...)
}

func decodeFail(p []byte) *OpenError {
	if len(p) < 4 {
		return &OpenError{Message: "refused"}
	}
	return &OpenError{Reason: binary.BigEndian.Uint32(p), Message: string(p[4:])}
}

// MaxPath is the longest socket path the kernel takes (sun_path, with its
// terminating zero).
const MaxPath = 107

// connect dials the master's socket and checks who it is.
func connect(path string) (*frameConn, error) {
	if len(path) > MaxPath {
		return nil, fmt.Errorf("%w: socket path %s is too long", ErrNoMaster, path)
	}
	if err := CheckDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	if err := checkPeer(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	return newFrameConn(c), nil
}

// request sends a first frame and reads the answer.
func request(path string, typ byte, payload []byte, timeout time.Duration) (*frameConn, []byte, error) {
	f, err := connect(path)
	if err != nil {
		return nil, nil, err
	}
	f.c.SetDeadline(time.Now().Add(timeout))
	if err := f.write(typ, payload); err != nil {
		f.c.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	rt, p, err := f.readFrame()
	if err != nil {
		f.c.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	f.c.SetDeadline(time.Time{})
	switch rt {
	case fOK:
		return f, p, nil
	case fFail:
		f.c.Close()
		return nil, nil, decodeFail(p)
	}
	f.c.Close()
	return nil, nil, fmt.Errorf("%w: unexpected answer %q", ErrNoMaster, rt)
}

// Status asks the master at path how it is. ErrNoMaster when none answers.
func Status(path string) (string, error) {
	f, p, err := request(path, fStatus, nil, 5*time.Second)
	if err != nil {
		return "", err
	}
	f.c.Close()
	return string(p), nil
}

// Stop asks the master at path to exit (its open channels end with it).
func Stop(path string) error {
	f, _, err := request(path, fStop, nil, 5*time.Second)
	if err != nil {
		return err
	}
	// Wait for the master to go, so the caller can rely on it.
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, f.r)
	f.c.Close()
	return nil
}
