package sessionhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/wire"
)

// Launch is the session host's launch contract: everything the agent tells
// a new session host, JSON-encoded and written to the pipe the host inherits
// as LaunchFD. It is not passed in argv (every local user can read argv with
// ps) nor in the environment (the user's commands inherit it).
type Launch struct {
	Dir       string      `json:"dir"`       // the session directory, made by the agent
	Name      string      `json:"name"`      // session name
	User      string      `json:"user"`      // owner
	Tombstone string      `json:"tombstone"` // file to leave when closed
	Temporary bool        `json:"temporary,omitempty"`
	Limits    wire.Limits `json:"limits"`
	// LimitsGroup names the cgroup the agent made for the session (empty:
	// enforce limits in the host with rlimits), LimitsMechanism its kind.
	LimitsGroup     string `json:"limits_group,omitempty"`
	LimitsMechanism string `json:"limits_mechanism,omitempty"`
	// Shell is the session's runspace (runspace.KindBash or KindBuiltin;
	// "" is builtin, what an older agent's sessions ran); NoProfile skips
	// bash's login profile.
	Shell     string `json:"shell,omitempty"`
	NoProfile bool   `json:"no_profile,omitempty"`
}

// The file descriptors a session host inherits from the agent.
const (
	LaunchFD = 3 // read: the Launch, then EOF
	ReadyFD  = 4 // write: "ready\n" or "error ...\n", then close
)

// maxLaunch bounds the launch message.
const maxLaunch = 64 << 10

// Encode is the launch message.
func (l Launch) Encode() ([]byte, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("session host launch: %w", err)
	}
	if len(b) > maxLaunch {
		return nil, fmt.Errorf("session host launch: %d bytes, more than %d", len(b), maxLaunch)
	}
	return b, nil
}

// ReadLaunch reads and checks a launch message.
func ReadLaunch(r io.Reader) (Launch, error) {
	var l Launch
	b, err := io.ReadAll(io.LimitReader(r, maxLaunch+1))
	if err != nil {
		return l, fmt.Errorf("session host launch: read: %w", err)
	}
	if len(b) > maxLaunch {
		return l, fmt.Errorf("session host launch: more than %d bytes", maxLaunch)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, fmt.Errorf("session host launch: %w (the session host is started by tether serve; it is not run by hand)", err)
	}
	return l, l.check()
}

func (l Launch) check() error {
	switch {
	case l.Dir == "" || !filepath.IsAbs(l.Dir):
		return errors.New("session host launch: dir must be an absolute path")
	case l.Name == "":
		return errors.New("session host launch: no session name")
	case l.User == "":
		return errors.New("session host launch: no user")
	case l.Tombstone != "" && !filepath.IsAbs(l.Tombstone):
		return errors.New("session host launch: tombstone must be an absolute path")
	case l.Shell != "" && l.Shell != runspace.KindBash && l.Shell != runspace.KindBuiltin:
		return fmt.Errorf("session host launch: unknown shell %q", l.Shell)
	}
	return nil
}

// Options turns the launch into the host's options; the caller adds the
// process's own parts (logger, home, environment, ready pipe).
func (l Launch) Options() Options {
	return Options{
		Dir: l.Dir, Name: l.Name, User: l.User, Tombstone: l.Tombstone, Temporary: l.Temporary,
		Limits: l.Limits, LimitsGroup: l.LimitsGroup, LimitsMechanism: l.LimitsMechanism,
		Shell: l.Shell, NoProfile: l.NoProfile,
	}
}

// LogPath is the session host's own log, host.log in the session directory.
func LogPath(dir string) string { return filepath.Join(dir, "host.log") }

// RedirectOutput opens the session's host.log (never through a symlink: the
// user may have put one there) and makes it the process's stdout and stderr.
// The session host, running as the user, opens it; the agent never does.
func RedirectOutput(dir string) error {
	fd, err := unix.Open(LogPath(dir), unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("session log %s: %w", LogPath(dir), err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("session log %s: not a regular file", LogPath(dir))
	}
	for _, to := range []int{1, 2} {
		if err := unix.Dup3(fd, to, 0); err != nil {
			return fmt.Errorf("session log: dup onto fd %d: %w", to, err)
		}
	}
	return nil
}

// LaunchFiles are the inherited launch and ready pipes.
//
// Both are made close-on-exec first: inherited descriptors are not, and
// the session's bash, started before the ready line is written, would
// otherwise hold the ready pipe open, and the agent waits for its EOF.
func LaunchFiles() (launch, ready *os.File) {
	unix.CloseOnExec(LaunchFD)
	unix.CloseOnExec(ReadyFD)
	return os.NewFile(LaunchFD, "launch"), os.NewFile(ReadyFD, "ready")
}
