package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/mux"
	"github.com/tether-sh/tether/internal/wire"
)

// A master that takes the channel request and closes without answering
// (exiting, its SSH connection just lost) forwarded nothing: the command
// goes once on a direct connection, and a new master is started — as when
// no master listens at all.
func TestUnansweringMasterFallsBackToDirect(t *testing.T) {
	target, d, ln, started := fakeMaster(t)
	ctx := context.Background()
	took := make(chan int, 4) // bytes each accepted connection had sent
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			n, _ := c.Read(buf) // the channel request, with the command's
			took <- n
			c.Close()
		}
	}()
	var out bytes.Buffer
	res, err := d.Run(ctx, nil, RunSpec{Target: target, Request: wire.Request{Command: "n=$((n+1)); echo run $n"}, Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v, %v; output %q", res, err, out.String())
	}
	if out.String() != "run 1\n" {
		t.Fatalf("output %q, want the command run once", out.String())
	}
	if n := <-took; n == 0 {
		t.Fatal("the master got no channel request")
	}
	select {
	case st := <-started:
		if !strings.Contains(st.String(), target.HostString()) {
			t.Fatalf("master started for %s", st)
		}
	default:
		t.Fatal("no new master started after the fallback")
	}
}

// fakeMaster starts an in-process agent with a builtin session "work" and
// listens on the socket where d looks for target's master; started gets
// the targets d asks to start a master for.
func fakeMaster(t *testing.T) (target Target, d *Dialer, ln *net.UnixListener, started chan Target) {
	addrs, d := inProcessAgents(t, 1, "")
	target, err := ParseTarget(addrs[0] + "/work")
	if err != nil {
		t.Fatal(err)
	}
	newBuiltinSession(t, d, target)
	started = make(chan Target, 4)
	ln = listenAsMaster(t, d, target, func(t Target) { started <- t })
	return target, d, ln, started
}

// listenAsMaster gives d a mux directory with start as its MuxOptions.Start
// and listens on the socket where d looks for target's master.
func listenAsMaster(t *testing.T, d *Dialer, target Target, start func(Target)) *net.UnixListener {
	dir := filepath.Join(e2e.ShortTempDir(t), "mux")
	if err := mux.MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	d.Mux = &MuxOptions{Dir: dir, Start: start}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.MuxSocket(dir, target), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// A master that has the command's request but no answer when the wait
// runs out may still forward it: the run fails with ErrTransport and the
// request is not sent again directly (it would run twice), nor a master
// started.
func TestSilentMasterDoesNotSendTheRequestTwice(t *testing.T) {
	target, d, ln, started := fakeMaster(t)
	ctx := context.Background()
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }() // takes all, answers nothing
		}
	}()
	d.Timeout = 200 * time.Millisecond
	var out bytes.Buffer
	_, err := d.Run(ctx, nil, RunSpec{Target: target, Request: wire.Request{Command: "n=$((n+1)); echo run $n"}, Stdout: &out, Stderr: &out})
	if !errors.Is(err, ErrTransport) || !strings.Contains(err.Error(), "not sent again") {
		t.Fatalf("run through a silent master: %v, want ErrTransport saying it is not sent again", err)
	}
	select {
	case st := <-started:
		t.Fatalf("a master started for %s", st)
	default:
	}
	d.Mux, d.Timeout = nil, 0
	out.Reset()
	if _, err := d.Run(ctx, nil, RunSpec{Target: target, Request: wire.Request{Command: "n=$((n+1)); echo run $n"}, Stdout: &out, Stderr: &out}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "run 1\n" {
		t.Fatalf("direct run after the silent master: %q, want run 1 (the first never ran)", out.String())
	}
}

// When the fallback's direct dial fails, the error is the dial's own (a
// *HostError whose kind callers act on: stop retrying a host key or login
// failure), not a transport error that would be retried.
func TestFallbackKeepsTheHostError(t *testing.T) {
	_, d := inProcessAgents(t, 1, "")
	target, err := ParseTarget("127.0.0.1:1/work") // nothing listens on port 1
	if err != nil {
		t.Fatal(err)
	}
	ln := listenAsMaster(t, d, target, nil)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			c.Read(make([]byte, 4096))
			c.Close() // closes unanswered
		}
	}()
	_, err = d.Run(context.Background(), nil, RunSpec{Target: target, Request: wire.Request{Command: "true"}})
	var he *HostError
	if !errors.As(err, &he) || !errors.Is(err, ErrConnect) {
		t.Fatalf("run: %v (%T), want the direct dial's *HostError (ErrConnect)", err, err)
	}
}
