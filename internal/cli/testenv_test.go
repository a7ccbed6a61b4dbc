package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/agent"
	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/tstest"
)

// TestMain removes the tether binary e2e.Binary builds for the session
// hosts of the in-process agent.
func TestMain(m *testing.M) { e2e.Main(m) }

// cliEnv is a fake Env: a temp HOME holding a client key, an environment
// with nothing but what the test sets (no SSH_AUTH_SOCK, no USER, no
// TETHER_*), empty stdin and captured output.
type cliEnv struct {
	*Env
	home        string
	vars        map[string]string
	out, errOut *tstest.SyncBuffer
	pub         ssh.PublicKey
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub := e2e.Keygen(t, filepath.Join(home, ".ssh", "id_ed25519"))
	ce := &cliEnv{home: home, vars: map[string]string{"HOME": home}, out: &tstest.SyncBuffer{}, errOut: &tstest.SyncBuffer{}, pub: pub}
	ce.Env = &Env{
		Stdin:  strings.NewReader(""),
		Stdout: ce.out, Stderr: ce.errOut,
		Getenv: func(k string) string { return ce.vars[k] },
	}
	return ce
}

// run runs tether args in-process and returns its exit status.
func (ce *cliEnv) run(t *testing.T, args ...string) int {
	t.Helper()
	ce.out.Reset()
	ce.errOut.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Run(ctx, ce.Env, args)
}

// writeFile writes a file below HOME.
func (ce *cliEnv) writeFile(t *testing.T, rel, data string) {
	t.Helper()
	p := filepath.Join(ce.home, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startCLIAgent runs an agent in this process on a loopback port that
// accepts pub for the current user, with e2e.Binary for its session
// hosts, and returns its address as a tether host (127.0.0.1:PORT).
func startCLIAgent(t *testing.T, pub ssh.PublicKey) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	exe := e2e.Binary(t)
	// Not below /tmp: like sshd, the agent refuses keys below a
	// world-writable directory. Short, for the session sockets.
	root := e2e.ShortTempDir(t)
	keys := filepath.Join(root, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, u.Username), ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, "state")
	a, err := agent.New(agent.Options{
		Listen: "127.0.0.1:0", StateDir: state, AuthorizedKeys: filepath.Join(keys, "%u"),
		PolicyPath: filepath.Join(root, "no-policy.toml"), Executable: exe,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
		e2e.KillSessionHosts(state)
	})
	return ln.Addr().String()
}
