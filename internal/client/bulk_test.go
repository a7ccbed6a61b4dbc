package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/wire"
)

// Bulk output switches the attachment to big reads of its channel
// (wire.Conn.ReadBulk) after bulkAfter bytes: every byte arrives in order,
// and a kept channel goes back to small reads for the next runs, which see
// neither a byte of the bulk output nor a lost frame.
func TestRunBulkOutputOnKeptChannel(t *testing.T) {
	d, conn, target := keptSetup(t)
	ctx := context.Background()
	run := func(cmd string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		res, err := d.Run(ctx, conn, RunSpec{Target: target, Request: wire.Request{Command: cmd}, Stdout: &out, Stderr: &errb, KeepChannel: true})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v, exit %d, stderr %q", cmd, err, res.ExitCode, errb.String())
		}
		return out.Bytes()
	}
	// Numbered lines: a reordered, lost or repeated chunk changes the hash.
	const lines = 400000 // ~2.6 MB, well past bulkAfter
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	for i := range 3 {
		got := run(fmt.Sprintf("seq 1 %d", lines))
		if sha256.Sum256(got) != sha256.Sum256(want.Bytes()) {
			t.Fatalf("bulk run %d: %d bytes, want %d (first difference near byte %d)", i, len(got), want.Len(), firstDiff(got, want.Bytes()))
		}
		if out := string(run("echo small")); out != "small\n" {
			t.Fatalf("small run after bulk run %d: %q", i, out)
		}
		if n := conn.keptCount("kept"); n != 1 {
			t.Fatalf("after run %d, %d channels kept, want 1", i, n)
		}
	}
	if out := string(run("printf '%s' " + strings.Repeat("x", 10))); out != strings.Repeat("x", 10) {
		t.Fatalf("last run: %q", out)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A transport cut while an attachment reads in bulk (frames read ahead in
// its buffer) still delivers every byte exactly once: the frames read
// ahead are delivered, and the resume starts after the last of them.
func TestRunBulkOutputResumesAfterCut(t *testing.T) {
	addr, d, cuts := startTestAgent(t)
	target, _ := ParseTarget(addr + "/bulk")
	if resp := call(t, d, target, wire.Request{Op: opNew, Session: "bulk", Client: d.Client}); !resp.OK {
		t.Fatalf("new: %+v", resp.Error)
	}
	const lines = 1200000 // ~8.9 MB: more than a cut leaves in flight (2 MiB window, 1 MiB read ahead)
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	for _, cutAt := range []int{1 << 20, 4 << 20} { // past bulkAfter: reading in bulk
		var got bytes.Buffer
		cut := false
		before := cuts.dials()
		stdout := writerFunc(func(p []byte) (int, error) {
			got.Write(p)
			if !cut && got.Len() >= cutAt {
				cut = true
				cuts.cut()
			}
			return len(p), nil
		})
		res, err := d.Run(context.Background(), nil, RunSpec{Target: target, Request: wire.Request{Command: fmt.Sprintf("seq 1 %d", lines)},
			Stdout: stdout, Stderr: &bytes.Buffer{}, ReconnectTimeout: time.Minute})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("cut at %d: %v, exit %d", cutAt, err, res.ExitCode)
		}
		if sha256.Sum256(got.Bytes()) != sha256.Sum256(want.Bytes()) {
			t.Fatalf("cut at %d: %d bytes, want %d (first difference near byte %d): output lost or repeated", cutAt, got.Len(), want.Len(), firstDiff(got.Bytes(), want.Bytes()))
		}
		if cuts.dials()-before < 2 {
			t.Fatalf("cut at %d: the client did not reconnect (%d dials): the test cut nothing", cutAt, cuts.dials()-before)
		}
		if st := sessionState(t, d, target); st == wire.StateDisconnected {
			// The known moment of TestResumedRunLeavesSessionConnected.
			call(t, d, target, wire.Request{Op: opConnect, Session: "bulk", Client: d.Client})
		}
	}
}
