package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// The floor of Tether's own shape, with nothing of Tether in it: a 64-byte
// ping-pong on one kept x/crypto/ssh channel to a child process (client →
// agent), and the same with that child relaying each channel over a unix
// socket to a third process (client → agent → session host), so that the
// kept `true` figure reads against what the design costs before any
// request is decoded, run or journaled (#18). Both children are this bench
// binary re-executed (echoEnv); x/crypto/ssh negotiates as between
// Tether's client and agent.

// sshEchoMain is echoMain's ssh modes: "ssh" echoes each channel's bytes,
// "ssh-relay:SOCKET" copies each channel to and from a new connection to
// the unix socket SOCKET. It prints its address and its host key's
// authorized_keys line, serves one connection and returns.
func sshEchoMain(mode string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		fatal(err)
	}
	// Only the bench that started it may connect: another local user
	// taking the one Accept would hang the figure.
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(os.Getenv(echoClientKeyEnv)))
	if err != nil {
		fatal(fmt.Errorf("%s: %w", echoClientKeyEnv, err))
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if !bytes.Equal(k.Marshal(), want.Marshal()) {
			return nil, errors.New("not the bench's key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	fmt.Printf("%s %s", ln.Addr(), ssh.MarshalAuthorizedKey(signer.PublicKey()))
	c, err := ln.Accept()
	if err != nil {
		fatal(err)
	}
	ln.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	sock, relayed := strings.CutPrefix(mode, "ssh-relay:")
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(creqs)
		go func() {
			defer ch.Close()
			if !relayed {
				io.Copy(ch, ch)
				return
			}
			relayTo(ch, "unix", sock)
		}()
	}
}

// echoClientKeyEnv carries the authorized_keys line of the bench's client
// key to an ssh echo child.
const echoClientKeyEnv = "TETHER_BENCH_ECHO_CLIENT_KEY"

// startChild starts this bench binary in echo mode, with env added to its
// environment, and returns the first line it prints. The child dies with
// the bench (a killed bench leaves none waiting in Accept); reap ends it.
func startChild(ctx context.Context, mode string, env ...string) (string, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(append(os.Environ(), echoEnv+"="+mode), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return "", nil, fmt.Errorf("%s child: %w", mode, err)
	}
	return strings.TrimSpace(line), cmd, nil
}

// reap ends a child of startChild: cancel kills it if it still waits (for
// a connection that an error path never made), then it is waited for.
func reap(cancel context.CancelFunc, cmd *exec.Cmd) {
	cancel()
	cmd.Wait()
}

// sshChannelRTT measures n ping-pongs on one x/crypto/ssh channel to an
// ssh echo child, relayed through it to a unix-socket echo child when
// relayed.
func sshChannelRTT(n int, relayed bool) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	mode := "ssh"
	if relayed {
		dir, err := os.MkdirTemp("", "tether-bench-floor")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		sock, echo, err := startChild(ctx, "unix:"+filepath.Join(dir, "echo.sock"))
		if err != nil {
			return nil, err
		}
		defer reap(cancel, echo)
		mode = "ssh-relay:" + sock
	}
	line, srv, err := startChild(ctx, mode, echoClientKeyEnv+"="+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	if err != nil {
		return nil, err
	}
	defer reap(cancel, srv)
	addr, keyLine, ok := strings.Cut(line, " ")
	if !ok {
		return nil, fmt.Errorf("ssh echo child printed %q, want ADDR KEY", line)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyLine))
	if err != nil {
		return nil, fmt.Errorf("ssh echo child's host key: %w", err)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "bench", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, reqs, err := conn.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	return pingPong(ch, n)
}
