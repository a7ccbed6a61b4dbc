package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The in-process loopback round trip (loopbackRTT) is the floor of one
// exchange, but a command in a session crosses processes: the client, the
// agent and the session host each sleep until the other wakes them. These
// floors measure that price with nothing of Tether in it: 64-byte TCP
// ping-pongs with a child process, and through a relay process between
// (client → relay → echo, the shape of client → agent → session host).

// echoEnv makes this bench binary, re-executed, an echo server ("echo") or
// a relay to an echo server ("relay:ADDR") on a loopback port it prints,
// an echo server on a unix socket ("unix:SOCKET"), or an ssh server that
// echoes or relays its channels (sshfloor.go: "ssh", "ssh-relay:SOCKET").
const echoEnv = "TETHER_BENCH_ECHO"

// echoMain serves one connection and returns; it runs instead of the bench
// when echoEnv is set.
func echoMain(mode string) {
	if mode == "ssh" || strings.HasPrefix(mode, "ssh-relay:") {
		sshEchoMain(mode)
		return
	}
	network, addr := "tcp", "127.0.0.1:0" // Go's TCP connections are TCP_NODELAY already
	if sock, ok := strings.CutPrefix(mode, "unix:"); ok {
		network, addr = "unix", sock
	}
	c := acceptOne(network, addr)
	if next, ok := strings.CutPrefix(mode, "relay:"); ok {
		relayTo(c, "tcp", next)
		return
	}
	io.Copy(c, c)
}

// acceptOne listens on network's addr, prints the address it listens on
// (the child's one line to the bench) and returns the first connection.
func acceptOne(network, addr string) net.Conn {
	ln, err := net.Listen(network, addr)
	if err != nil {
		fatal(err)
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		fatal(err)
	}
	ln.Close()
	return c
}

// relayTo copies c to and from a new connection to network's addr until
// the far end is done.
func relayTo(c io.ReadWriter, network, addr string) {
	up, err := net.Dial(network, addr)
	if err != nil {
		fatal(err)
	}
	go func() {
		io.Copy(up, c)
		up.Close() // the echo ends, and with it the copy below
	}()
	io.Copy(c, up)
}

// processRTT measures n ping-pongs with an echo child, through a relay
// child when relayed.
func processRTT(n int, relayed bool) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, echo, err := startChild(ctx, "echo")
	if err != nil {
		return nil, err
	}
	defer reap(cancel, echo)
	if relayed {
		var relay *exec.Cmd
		if addr, relay, err = startChild(ctx, "relay:"+addr); err != nil {
			return nil, err
		}
		defer reap(cancel, relay)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return pingPong(c, n)
}

// pingPong times n 64-byte round trips on c after n/10 of warm-up.
func pingPong(c io.ReadWriter, n int) ([]time.Duration, error) {
	buf := make([]byte, 64)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n+n/10; i++ {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if i >= n/10 {
			out = append(out, time.Since(start))
		}
	}
	return out, nil
}

// keptShellTrue times n `true`s in one bash kept open over one ssh
// connection (what an OpenSSH user does to keep a shell's state between
// commands): each command is written with a marker echo after it, and the
// time is until the marker's line comes back.
func (s *sshdProc) keptShellTrue(ctx context.Context, n int) ([]time.Duration, error) {
	cmd := s.command(ctx, []string{"-T"}, "exec bash --noprofile --norc")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		in.Close()
		cmd.Wait()
	}()
	out := bufio.NewReader(outPipe)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n+n/10; i++ {
		marker := fmt.Sprintf("m%d", i)
		start := time.Now()
		if _, err := fmt.Fprintf(in, "true; echo %s\n", marker); err != nil {
			return nil, err
		}
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				return nil, fmt.Errorf("kept ssh bash: %w", err)
			}
			if strings.TrimSpace(line) == marker {
				break
			}
		}
		if i >= n/10 {
			ds = append(ds, time.Since(start))
		}
	}
	return ds, nil
}

// helloSource is the smallest Go program that writes: its start is the
// floor of any Go CLI's, `tether version`'s included.
const helloSource = "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"

// buildHello builds helloSource, static as make build builds tether, into
// dir and returns the binary's path.
func buildHello(dir string) (string, error) {
	src := filepath.Join(dir, "hello")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(helloSource), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(src, "hello")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build hello: %v: %s", err, out)
	}
	return bin, nil
}
