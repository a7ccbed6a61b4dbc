package client

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/mux"
	"github.com/tether-sh/tether/internal/wire"
)

// A master that takes the channel request and closes without answering
// (exiting, its SSH connection just lost) forwarded nothing: the command
// goes once on a direct connection, and a new master is started — as when
// no master listens at all.
func TestUnansweringMasterFallsBackToDirect(t *testing.T) {
	addrs, d := inProcessAgents(t, 1, "")
	target, err := ParseTarget(addrs[0] + "/work")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	wc, ch, err := c.Open(wire.Request{Op: opNew, Session: "work", Shell: "builtin", Client: d.Client})
	if err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("new: %v %+v", err, resp.Error)
	}
	ch.Close()
	c.Close()

	dir := filepath.Join(e2e.ShortTempDir(t), "mux")
	if err := mux.MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	started := make(chan Target, 4)
	d.Mux = &MuxOptions{Dir: dir, Start: func(t Target) { started <- t }}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.MuxSocket(dir, target), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
		if !strings.Contains(st.String(), addrs[0]) {
			t.Fatalf("master started for %s", st)
		}
	default:
		t.Fatal("no new master started after the fallback")
	}
}
