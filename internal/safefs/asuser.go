package safefs

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cred is whose file-system rights AsUser uses.
type Cred struct {
	UID, GID int
	Groups   []int // supplementary groups
}

// ErrTimeout is returned by AsUser when fn did not finish in time; fn goes
// on in the background, holding one of the MaxAsUser slots until it ends.
var ErrTimeout = errors.New("file operation did not finish in time")

// ErrBusy is returned by AsUser when MaxAsUser operations are in progress
// (some of them stuck), so that stuck file systems cannot pile up threads.
var ErrBusy = errors.New("too many file operations in progress")

// MaxAsUser bounds the AsUser calls running at once (each holds a thread).
const MaxAsUser = 64

var asUserSlots = make(chan struct{}, MaxAsUser)

// AsUser runs fn on an OS thread of its own whose file-system uid, gid and
// supplementary groups are c's, and waits for it at most timeout. Every
// file access fn makes is checked as the kernel checks the user's own:
// the root capabilities that bypass file permissions are dropped from the
// thread's effective set when its fsuid becomes non-zero.
//
// Why a thread and not a child process: it costs a thread start instead of
// a fork+exec per request (tombstones are read on every not-found answer).
// Why it is safe: setfsuid, setfsgid and the raw setgroups system call
// change only the calling thread (Go's syscall.Setgroups would change every
// thread, so it is not used), the goroutine is locked to the thread and
// never unlocks, so the runtime ends the thread with the goroutine instead
// of reusing it, and threads the runtime starts while it is locked are
// made by its template thread, not cloned from this one.
//
// When the process is not root, fn runs with the process's own rights
// (c must then be the process's own user).
func AsUser(c Cred, timeout time.Duration, fn func() error) error {
	select {
	case asUserSlots <- struct{}{}:
	default:
		return ErrBusy
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-asUserSlots }()
		if os.Geteuid() == 0 {
			runtime.LockOSThread()
			// No UnlockOSThread: the thread carries the user's rights and
			// must die with this goroutine.
			if err := become(c); err != nil {
				done <- err
				return
			}
		} else if c.UID != os.Geteuid() {
			done <- fmt.Errorf("safefs: cannot act as uid %d from uid %d", c.UID, os.Geteuid())
			return
		}
		done <- fn()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return ErrTimeout
	}
}

// become gives the calling thread c's file-system identity.
func become(c Cred) error {
	groups := make([]uint32, len(c.Groups)+1) // +1: never a nil pointer
	for i, g := range c.Groups {
		groups[i] = uint32(g)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.Groups)), uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
		return fmt.Errorf("safefs: setgroups: %w", e)
	}
	unix.SetfsgidRetGid(c.GID)
	if g, _ := unix.SetfsgidRetGid(c.GID); g != c.GID {
		return fmt.Errorf("safefs: setfsgid %d did not take", c.GID)
	}
	unix.SetfsuidRetUid(c.UID)
	if u, _ := unix.SetfsuidRetUid(c.UID); u != c.UID {
		return fmt.Errorf("safefs: setfsuid %d did not take", c.UID)
	}
	return nil
}
