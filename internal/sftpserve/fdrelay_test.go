package sftpserve

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// fdPair serves SFTP as the session host and the agent do for tether cp:
// ServeFD on one end of a unix socket pair, Relay on the other, a pkg/sftp
// client in front of the relay.
func fdPair(t *testing.T, maxFDs, conc int) (*sftp.Client, *Relay, chan error) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	host, agent := conn(fds[0]), conn(fds[1])
	go ServeFD(bufio.NewReader(host), host)
	cl, rl := net.Pipe()
	r := &Relay{Client: bufio.NewReaderSize(rl, 64<<10), ClientOut: rl, Host: agent, MaxFDs: maxFDs}
	done := make(chan error, 1)
	go func() { done <- r.Run(func() { rl.Close() }) }()
	c, err := sftp.NewClientPipe(cl, cl, sftp.MaxPacketUnchecked(MaxPacket), sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(conc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); cl.Close() })
	return c, r, done
}

func pattern(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	return data
}

// TestRelayServesPassedFD: a push and a pull through ServeFD and Relay
// carry the file's bytes intact, and the host's process served only the
// first PassAfter bytes of each and a packet or two more (HostBytes;
// pkg/sftp's client may send the next before one is answered), after
// which it passed the fd:
// the relay did every other READ and WRITE on it. Metadata (stat,
// rename, truncate, chmod) still works through the host. One request in
// flight per file, so that few packets come before the fd; the e2e cp
// tests and the last part here run with many.
func TestRelayServesPassedFD(t *testing.T) {
	HostBytes.Store(0)
	dir := t.TempDir()
	c, r, done := fdPair(t, 0, 1)
	data := pattern(3<<20 + 12345)
	p := filepath.Join(dir, "big")
	f, err := c.OpenFile(p+".tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatalf("truncate on the handle: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("fstat: %v, %v; want %d bytes", fi, err, len(data))
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatalf("fchmod: %v", err)
	}
	f.Close()
	if err := c.PosixRename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, data) {
		t.Fatalf("pushed file differs: %d bytes, want %d", len(got), len(data))
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	f, err = c.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	if _, err := f.WriteTo(&back); err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("pull: %d bytes, %v", back.Len(), err)
	}
	f.Close()
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("relay: %v", err)
	}
	n, lo, hi := HostBytes.Load(), int64(2*PassAfter), int64(2*(PassAfter+2*MaxPacket))
	if n < lo || n > hi {
		t.Fatalf("the host served %d bytes of READ/WRITE itself; want its first MiB and a packet or two each way (%d-%d), then all through the passed fd", n, lo, hi)
	}
	if want := 2*int64(len(data)) - n; r.Local != want {
		t.Fatalf("relay served %d bytes, want %d (all the host did not)", r.Local, want)
	}

	// Many writes and reads in flight: the same bytes.
	c2, r2, done2 := fdPair(t, 0, 64)
	f, err = c2.OpenFile(p+".2", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil {
		t.Fatalf("concurrent push: %v", err)
	}
	f.Close()
	if got, _ := os.ReadFile(p + ".2"); !bytes.Equal(got, data) {
		t.Fatalf("concurrent push: file differs (%d bytes)", len(got))
	}
	f, _ = c2.Open(p + ".2")
	back.Reset()
	if _, err := f.WriteTo(&back); err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("concurrent pull: %d bytes, %v", back.Len(), err)
	}
	f.Close()
	c2.Close()
	<-done2
	if r2.Local == 0 {
		t.Fatal("concurrent: the relay served no bytes")
	}
}

// TestRelayFIFOFallsBack: a FIFO where a file was is opened without
// hanging (no reader or writer on the other side), its fd is not passed,
// and a read of it fails cleanly through the host.
func TestRelayFIFOFallsBack(t *testing.T) {
	HostBytes.Store(0)
	dir := t.TempDir()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	c, r, _ := fdPair(t, 0, 1)
	res := make(chan error, 1)
	go func() {
		f, err := c.Open(p)
		if err != nil {
			res <- err
			return
		}
		_, err = f.Read(make([]byte, 10))
		// Closed before the result is reported: the write-open below must
		// find no reader, and a deferred close raced it.
		f.Close()
		res <- err
	}()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("read of a FIFO succeeded; want an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("opening and reading a FIFO hung")
	}
	if _, err := c.OpenFile(p, os.O_WRONLY); err == nil {
		t.Fatal("open of a FIFO without a reader for writing succeeded; want ENXIO")
	}
	r.mu.Lock()
	n := len(r.fds)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("relay holds %d fds after a FIFO; want 0", n)
	}
}

// TestRelaySwappedPathWritesInode: a file replaced by a symlink after the
// open gets the writes into the inode that was opened; the symlink's
// target is untouched.
func TestRelaySwappedPathWritesInode(t *testing.T) {
	dir := t.TempDir()
	p, victim, moved := filepath.Join(dir, "f"), filepath.Join(dir, "victim"), filepath.Join(dir, "moved")
	os.WriteFile(victim, []byte("keep"), 0o600)
	c, r, _ := fdPair(t, 0, 1)
	f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	data := pattern(3 << 20)
	if _, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatalf("symlink target changed to %d bytes", len(got))
	}
	if got, _ := os.ReadFile(moved); !bytes.Equal(got, data) {
		t.Fatalf("the opened inode has %d bytes, want %d", len(got), len(data))
	}
	if r.Local == 0 {
		t.Fatal("relay served no bytes: the write did not go through the passed fd")
	}
}

// TestRelayFDLimit: past MaxFDs a passed fd is closed by the relay and
// its handle served by the host, with the same bytes.
func TestRelayFDLimit(t *testing.T) {
	HostBytes.Store(0)
	dir := t.TempDir()
	c, r, done := fdPair(t, 1, 1)
	data := pattern(4 << 20)
	var files []*sftp.File
	for _, n := range []string{"a", "b"} {
		f, err := c.OpenFile(filepath.Join(dir, n), os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	for _, f := range files { // both open: the second fd is past the limit
		if _, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		f.Close()
	}
	for _, n := range []string{"a", "b"} {
		if got, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, want %d", n, len(got), len(data))
		}
	}
	c.Close()
	<-done
	// The second file wholly by the host, the first's first MiB and a
	// packet or two; had the second fd been kept, the host would have
	// written little more than 2 MiB in all.
	h, lo, hi := HostBytes.Load(), int64(len(data)+PassAfter), int64(len(data)+PassAfter+2*MaxPacket)
	if h < lo || h > hi {
		t.Fatalf("host served %d bytes, want %d-%d (all of the second file, the first MiB and a packet or two of the first)", h, lo, hi)
	}
	if r.Local != 2*int64(len(data))-h {
		t.Fatalf("relay served %d bytes, want %d", r.Local, 2*int64(len(data))-h)
	}
}
