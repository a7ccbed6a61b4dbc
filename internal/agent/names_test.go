package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/sessionhost"
	"github.com/tether-sh/tether/internal/wire"
)

// nameAgent is an in-process agent whose state holds another user's
// ("victim") tombstone and session metadata next to the caller's own
// directory, as a root agent's would. It starts no session host: new
// sessions are refused by AllowRemoteShellAccess.
func nameAgent(t testing.TB) (*Agent, identity) {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	a, err := New(Options{StateDir: state, PolicyPath: filepath.Join(state, "no-policy.toml"), Executable: "/nonexistent",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Set("AllowRemoteShellAccess", "false"); err != nil {
		t.Fatal(err)
	}
	// As Serve would, before any request (the planted entries below are not
	// sessions it could reach anyway).
	a.discover(context.Background())
	victim := filepath.Join(state, "s", "victim")
	for _, d := range []string{filepath.Join(state, "s", me.Username, ".closed"), filepath.Join(victim, ".closed"), filepath.Join(victim, "alive")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ts, _ := json.Marshal(sessionhost.Tombstone{Name: "gone", ClosedAt: time.Now(), ClosedBy: "victim from secret-laptop", Reason: "secret reason"})
	os.WriteFile(filepath.Join(victim, ".closed", "gone.json"), ts, 0o600)
	meta, _ := json.Marshal(sessionhost.Meta{Name: "alive", User: "victim"})
	os.WriteFile(filepath.Join(victim, "alive", "meta.json"), meta, 0o600)
	a.register(&sessionRef{user: "victim", name: "alive", dir: filepath.Join(victim, "alive"), broken: "test"})
	return a, identity{user: me.Username, remote: "192.0.2.1:1"}
}

var nameOps = []wire.Op{wire.OpNew, wire.OpRun, wire.OpAttach, wire.OpReceive, wire.OpConnect, wire.OpDisconnect, wire.OpStatus, wire.OpRemove}

// checkAnswer fails unless resp reveals nothing: the name is refused as
// malformed, or it names nothing of the caller's (or, for new and a bare
// run, no session may be opened at all on this host).
func checkAnswer(t *testing.T, op wire.Op, name string, resp wire.Response, relay relayFunc) {
	t.Helper()
	if relay != nil {
		t.Fatalf("%s %q reached a session host", op, name)
	}
	code := ""
	if resp.Error != nil {
		code = resp.Error.Code
	}
	switch {
	case code == wire.CodeBadRequest, code == wire.CodeNotFound:
	case (op == "new" || op == "run") && code == wire.CodeLimit:
	default:
		t.Fatalf("%s %q answered %s %+v: only bad_request or not_found may answer a name that is not the caller's", op, name, code, resp.Error)
	}
}

// TestNamesCheckedOnEveryOp: the paths from the attack run on another
// user's tombstones and sessions are refused as malformed by every op,
// before any file is read (old code: "closed by victim from secret-laptop").
func TestNamesCheckedOnEveryOp(t *testing.T) {
	a, id := nameAgent(t)
	for _, name := range []string{"../../victim/.closed/gone", "../../victim/alive/meta", "../victim/alive", "/etc/passwd", ".closed", "..", "a/b", "a\x00b"} {
		for _, op := range nameOps {
			resp, relay := a.dispatch(context.Background(), id, &wire.Request{Op: op, Session: name})
			checkAnswer(t, op, name, resp, relay)
			if resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
				t.Errorf("%s %q: %+v, want bad_request", op, name, resp.Error)
			}
		}
	}
	// remove's owner is a user name: a path there is refused too, for an
	// admin as for anyone.
	admin := id
	admin.admin = true
	resp, _ := a.dispatch(context.Background(), admin, &wire.Request{Op: "remove", Session: "alive", Owner: "../s/victim"})
	if resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
		t.Errorf("remove --owner ../s/victim: %+v, want bad_request", resp.Error)
	}
	// The victim's live session, by its plain name, is not the caller's.
	resp, relay := a.dispatch(context.Background(), id, &wire.Request{Op: "status", Session: "alive"})
	checkAnswer(t, "status", "alive", resp, relay)
}

// FuzzSessionNames sends arbitrary session names and owners to every op
// of an in-process agent: the answer is only ever bad_request or
// not_found (nothing of the victim's leaks), and nothing panics.
func FuzzSessionNames(f *testing.F) {
	for _, s := range []string{"../../victim/.closed/gone", "../../victim/alive/meta", "alive", "gone", "", ".", "..", "a/../../victim/alive", "%2e%2e", "x\x00", "victim"} {
		f.Add(s, "")
		f.Add(s, "victim")
		f.Add("alive", s)
	}
	a, id := nameAgent(f)
	f.Fuzz(func(t *testing.T, name, owner string) {
		for _, op := range nameOps {
			req := &wire.Request{Op: op, Session: name}
			if op == "remove" {
				req.Owner = owner
			}
			resp, relay := a.dispatch(context.Background(), id, req)
			checkAnswer(t, op, name, resp, relay)
		}
	})
}
