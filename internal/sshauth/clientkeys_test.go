package sshauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// writeKey writes priv in OpenSSH format, encrypted when passphrase is set,
// with its .pub beside it.
func writeKey(t *testing.T, path string, priv crypto.PrivateKey, passphrase string) {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	}
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	s, err := ssh.NewSignerFromKey(priv)
	must(t, err)
	must(t, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644))
}

// serveAgent serves keyring on a unix socket and returns its path.
func serveAgent(t *testing.T, keyring agent.Agent) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	must(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return sock
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

func TestClientSignersIdentityFile(t *testing.T) {
	home := t.TempDir()
	_, priv := newEd25519(t)
	path := filepath.Join(home, "keys", "mine")
	must(t, os.MkdirAll(filepath.Dir(path), 0o700))
	writeKey(t, path, priv, "")
	want, _ := ssh.NewSignerFromKey(priv)
	for _, id := range []string{path, "~/keys/mine"} {
		signers, closer, err := ClientSigners(id, home, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(signers) != 1 || !sameKey(signers[0].PublicKey(), want.PublicKey()) {
			t.Errorf("%s: wrong signers", id)
		}
		must(t, closer.Close())
	}
	_, _, err := ClientSigners(filepath.Join(home, "nope"), home, env(nil))
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing identity: %v", err)
	}
}

func TestClientSignersAgent(t *testing.T) {
	home := t.TempDir()
	keyring := agent.NewKeyring()
	_, priv := newEd25519(t)
	must(t, keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "agent key"}))
	sock := serveAgent(t, keyring)
	// A default key file exists too: the agent wins.
	must(t, os.MkdirAll(filepath.Join(home, ".ssh"), 0o700))
	_, filePriv := newEd25519(t)
	writeKey(t, filepath.Join(home, ".ssh", "id_ed25519"), filePriv, "")

	signers, closer, err := ClientSigners("", home, env(map[string]string{"SSH_AUTH_SOCK": sock}))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ssh.NewSignerFromKey(priv)
	if len(signers) != 1 || !sameKey(signers[0].PublicKey(), want.PublicKey()) {
		t.Fatalf("signers %v", signers)
	}
	// The agent signer works until closed.
	sig, err := signers[0].Sign(rand.Reader, []byte("data"))
	must(t, err)
	must(t, want.PublicKey().Verify([]byte("data"), sig))
	must(t, closer.Close())
	if _, err := signers[0].Sign(rand.Reader, []byte("data")); err == nil {
		t.Error("agent signer works after close")
	}

	// An empty agent falls back to the files.
	empty := serveAgent(t, agent.NewKeyring())
	signers, closer, err = ClientSigners("", home, env(map[string]string{"SSH_AUTH_SOCK": empty}))
	must(t, err)
	defer closer.Close()
	fileSigner, _ := ssh.NewSignerFromKey(filePriv)
	if len(signers) != 1 || !sameKey(signers[0].PublicKey(), fileSigner.PublicKey()) {
		t.Error("empty agent: default file not used")
	}
	// So does a dead socket.
	signers, _, err = ClientSigners("", home, env(map[string]string{"SSH_AUTH_SOCK": filepath.Join(home, "dead.sock")}))
	if err != nil || len(signers) != 1 {
		t.Errorf("dead agent: %v", err)
	}
}

func TestClientSignersDefaultFiles(t *testing.T) {
	home := t.TempDir()
	sshDir := filepath.Join(home, ".ssh")
	must(t, os.MkdirAll(sshDir, 0o700))

	_, _, err := ClientSigners("", home, env(nil))
	if err == nil || !strings.Contains(err.Error(), "no SSH key") || !strings.Contains(err.Error(), "id_ed25519") {
		t.Fatalf("no keys: %v", err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	writeKey(t, filepath.Join(sshDir, "id_rsa"), rsaKey, "")
	signers, _, err := ClientSigners("", home, env(nil))
	if err != nil || signers[0].PublicKey().Type() != ssh.KeyAlgoRSA {
		t.Fatalf("rsa only: %v", err)
	}
	_, ecPriv := newECDSA(t)
	writeKey(t, filepath.Join(sshDir, "id_ecdsa"), ecPriv, "")
	signers, _, _ = ClientSigners("", home, env(nil))
	if !strings.HasPrefix(signers[0].PublicKey().Type(), "ecdsa-") {
		t.Errorf("ecdsa before rsa: got %s", signers[0].PublicKey().Type())
	}
	_, edPriv := newEd25519(t)
	writeKey(t, filepath.Join(sshDir, "id_ed25519"), edPriv, "")
	signers, _, _ = ClientSigners("", home, env(nil))
	if signers[0].PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("ed25519 first: got %s", signers[0].PublicKey().Type())
	}
	// An encrypted id_ed25519 is skipped for the next usable key.
	writeKey(t, filepath.Join(sshDir, "id_ed25519"), edPriv, "secret")
	signers, _, err = ClientSigners("", home, env(nil))
	if err != nil || !strings.HasPrefix(signers[0].PublicKey().Type(), "ecdsa-") {
		t.Errorf("encrypted default not skipped: %v", err)
	}
	// Only encrypted keys: the error says to use ssh-agent.
	must(t, os.Remove(filepath.Join(sshDir, "id_ecdsa")))
	must(t, os.Remove(filepath.Join(sshDir, "id_rsa")))
	_, _, err = ClientSigners("", home, env(nil))
	if err == nil || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("only encrypted: %v", err)
	}
}

func TestClientSignersEncryptedIdentity(t *testing.T) {
	home := t.TempDir()
	_, priv := newEd25519(t)
	path := filepath.Join(home, "enc_key")
	writeKey(t, path, priv, "correct horse")

	signers, closer, err := ClientSigners(path, home, env(nil))
	if err == nil || signers != nil {
		t.Fatal("encrypted key without agent accepted")
	}
	closer.Close()
	for _, want := range []string{path, "passphrase-protected", "ssh-agent", "ssh-add " + path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// With the key in the agent, the agent signs for it.
	keyring := agent.NewKeyring()
	must(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	must(t, keyring.Add(agent.AddedKey{PrivateKey: other}))
	sock := serveAgent(t, keyring)
	signers, closer, err = ClientSigners(path, home, env(map[string]string{"SSH_AUTH_SOCK": sock}))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	want, _ := ssh.NewSignerFromKey(priv)
	if len(signers) != 1 || !sameKey(signers[0].PublicKey(), want.PublicKey()) {
		t.Fatal("agent signer for the identity not picked")
	}

	// An agent without that key: still the clear error.
	sock2 := serveAgent(t, agent.NewKeyring())
	_, _, err = ClientSigners(path, home, env(map[string]string{"SSH_AUTH_SOCK": sock2}))
	if err == nil || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("agent without key: %v", err)
	}
}
