package cli

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/sftpserve"
)

// sftpServerCmd is the SFTP server the agent starts for an ssh client's
// `subsystem sftp` (sftp, scp, Ansible), as the authenticated user with
// her home as its working directory: every file it touches, it touches
// with her rights, never the agent's. It speaks SFTP on stdin and stdout.
func sftpServerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "sftp-server",
		Short:  "Serve SFTP on stdin and stdout (started by the agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return sftpserve.Serve(stdioRWC{}, "")
		},
	}
}

// stdioRWC is this process's stdin and stdout as one stream.
type stdioRWC struct{}

func (stdioRWC) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdioRWC) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdioRWC) Close() error                { return errors.Join(os.Stdin.Close(), os.Stdout.Close()) }
