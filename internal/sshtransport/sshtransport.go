// Package sshtransport runs the user's own OpenSSH client as a transport:
// it builds ssh's argv (Tether's own ControlMaster in a private 0700
// directory, BatchMode when there is no terminal), gives a remote command's
// stdin/stdout as a net.Conn, and turns ssh's failures into one clear line.
// Running the system ssh means every ssh_config feature (aliases, User,
// IdentityFile, ProxyJump, ProxyCommand, certificates, FIDO keys, Match)
// applies without Tether parsing any of it.
package sshtransport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options say how ssh is run. The zero value runs "ssh" from PATH with a
// master in the default directory.
type Options struct {
	Program    string   // the ssh binary; default "ssh"
	ConfigFile string   // passed as -F when set
	Extra      []string // more ssh arguments, before the destination (-o K=V, -J …)
	// ControlDir holds Tether's ControlMaster sockets; empty: Dir(). It is
	// created 0700 and must be owned by the user and not a symlink.
	ControlDir string
	// ControlPersist is how long an idle master stays; 0: 5 minutes;
	// negative: no master of Tether's.
	ControlPersist time.Duration
	// Batch forces BatchMode=yes (no prompts); when false BatchMode is
	// still used if the process has no terminal to prompt on.
	Batch          bool
	ConnectTimeout time.Duration // ssh's ConnectTimeout; default 10s
	// Env is the environment of ssh (nil: this process's).
	Env []string
	// Notify, if set, gets the lines the remote command writes on stderr
	// that start with NotePrefix (the stdio agent's notes for the user).
	Notify io.Writer
}

// NotePrefix starts a remote stderr line meant for the user (the stdio
// agent's agent.LogoutNote).
const NotePrefix = "tether: note: "

// Host is an ssh destination as the user wrote it: the user and port are
// optional, and ssh_config fills in what is missing.
type Host struct {
	User string
	Host string
	Port int // 0: ssh's (ssh_config's) port
}

// String is [USER@]HOST[:PORT], as written.
func (h Host) String() string {
	s := h.Host
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if h.User != "" {
		s = h.User + "@" + s
	}
	if h.Port != 0 {
		s += ":" + strconv.Itoa(h.Port)
	}
	return s
}

// Dir is the default directory of Tether's ssh masters:
// $XDG_RUNTIME_DIR/tether/ssh, or ~/.cache/tether/ssh.
func Dir(getenv func(string) string, home string) string {
	if x := getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "tether", "ssh")
	}
	return filepath.Join(home, ".cache", "tether", "ssh")
}

// maxSocketPath leaves room for the socket's name (16 hex digits) and the
// random suffix ssh appends while it creates it (17), within sun_path (108).
const maxSocketPath = 107 - 1 - 16 - 17

// ControlPath is where Tether's master for h lives in dir: a hash of how
// ssh is asked to reach h (not ssh's %C, 40 digits, which leaves too little
// of sun_path for a directory under a home).
func (o *Options) ControlPath(dir string, h Host) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{o.program(), o.ConfigFile, strings.Join(o.Extra, "\x00"), h.User, h.Host, strconv.Itoa(h.Port)}, "\x00")))
	return filepath.Join(dir, hex.EncodeToString(sum[:8]))
}

// ControlDirFor is the masters' directory, made and checked; "" means
// Tether runs no master (none wanted, or no safe place for one).
func (o *Options) ControlDirFor() string { return o.controlDir() }

// controlDir makes and checks the masters' directory; "" means no master.
func (o *Options) controlDir() string {
	if o.ControlPersist < 0 {
		return ""
	}
	dir := o.ControlDir
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = Dir(os.Getenv, home)
	}
	if len(dir) > maxSocketPath {
		return ""
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return ""
	}
	if fi.Mode().Perm() != 0o700 {
		if os.Chmod(dir, 0o700) != nil {
			return ""
		}
	}
	return dir
}

// HasTerminal reports whether ssh could prompt (password, passphrase,
// 2FA, host key) on a controlling terminal.
func HasTerminal() bool {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Args is ssh's argv (without the program) to run command on h.
func (o *Options) Args(h Host, command string) []string {
	a := o.common(h, true)
	// -T: no remote terminal (the stream is binary); -e none: no escape
	// character in it.
	a = append(a, "-T", "-e", "none", "--", h.Host)
	if command != "" {
		a = append(a, command)
	}
	return a
}

// ForwardArgs is ssh's argv to forward stdio to addr through h (-W). It
// uses no master of Tether's: a -W process that became one would stay
// behind holding the forward.
func (o *Options) ForwardArgs(h Host, addr string) []string {
	a := o.common(h, false)
	return append(a, "-W", addr, "--", h.Host)
}

// common are the options before the destination.
func (o *Options) common(h Host, master bool) []string {
	var a []string
	if o.ConfigFile != "" {
		a = append(a, "-F", o.ConfigFile)
	}
	if dir := o.controlDir(); master && dir != "" && !o.UserMaster(h) {
		persist := o.ControlPersist
		if persist == 0 {
			persist = 5 * time.Minute
		}
		a = append(a, "-o", "ControlMaster=auto",
			"-o", "ControlPath="+o.ControlPath(dir, h),
			"-o", "ControlPersist="+strconv.Itoa(int(persist.Seconds())))
	}
	if o.Batch || !HasTerminal() {
		a = append(a, "-o", "BatchMode=yes")
	}
	ct := o.ConnectTimeout
	if ct <= 0 {
		ct = 10 * time.Second
	}
	a = append(a, "-o", "ConnectTimeout="+strconv.Itoa(max(1, int(ct.Seconds()))))
	a = append(a, o.Extra...)
	if h.User != "" {
		a = append(a, "-l", h.User)
	}
	if h.Port != 0 {
		a = append(a, "-p", strconv.Itoa(h.Port))
	}
	return a
}

func (o *Options) program() string {
	if o.Program != "" {
		return o.Program
	}
	return "ssh"
}

// CheckHost refuses a host ssh would read as an option.
func CheckHost(h Host) error {
	if h.Host == "" || strings.HasPrefix(h.Host, "-") || strings.HasPrefix(h.User, "-") {
		return fmt.Errorf("ssh: bad destination %q: it cannot be empty or start with '-'", h.String())
	}
	return nil
}

// Error is ssh failing to reach or log in to a host (ssh's exit status
// 255), or the remote command failing to start.
type Error struct {
	Host Host
	Kind Kind
	Code int    // ssh's exit status
	Line string // the one line that says what went wrong
}

// Kind says which ssh failure an Error is.
type Kind int

// The kinds of Error.
const (
	Connect Kind = iota // no route, refused, timed out, name unknown, ProxyJump failed
	Auth                // permission denied
	HostKey             // host key unknown or changed
	Remote              // ssh worked; the remote command did not (see Code)
)

func (e *Error) Error() string { return e.Line }

// ErrNoSSH is returned when the ssh program cannot be run.
var ErrNoSSH = errors.New("ssh: cannot run the ssh client")

// Output runs command on h with stdin and returns its stdout. A non-zero
// exit is an *Error (stderr's last line in Line).
func (o *Options) Output(ctx context.Context, h Host, command string, stdin io.Reader) ([]byte, error) {
	if err := CheckHost(h); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.program(), o.Args(h, command)...)
	cmd.Env = o.Env
	cmd.Stdin = stdin
	var out bytes.Buffer
	errb := &tail{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = &out, errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return out.Bytes(), fmt.Errorf("%w %s: %v", ErrNoSSH, o.program(), err)
	}
	if ctx.Err() != nil {
		return out.Bytes(), &Error{Host: h, Kind: Connect, Code: 255, Line: fmt.Sprintf("ssh to %s: %v", h, ctx.Err())}
	}
	return out.Bytes(), Classify(h, ee.ExitCode(), errb.String())
}

// Classify turns ssh's exit status and stderr into an *Error with one line.
func Classify(h Host, code int, stderr string) *Error {
	lines := meaningful(stderr)
	e := &Error{Host: h, Code: code, Kind: Remote}
	if code == 255 || code < 0 {
		e.Kind = Connect
	}
	find := func(sub string) string {
		for _, l := range lines {
			if strings.Contains(l, sub) {
				return l
			}
		}
		return ""
	}
	switch {
	case find("REMOTE HOST IDENTIFICATION HAS CHANGED") != "":
		e.Kind = HostKey
		e.Line = "the host key of " + h.String() + " has changed (ssh refused it)"
		if l := find("Offending"); l != "" {
			e.Line += "; " + strings.TrimSuffix(l, ".")
		}
		e.Line += "; if the host was reinstalled, remove the old key with ssh-keygen -R"
	case find("Host key verification failed") != "":
		e.Kind = HostKey
		e.Line = "host key verification failed for " + h.String()
		if l := find("No "); strings.Contains(l, "host key is known") {
			e.Line += ": " + l
		}
		e.Line += "; run `ssh " + h.String() + " true` once to check and accept its key"
	case find("Permission denied") != "" && e.Kind == Connect:
		e.Kind = Auth
		e.Line = find("Permission denied")
	case len(lines) > 0:
		e.Line = lines[len(lines)-1]
	default:
		e.Line = fmt.Sprintf("ssh to %s exited with status %d and said nothing", h, code)
	}
	return e
}

// meaningful are stderr's lines without ssh's warnings about adding keys
// and without empty lines or the banner's decorations.
func meaningful(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(strings.TrimRight(l, "\r"))
		if l == "" || strings.HasPrefix(l, "@@@@") || strings.HasPrefix(l, "Warning: Permanently added") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// userMasters remembers, per process, whether the user's ssh_config gives
// a host a ControlPath of its own.
var userMasters sync.Map // key string → bool

// UserMaster reports whether the user's ssh_config sets a ControlPath for
// h: then Tether adds no master options, and ssh uses (or makes) the
// user's master. ssh -G answers, asked only when a config file mentions
// Control or Include, so a plain setup pays no extra ssh run.
func (o *Options) UserMaster(h Host) bool {
	key := strings.Join([]string{o.program(), o.ConfigFile, strings.Join(o.Extra, "\x00"), h.User, h.Host, strconv.Itoa(h.Port)}, "\x00")
	if v, ok := userMasters.Load(key); ok {
		return v.(bool)
	}
	v := o.askUserMaster(h)
	userMasters.Store(key, v)
	return v
}

func (o *Options) askUserMaster(h Host) bool {
	mentions := func(p string) bool {
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		l := bytes.ToLower(b)
		return bytes.Contains(l, []byte("control")) || bytes.Contains(l, []byte("include"))
	}
	any := false
	for _, e := range o.Extra {
		any = any || strings.Contains(strings.ToLower(e), "control")
	}
	if o.ConfigFile != "" {
		any = any || mentions(o.ConfigFile)
	} else {
		home, _ := os.UserHomeDir()
		any = any || mentions(filepath.Join(home, ".ssh", "config")) || mentions("/etc/ssh/ssh_config")
	}
	if !any {
		return false
	}
	var a []string
	if o.ConfigFile != "" {
		a = append(a, "-F", o.ConfigFile)
	}
	a = append(a, "-G")
	a = append(a, o.Extra...)
	if h.User != "" {
		a = append(a, "-l", h.User)
	}
	if h.Port != 0 {
		a = append(a, "-p", strconv.Itoa(h.Port))
	}
	a = append(a, "--", h.Host)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.program(), a...)
	cmd.Env = o.Env
	out, err := cmd.Output()
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "controlpath "); ok && v != "none" && v != "" {
			return true
		}
	}
	return false
}

// Control sends a master control command (ssh -O check or exit) for h,
// to Tether's master or the user's own, and returns ssh's answer.
func (o *Options) Control(ctx context.Context, h Host, op string) (string, error) {
	if op != "check" && op != "exit" {
		return "", fmt.Errorf("ssh: unknown control command %q", op)
	}
	if err := CheckHost(h); err != nil {
		return "", err
	}
	a := o.common(h, true)
	if !o.UserMaster(h) && !slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "ControlPath=") }) {
		return "", errors.New("no master: Tether runs none for this host (no safe directory for its socket)")
	}
	a = append(a, "-O", op, "--", h.Host)
	cmd := exec.CommandContext(ctx, o.program(), a...)
	cmd.Env = o.Env
	out, err := cmd.CombinedOutput()
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = strings.TrimSpace(line[i+1:])
	}
	if err != nil {
		if line == "" {
			line = err.Error()
		}
		return "", errors.New(line)
	}
	return line, nil
}
