package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// keygenCmd writes an ed25519 key pair, so that `make run` needs no
// ssh-keygen and never touches ~/.ssh.
func keygenCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:    "keygen FILE",
		Short:  "Create an ed25519 key pair (FILE and FILE.pub) if FILE does not exist",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if _, err := os.Stat(path); err == nil {
				return nil
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			block, err := ssh.MarshalPrivateKey(priv, "tether")
			if err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return nil
				}
				return fmt.Errorf("keygen: %w", err)
			}
			if err := pem.Encode(f, block); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			sp, err := ssh.NewPublicKey(pub)
			if err != nil {
				return err
			}
			return os.WriteFile(path+".pub", append(ssh.MarshalAuthorizedKey(sp)[:len(ssh.MarshalAuthorizedKey(sp))-1], []byte(" tether\n")...), 0o644)
		},
	}
}
