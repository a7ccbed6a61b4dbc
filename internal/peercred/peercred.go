// Package peercred tells who is at the other end of a unix socket
// connection (SO_PEERCRED), for the places that trust a local peer by its
// uid: the agent and its session hosts, and connection sharing.
package peercred

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ErrNotUnix is returned for a connection that is not a unix socket.
var ErrNotUnix = errors.New("not a unix socket connection")

// UID is the uid of the process that made the other end of c (for a
// listening socket's peer: the uid it had when it listened or connected).
func UID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, ErrNotUnix
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return -1, fmt.Errorf("peer credentials: %w", credErr)
	}
	return int(cred.Uid), nil
}
