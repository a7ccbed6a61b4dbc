package agent

import (
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/wire"
)

// stopped cancels the agent's Serve and waits (at most limit) for it to
// return; false if it did not.
func (ta *testAgent) stopped(limit time.Duration) bool {
	ta.stop()
	select {
	case err := <-ta.served:
		ta.served <- err // for the cleanup
		return true
	case <-time.After(limit):
		return false
	}
}

// A stopping agent closes connections that run nothing at once: a
// connection master's, with a spare channel waiting for its request, held
// `tether serve --stop` until it gave up after 30 s.
func TestStopClosesIdleConnections(t *testing.T) {
	ta := startAgentWith(t, "", func(o *Options) { o.DrainTimeout = time.Hour })
	idle := ta.dial(self(t))
	spare := ta.dial(self(t))
	ch, reqs, err := spare.OpenChannel(ChannelType, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	if !ta.stopped(10 * time.Second) {
		t.Fatal("the agent did not stop with two idle connections (one with a channel waiting for its request)")
	}
	for name, c := range map[string]*ssh.Client{"idle": idle, "spare": spare} {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the %s connection is still open after the agent stopped", name)
		}
	}
}

// A running command's connection stays until the command's end has been
// delivered, then closes; one that outlasts DrainTimeout is closed then
// (its client reconnects and resumes, as after any cut).
func TestStopDrainsRunningChannels(t *testing.T) {
	exe := e2e.Binary(t)
	for _, tc := range []struct {
		name    string
		command string
		drain   time.Duration
		output  string // what the client reads before the close
	}{
		{"ends within the drain", "sleep 1; echo done", time.Hour, "done\n"},
		{"outlasts the drain", "echo started; sleep 60", 200 * time.Millisecond, "started\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := startAgentWith(t, exe, func(o *Options) { o.DrainTimeout = tc.drain })
			c := ta.dial(self(t))
			s := mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "work"}), "new")
			ch, reqs, err := c.OpenChannel(ChannelType, nil)
			if err != nil {
				t.Fatal(err)
			}
			go ssh.DiscardRequests(reqs)
			defer ch.Close()
			wc := wire.NewConn(ch, 0)
			if _, err := wc.HandshakeRequest(wire.Hello{Software: "agent-test"}, wire.Request{Op: wire.OpRun, Session: s.Session.Name, Command: tc.command, Client: testClient}); err != nil {
				t.Fatal(err)
			}
			var resp wire.Response
			if err := wc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
				t.Fatalf("run: %+v %v", resp, err)
			}
			// Stop once the command runs (its first record is the start).
			var out strings.Builder
			exited, stopping := false, false
			for {
				typ, p, err := wc.Read()
				if err != nil {
					if err != io.EOF && !strings.Contains(err.Error(), "EOF") {
						t.Logf("read ended: %v", err)
					}
					break
				}
				if typ != wire.TOutput {
					continue
				}
				o, _ := wire.DecodeOutput(p)
				if !stopping {
					stopping = true
					go ta.stop()
				}
				if o.Kind == wire.KindStdout {
					out.Write(o.Data)
				}
				if o.Kind == wire.KindExit {
					exited = true
					wc.WriteU64(wire.TAck, o.Seq, nil)
				}
			}
			if !ta.stopped(10 * time.Second) {
				t.Fatal("the agent did not stop")
			}
			if got := out.String(); got != tc.output {
				t.Fatalf("output before the close %q, want %q", got, tc.output)
			}
			if wantExit := tc.drain == time.Hour; exited != wantExit {
				t.Fatalf("exit record delivered: %v, want %v", exited, wantExit)
			}
		})
	}
}
