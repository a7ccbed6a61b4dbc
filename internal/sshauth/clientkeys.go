package sshauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// DefaultIdentityFiles are the keys under ~/.ssh that ClientSigners tries,
// in order, when there is no identity file and no usable ssh-agent.
var DefaultIdentityFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// ClientSigners picks the keys to offer to a Tether agent:
//
//   - identityFile, when set ("~/" means home). A passphrase-protected key is
//     used through the ssh-agent when the agent holds it; otherwise the error
//     says to add it to ssh-agent.
//   - else the keys of the ssh-agent at SSH_AUTH_SOCK, if it has any;
//   - else the first usable of ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
//
// getenv is os.Getenv outside tests. The closer, never nil, closes the
// connection to the agent; call it when the signers are no longer needed.
func ClientSigners(identityFile, home string, getenv func(string) string) ([]ssh.Signer, io.Closer, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	ag, conn := dialAgent(getenv("SSH_AUTH_SOCK"))
	closer := io.Closer(nopCloser{})
	if conn != nil {
		closer = conn
	}
	fail := func(err error) ([]ssh.Signer, io.Closer, error) {
		closer.Close()
		return nil, nopCloser{}, err
	}

	if identityFile != "" {
		path := expandHome(identityFile, home)
		s, err := loadIdentity(path, ag)
		if err != nil {
			return fail(err)
		}
		return []ssh.Signer{s}, closer, nil
	}

	if ag != nil {
		if signers, err := ag.Signers(); err == nil && len(signers) > 0 {
			return signers, closer, nil
		}
	}

	var encrypted []string
	var tried []string
	for _, name := range DefaultIdentityFiles {
		path := filepath.Join(home, ".ssh", name)
		tried = append(tried, path)
		s, err := loadIdentity(path, ag)
		switch {
		case err == nil:
			return []ssh.Signer{s}, closer, nil
		case errors.Is(err, fs.ErrNotExist):
			continue
		case errors.Is(err, errEncrypted):
			encrypted = append(encrypted, path)
			continue
		default:
			return fail(err)
		}
	}
	if len(encrypted) > 0 {
		return fail(fmt.Errorf("%s is passphrase-protected and no ssh-agent holds it: add it with `ssh-add %s`", encrypted[0], encrypted[0]))
	}
	why := "SSH_AUTH_SOCK is not set"
	if getenv("SSH_AUTH_SOCK") != "" {
		why = "the ssh-agent has no keys or cannot be reached"
	}
	return fail(fmt.Errorf("no SSH key to offer: %s, and none of %s exists (create one with ssh-keygen -t ed25519, or pass an identity file)", why, strings.Join(tried, ", ")))
}

var errEncrypted = errors.New("passphrase-protected")

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// dialAgent connects to the ssh-agent at sock; nil when there is none.
func dialAgent(sock string) (agent.ExtendedAgent, net.Conn) {
	if sock == "" {
		return nil, nil
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, nil
	}
	return agent.NewClient(conn), conn
}

// loadIdentity reads the private key at path. A passphrase-protected key is
// looked up in the agent by its public key (from the key file or path.pub).
func loadIdentity(path string, ag agent.ExtendedAgent) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err == nil {
		return s, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	pub := missing.PublicKey
	if pub == nil {
		if pubData, err := os.ReadFile(path + ".pub"); err == nil {
			pub, _, _, _, _ = ssh.ParseAuthorizedKey(pubData)
		}
	}
	if ag != nil && pub != nil {
		if signers, err := ag.Signers(); err == nil {
			want := pub.Marshal()
			for _, as := range signers {
				if bytes.Equal(as.PublicKey().Marshal(), want) {
					return as, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("identity file %s is passphrase-protected and no ssh-agent holds it: add it with `ssh-add %s`: %w", path, path, errEncrypted)
}
