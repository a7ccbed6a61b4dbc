package sshauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newEd25519(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func newECDSA(t testing.TB) (ssh.Signer, *ecdsa.PrivateKey) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// testServer is a tiny SSH server on a loopback port: it completes the
// handshake (host key + public key auth) and closes the connection.
type testServer struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup

	mu       sync.Mutex
	authErrs []error
}

func startServer(t *testing.T, pubkeyCb func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error), hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	cfg := &ssh.ServerConfig{}
	if pubkeyCb == nil {
		cfg.PublicKeyCallback = func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }
	} else {
		cfg.PublicKeyCallback = pubkeyCb
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					s.mu.Lock()
					s.authErrs = append(s.authErrs, err)
					s.mu.Unlock()
					return
				}
				go ssh.DiscardRequests(reqs)
				go func() {
					for ch := range chans {
						ch.Reject(ssh.Prohibited, "test server")
					}
				}()
				sc.Wait()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

// dial performs a full handshake against addr and closes the connection.
func dial(t *testing.T, addr string, cfg *ssh.ClientConfig) error {
	t.Helper()
	if cfg.User == "" {
		cfg.User = "tester"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if len(cfg.Auth) == 0 {
		s, _ := newEd25519(t)
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(s)}
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func isChanged(err error) (*HostKeyChangedError, bool) {
	var e *HostKeyChangedError
	ok := errors.As(err, &e)
	return e, ok
}
