package sshauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tether-sh/tether/internal/atomicfile"
	"golang.org/x/crypto/ssh"
)

// LoadOrCreateHostKey loads the OpenSSH private key at path, or, when there
// is no file there yet, generates an ed25519 key and writes it (mode 0600,
// parent directory created 0700) atomically: a temporary file in the same
// directory is written, fsynced and then linked into place, so a reader never
// sees a partial key and two agents starting at once agree on one key.
//
// created reports that a new key was written, so the caller can log its
// fingerprint. An existing key file that is readable or writable by group or
// others is refused, as sshd refuses such host keys.
func LoadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	signer, err = loadHostKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return signer, false, err
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("host key: generate: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "tether host key")
	if err != nil {
		return nil, false, fmt.Errorf("host key: marshal: %w", err)
	}
	if err := atomicfile.WriteNewFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use that one.
			signer, err = loadHostKey(path)
			return signer, false, err
		}
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	return signer, true, nil
}

func loadHostKey(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // wraps fs.ErrNotExist when missing
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("host key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("host key %s: permissions %04o are too open (want 0600)", path, perm)
	}
	data, err := readLimited(f, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, nil
}
