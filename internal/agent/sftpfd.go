package agent

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/sftpserve"
	"github.com/tether-sh/tether/internal/wire"
)

// relaySftpFD is the relay of a tether cp stream (wire.OpSftp, asked with
// FdPass): the host's Response goes through as it came, then
// sftpserve.Relay serves the READ and WRITE packets of the regular files
// the session host opened, on the fds it passed, and relays the rest.
// The root agent does that I/O on an OS thread with the user's fsuid and
// no capabilities (userIOThread), so the kernel charges and limits it as
// the user's own writes (quota, the filesystem's reserved blocks).
func (a *Agent) relaySftpFD(ref *sessionRef, c *wire.Conn, ch ssh.Channel, uc *net.UnixConn, hc *wire.Conn) error {
	t, payload, err := hc.Read()
	if err != nil {
		return wire.Errorf(wire.CodeClosed, "session %s: %v", ref.name, err)
	}
	if err := c.Write(t, payload); err != nil {
		return nil
	}
	hb, _ := hc.Reader().(*bufio.Reader)
	cb, _ := c.Reader().(*bufio.Reader)
	if hb == nil || cb == nil {
		return fmt.Errorf("sftp relay: unbuffered stream")
	}
	buffered, _ := hb.Peek(hb.Buffered())
	r := &sftpserve.Relay{Client: cb, ClientOut: ch, Host: uc, HostBuffered: buffered}
	if os.Geteuid() == 0 {
		u, err := lookupUser(ref.user)
		if err != nil {
			return err
		}
		gid, err := strconv.Atoi(u.Gid)
		if err != nil {
			return fmt.Errorf("user %s: gid %q: %w", ref.user, u.Gid, err)
		}
		r.ThreadSetup = func() error { return userIOThread(ref.uid, gid) }
	}
	err = r.Run(func() { ch.CloseWrite(); ch.Close() })
	if err != nil {
		a.log.Info("tether cp relay ended", "user", ref.user, "session", ref.name, "err", err)
	}
	return nil
}

// userIOThread gives the calling OS thread (locked to its goroutine,
// ended with it) the user's fsuid and fsgid and no effective
// capabilities: root's thread keeps uid 0 for the runtime's signals
// between threads, but a write through a passed fd is charged and
// limited as hers (disk quota and ext4's reserved blocks look at
// CAP_SYS_RESOURCE and the fsuid; a setuid bit is cleared on write
// without CAP_FSETID). Linux credentials are per thread; the raw system
// calls change this thread's only.
func userIOThread(uid, gid int) error {
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
	if r, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0); int(r) != gid {
		return fmt.Errorf("setfsgid %d: still %d", gid, r)
	}
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	if r, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0); int(r) != uid {
		return fmt.Errorf("setfsuid %d: still %d", uid, r)
	}
	hdr := struct {
		version uint32
		pid     int32
	}{0x20080522, 0} // _LINUX_CAPABILITY_VERSION_3, this thread
	var data [2]struct{ effective, permitted, inheritable uint32 }
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data)), 0); e != 0 {
		return fmt.Errorf("capget: %w", e)
	}
	data[0].effective, data[1].effective = 0, 0
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data)), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
