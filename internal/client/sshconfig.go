package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/sshtransport"
)

// SSHFlags are ssh's own options given on tether's command line, before
// the targets, as ssh takes them: -p PORT, -J JUMP, -F FILE, -o Key=Value.
// They apply to both transports: to ssh:// targets they go to ssh as they
// are; for targets served by a Tether agent they go to `ssh -G` (the
// user's ssh is the ssh_config parser), and -p / -o Port= set the agent's
// port.
type SSHFlags struct {
	Port       int
	Jump       string
	ConfigFile string
	Options    []string // Key=Value, as -o takes them
	// Login is tether's -l: like ssh's, it wins over ssh_config's User.
	Login string
}

// CheckSSHOption refuses what ssh would not take as -o Key=Value.
func CheckSSHOption(kv string) error {
	k, _, ok := strings.Cut(kv, "=")
	if !ok {
		k, _, ok = strings.Cut(kv, " ")
	}
	if !ok || k == "" || strings.HasPrefix(kv, "-") {
		return fmt.Errorf("bad -o %q: use -o Key=Value, as with ssh (e.g. -o User=deploy)", kv)
	}
	return nil
}

// sshArgs are the flags as ssh arguments (no -p: callers place the port).
func (f *SSHFlags) sshArgs() []string {
	var a []string
	for _, o := range f.Options {
		a = append(a, "-o", o)
	}
	if f.Jump != "" {
		a = append(a, "-J", f.Jump)
	}
	return a
}

// optionPort is the last -o Port=N, or 0.
func (f *SSHFlags) optionPort() int {
	p := 0
	for _, o := range f.Options {
		k, v, ok := strings.Cut(o, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "port") {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 && n < 65536 {
				p = n
			}
		}
	}
	return p
}

// applyFlags puts the command line's ssh options into how ssh:// targets
// are reached.
func (o *SSHOptions) applyFlags() {
	o.flagsOnce.Do(func() {
		f := &o.Flags
		if f.ConfigFile != "" {
			o.Transport.ConfigFile = f.ConfigFile
		}
		o.Transport.Extra = append(o.Transport.Extra, f.sshArgs()...)
	})
}

// resolved is how a target served by a Tether agent is reached after
// ssh_config: the address to dial, the login, keys to offer first, and the
// jump hosts to go through.
type resolved struct {
	Host       string
	Port       int
	User       string // "": the Dialer's default
	Identities []string
	Jump       string // ProxyJump, "" or "none": direct
}

func (r resolved) addr() string { return joinHostPort(r.Host, r.Port) }

func joinHostPort(h string, p int) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + strconv.Itoa(p)
	}
	return h + ":" + strconv.Itoa(p)
}

// sshDefaults are the identity files ssh -G lists when none is configured;
// ClientSigners already offers the ones that exist.
var sshDefaults = map[string]bool{
	"~/.ssh/id_rsa": true, "~/.ssh/id_ecdsa": true, "~/.ssh/id_ecdsa_sk": true,
	"~/.ssh/id_ed25519": true, "~/.ssh/id_ed25519_sk": true, "~/.ssh/id_xmss": true, "~/.ssh/id_dsa": true,
}

// resolveCache keeps ssh -G's answers for this process (a reconnect or a
// second session on the same host asks once).
type resolveCache struct {
	mu sync.Mutex
	m  map[string]resolved
}

// resolveDirect asks the user's ssh (`ssh -G`) how t's host is reached:
// HostName, User, IdentityFile and ProxyJump from ssh_config (and -F, -o,
// -J on the command line). The port stays Tether's (t's, 4422 by default):
// ssh_config's Port is sshd's; -p or -o Port= given on the command line
// set it. Without an ssh program, and no ssh flags given, t is dialled as
// written.
func (d *Dialer) resolveDirect(ctx context.Context, t Target) (resolved, error) {
	o := d.sshOptions()
	f := &o.Flags
	r := resolved{Host: t.Host, Port: t.Port, User: t.User}
	if t.Port == DefaultPort {
		if p := f.optionPort(); p != 0 {
			r.Port = p
		}
		if f.Port != 0 {
			r.Port = f.Port
		}
	}
	key := t.User + "@" + t.Host + "\x00" + f.Login
	o.cache.mu.Lock()
	c, ok := o.cache.m[key]
	o.cache.mu.Unlock()
	if ok {
		c.Port = r.Port
		return c, nil
	}
	prog := o.Transport.Program
	if prog == "" {
		prog = "ssh"
	}
	noFlags := f.ConfigFile == "" && len(f.Options) == 0 && f.Jump == "" && o.Transport.ConfigFile == ""
	if len(f.Options) == 0 && f.Jump == "" && !configMayApply(o.Transport.ConfigFile) {
		return r, nil
	}
	if _, err := exec.LookPath(prog); err != nil {
		if noFlags {
			return r, nil
		}
		return r, fmt.Errorf("%s: -F, -J and -o need the ssh client (%s): %w", t.HostString(), prog, err)
	}
	args := []string{"-G"}
	if cf := o.Transport.ConfigFile; cf != "" {
		args = append(args, "-F", cf)
	}
	args = append(args, f.sshArgs()...)
	if t.User != "" {
		args = append(args, "-l", t.User)
	} else if f.Login != "" {
		args = append(args, "-l", f.Login)
	}
	args = append(args, "--", t.Host)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = o.Transport.Env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && noFlags && strings.TrimSpace(stderr.String()) == "" {
			return r, nil
		}
		return r, fmt.Errorf("%s: ssh -G (reading ssh_config): %s", t.HostString(), lastLine(stderr.String()))
	}
	me := ""
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "hostname":
			if v != "" {
				r.Host = v
			}
		case "user":
			// ssh -G always names a user: the local one when ssh_config
			// sets none, which leaves the Dialer's default ($USER). A
			// USER@ equal to the default login reaches here as no user
			// (addresses are kept without it), so ssh_config's User
			// applies to it; -l does win.
			if t.User == "" && f.Login == "" && v != me && v != "" {
				r.User = v
			}
		case "identityfile":
			if !sshDefaults[v] {
				r.Identities = append(r.Identities, v)
			}
		case "proxyjump":
			if v != "none" {
				r.Jump = v
			}
		}
	}
	if strings.HasPrefix(r.Host, "-") || strings.HasPrefix(r.User, "-") {
		return r, fmt.Errorf("%s: ssh_config gives a host or user starting with '-' (%q, %q)", t.HostString(), r.Host, r.User)
	}
	o.cache.mu.Lock()
	if o.cache.m == nil {
		o.cache.m = map[string]resolved{}
	}
	o.cache.m[key] = r
	o.cache.mu.Unlock()
	return r, nil
}

// identitySigners loads the keys ssh_config names for a host, skipping
// those that cannot be loaded without a passphrase (ssh-agent may hold
// them) and those already offered.
func identitySigners(paths []string, have []ssh.Signer) []ssh.Signer {
	seen := map[string]bool{}
	for _, s := range have {
		seen[string(s.PublicKey().Marshal())] = true
	}
	home, _ := os.UserHomeDir()
	if h := os.Getenv("HOME"); h != "" {
		home = h
	}
	var out []ssh.Signer
	for _, p := range paths {
		if strings.HasPrefix(p, "~/") {
			p = filepath.Join(home, p[2:])
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		if err != nil || seen[string(s.PublicKey().Marshal())] {
			continue
		}
		seen[string(s.PublicKey().Marshal())] = true
		out = append(out, s)
	}
	return out
}

// sshOptions are d.SSH, or the environment's, with the flags applied.
func (d *Dialer) sshOptions() *SSHOptions {
	o := d.SSH
	if o == nil {
		o = defaultSSH()
	}
	o.applyFlags()
	return o
}

// dialJump reaches addr through the jump hosts with `ssh -W addr`: the
// last of a comma-separated list is the destination, the others go to -J.
func (d *Dialer) dialJump(jump, addr string) (*sshtransport.Conn, error) {
	o := d.sshOptions()
	hops := strings.Split(jump, ",")
	last := hops[len(hops)-1]
	h, err := parseJumpHost(last)
	if err != nil {
		return nil, err
	}
	opts := o.Transport // a copy: -J here is the flag's or ssh_config's, not Extra's
	opts.Extra = nil
	for _, kv := range o.Flags.Options {
		opts.Extra = append(opts.Extra, "-o", kv)
	}
	if len(hops) > 1 {
		opts.Extra = append(opts.Extra, "-J", strings.Join(hops[:len(hops)-1], ","))
	}
	return opts.StartForward(h, addr)
}

// parseJumpHost reads a ProxyJump hop: [USER@]HOST[:PORT] or ssh://….
func parseJumpHost(s string) (sshtransport.Host, error) {
	s = strings.TrimPrefix(s, "ssh://")
	var h sshtransport.Host
	if u, rest, ok := strings.Cut(s, "@"); ok {
		h.User, s = u, rest
	}
	hostPart, port := s, ""
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			hostPart, port = s[1:i], strings.TrimPrefix(s[i+1:], ":")
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		hostPart, port = s[:i], s[i+1:]
	}
	h.Host = hostPart
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return h, fmt.Errorf("bad jump host %q: the port must be a number", s)
		}
		h.Port = n
	}
	return h, sshtransport.CheckHost(h)
}

// Master checks (op "check") or stops (op "exit") the ssh master that
// serves ssh:// target t: Tether's own, or the user's when ssh_config
// gives the host a ControlPath.
func (o *SSHOptions) Master(ctx context.Context, t Target, op string) (string, error) {
	o.applyFlags()
	h := sshtransport.Host{User: t.User, Host: t.Host, Port: t.Port}
	if h.Port == 0 {
		h.Port = o.Flags.Port
	}
	return o.Transport.Control(ctx, h, op)
}

// reachKeywords are the ssh_config keywords that can change how a Tether
// agent is reached (and Include/Match, which may hide them).
var reachKeywords = []string{"hostname", "user", "identityfile", "proxyjump", "match", "include", "canonicalizehostname"}

// configKeywordLines returns, for each line of an ssh_config text whose
// keyword is one of reachKeywords, the keyword (lower case) and its
// arguments ("Key Value" or "Key=Value", keywords in any case). A plain
// scan, not a regexp: every CLI start reads /etc/ssh/ssh_config, and
// compiling the regexp cost more than the rest of the check.
func configKeywordLines(text string) [][2]string {
	var out [][2]string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		n := 0
		for n < len(line) && isWordByte(line[n]) {
			n++
		}
		kw := strings.ToLower(line[:n])
		if n == 0 || !slices.Contains(reachKeywords, kw) {
			continue
		}
		rest := strings.TrimLeft(line[n:], " \t")
		rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
		out = append(out, [2]string{kw, rest})
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// configMayApply reports whether ssh_config could say anything about how
// a host is reached: asking `ssh -G` costs a process (~5 ms), more than a
// whole command to an agent, so it is skipped when no config file that
// ssh reads (file, or ~/.ssh/config of the passwd home and
// /etc/ssh/ssh_config, with what they Include) has one of those lines.
// This only looks for the keywords; ssh -G does the parsing.
func configMayApply(file string) bool {
	var files []string
	home := ""
	if u, err := user.Current(); err == nil {
		home = u.HomeDir // ssh reads the passwd home's ~/.ssh, not $HOME's
	}
	if file != "" {
		files = []string{file}
	} else {
		files = []string{filepath.Join(home, ".ssh", "config"), "/etc/ssh/ssh_config"}
	}
	seen := map[string]bool{}
	var look func(p string, depth int) bool
	look = func(p string, depth int) bool {
		if seen[p] || depth > 4 {
			return false
		}
		seen[p] = true
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		for _, m := range configKeywordLines(string(b)) {
			if m[0] != "include" {
				return true
			}
			for _, pat := range strings.Fields(m[1]) {
				pat = strings.Trim(pat, `"`)
				if strings.HasPrefix(pat, "~/") {
					pat = filepath.Join(home, pat[2:])
				} else if !filepath.IsAbs(pat) {
					base := filepath.Join(home, ".ssh")
					if strings.HasPrefix(p, "/etc/ssh/") {
						base = "/etc/ssh"
					}
					pat = filepath.Join(base, pat)
				}
				inc, _ := filepath.Glob(pat)
				for _, q := range inc {
					if look(q, depth+1) {
						return true
					}
				}
			}
		}
		return false
	}
	for _, f := range files {
		if look(f, 0) {
			return true
		}
	}
	return false
}
