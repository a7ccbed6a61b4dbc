package sshconn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestRawBothEnds: with Conn straight on the TCP sockets at both ends (as
// the agent and the client have it), writes and reads are raw system calls
// (internal/rawio) and a bulk stream arrives intact, its held first parts
// merged with their rests, under AES-GCM and chacha20-poly1305.
func TestRawBothEnds(t *testing.T) {
	data := make([]byte, 8<<20)
	rand.Read(data)
	for _, cipher := range []string{"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"} {
		cc, sc := tcpPair(t)
		sw, cw := New(sc), New(cc)
		if sw.raw == nil || cw.raw == nil || cw.r.raw == nil {
			t.Fatalf("Conn on a TCP socket does not use raw system calls")
		}
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signer, _ := ssh.NewSignerFromKey(priv)
		scfg := &ssh.ServerConfig{NoClientAuth: true}
		scfg.AddHostKey(signer)
		scfg.Ciphers = []string{cipher}
		errc := make(chan error, 1)
		go func() {
			conn, chans, reqs, err := ssh.NewServerConn(sw, scfg)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			go ssh.DiscardRequests(reqs)
			nc := <-chans
			ch, creqs, err := nc.Accept()
			if err != nil {
				errc <- err
				return
			}
			go ssh.DiscardRequests(creqs)
			_, err = ch.Write(data)
			ch.CloseWrite()
			errc <- err
			io.Copy(io.Discard, ch)
		}()
		ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()}
		ccfg.Ciphers = []string{cipher}
		conn, chans, reqs, err := ssh.NewClientConn(cw, "x", ccfg)
		if err != nil {
			t.Fatal(err)
		}
		client := ssh.NewClient(conn, chans, reqs)
		ch, creqs, err := client.OpenChannel("x", nil)
		if err != nil {
			t.Fatal(err)
		}
		go ssh.DiscardRequests(creqs)
		got, err := io.ReadAll(ch)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		client.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes, not the %d sent", cipher, len(got), len(data))
		}
		if _, merges, _, _ := sw.Counts(); cipher == "aes128-gcm@openssh.com" && merges < len(data)/(32<<10)/2 {
			t.Errorf("%s: %d held parts merged for %d packets", cipher, merges, len(data)/(32<<10))
		}
	}
}
