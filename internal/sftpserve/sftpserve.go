// Package sftpserve serves the SFTP protocol (github.com/pkg/sftp) on one
// stream with the rights of the process that calls it: the session host
// serves `tether cp` with the session's cwd as the working directory, and
// the user's `tether sftp-server` serves the agent's `subsystem sftp`.
// Callers make sure that process is the user, never root acting for her.
package sftpserve

import (
	"errors"
	"fmt"
	"io"

	"github.com/pkg/sftp"
)

// MaxPacket is the data Serve reads or writes in one SFTP packet:
// pkg/sftp's 256 KiB message limit less room for the packet's header.
// A read asks for at most this (the server answers with no more than was
// asked, so clients that ask for 32 KiB, as OpenSSH's do, see no change);
// tether cp asks for it when the session host says it serves it
// (wire.Response.MaxPacket), an eighth of the per-packet work of 32 KiB.
const MaxPacket = 255 << 10

// Serve speaks SFTP on rwc until the client closes it. Relative paths are
// resolved against dir ("" = the process's cwd). A clean end (the client
// closed the stream) is nil.
func Serve(rwc io.ReadWriteCloser, dir string) error {
	// Not pkg/sftp's allocator (WithAllocator, "experimental"): it gives
	// every packet a 256 KiB page, and bench figure 8 showed no gain from
	// it on a large push next to the session host's GOGC 400 (sessionhost
	// copyGC), and no clear loss on the tree.
	opts := []sftp.ServerOption{sftp.WithMaxTxPacket(MaxPacket)}
	if dir != "" {
		opts = append(opts, sftp.WithServerWorkingDirectory(dir))
	}
	srv, err := sftp.NewServer(rwc, opts...)
	if err != nil {
		return fmt.Errorf("sftp server: %w", err)
	}
	defer srv.Close()
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sftp server: %w", err)
	}
	return nil
}
