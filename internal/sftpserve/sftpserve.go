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

// Serve speaks SFTP on rwc until the client closes it. Relative paths are
// resolved against dir ("" = the process's cwd). A clean end (the client
// closed the stream) is nil.
func Serve(rwc io.ReadWriteCloser, dir string) error {
	var opts []sftp.ServerOption
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
