// Package client is the client side of Tether: addresses, dialing agents
// over SSH with the user's keys and known_hosts, running commands in
// sessions with automatic reconnect and exactly-once resume, fan-out across
// many targets, and the local registry of sessions this client created.
//
// A program that moves bulk output through this package pays, by its own
// runtime settings, for what x/crypto/ssh does per 32 KiB packet: a fresh
// buffer (garbage) and a hand-off between goroutines (with an idle P, a
// thread wake-up). Measured for 1 GiB through a long-lived connection on a
// loaded 2-core machine (#18): GOGC 100 and 2 Ps 2.1–2.3 CPU-s, GOGC 400
// 1.4, one P 1.0–1.2, one P and GOGC 400 0.8–0.95 (the tether CLI, which
// runs a one-target invoke so, 1.0–1.3 with its process start and dial).
// The package sets neither: they are the program's. Most of that is
// x/crypto/ssh's, not this package's: a program reading 1 GiB from
// OpenSSH's sshd with x/crypto/ssh alone (io.Copy of a session's stdout)
// cost as much client CPU per GiB under the same settings (1.29 against
// this package's 1.33 with GOGC 100 and 2 Ps, 0.77 against 0.71 with one
// P and GOGC 400, in turns). Under GOGC 100 and 2 Ps the collector runs
// ~400 times per GiB (a 5 MB heap goal) and the freed pages come back as
// ~85,000 page faults per GiB, and every packet crosses three goroutines
// (x/crypto/ssh's transport reader, its mux, the reader of the channel)
// with a thread wake-up whenever a P is idle.
package client

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultPort is the agent's default port.
const DefaultPort = 4422

// Target is a host, or a session on a host: [USER@]HOST[:PORT][/NAME].
type Target struct {
	User    string // empty: the default login name
	Host    string
	Port    int
	Session string // empty: a bare host (temporary session)
	// SSH: written ssh://…, reached through the user's OpenSSH
	// (sshdial.go); Port 0 is then ssh's own (ssh_config's).
	SSH bool
}

// ParseTarget parses one address: ssh://… (or any address when bare hosts
// mean ssh://, SetBareHostsSSH) is reached through OpenSSH.
func ParseTarget(s string) (Target, error) {
	if rest, ok := strings.CutPrefix(s, sshScheme); ok || (bareSSH.Load() && s != "") {
		return parseSSHTarget(s, rest)
	}
	return parseTarget(s)
}

func parseTarget(s string) (Target, error) {
	var t Target
	orig := s
	if s == "" {
		return t, fmt.Errorf("empty address: use [USER@]HOST[:PORT][/NAME]")
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		t.Session = s[i+1:]
		s = s[:i]
		if t.Session == "" {
			return t, fmt.Errorf("bad address %q: nothing after '/'; use HOST/NAME for a session or HOST alone", orig)
		}
		if strings.ContainsAny(t.Session, "/ \t") {
			return t, fmt.Errorf("bad address %q: a session name cannot contain '/' or spaces", orig)
		}
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User = s[:i]
		s = s[i+1:]
		if t.User == "" {
			return t, fmt.Errorf("bad address %q: empty user before '@'", orig)
		}
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return t, fmt.Errorf("bad address %q: missing ']' after an IPv6 address", orig)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return t, fmt.Errorf("bad address %q: expected ':PORT' after ']'", orig)
			}
			port = rest[1:]
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if strings.Count(s, ":") > 1 {
			return t, fmt.Errorf("bad address %q: write IPv6 addresses in brackets, like [::1]:4422", orig)
		}
		host, port = s[:i], s[i+1:]
	}
	if host == "" {
		return t, fmt.Errorf("bad address %q: no host; use [USER@]HOST[:PORT][/NAME]", orig)
	}
	if i := strings.IndexFunc(host, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune("[]@/,", r)
	}); i >= 0 {
		return t, fmt.Errorf("bad address %q: the host %q contains %q", orig, host, host[i:i+1])
	}
	if strings.ContainsFunc(t.User, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("@/,", r) }) {
		return t, fmt.Errorf("bad address %q: the user name %q contains a space, '/' or ','", orig, t.User)
	}
	t.Host = host
	t.Port = DefaultPort
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			return t, fmt.Errorf("bad address %q: port %q is not a number from 1 to 65535", orig, port)
		}
		t.Port = p
	}
	return t, nil
}

// ParseTargets parses a comma-separated list.
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		t, err := ParseTarget(part)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address in %q", s)
	}
	return out, nil
}

// HostPort is the dialable address.
func (t Target) HostPort() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// HostString is [USER@]HOST[:PORT], the port only when not the default.
func (t Target) HostString() string {
	var b strings.Builder
	if t.SSH {
		b.WriteString(sshScheme)
	}
	if t.User != "" {
		b.WriteString(t.User)
		b.WriteByte('@')
	}
	if strings.Contains(t.Host, ":") {
		b.WriteString("[" + t.Host + "]")
	} else {
		b.WriteString(t.Host)
	}
	if t.SSH && t.Port != 0 || !t.SSH && t.Port != DefaultPort {
		b.WriteString(":" + strconv.Itoa(t.Port))
	}
	return b.String()
}

// String is the full address.
func (t Target) String() string {
	if t.Session == "" {
		return t.HostString()
	}
	return t.HostString() + "/" + t.Session
}

// WithUser fills in the login name when the address has none.
func (t Target) WithUser(user string) Target {
	if t.User == "" && !t.SSH { // ssh:// leaves the login to ssh_config
		t.User = user
	}
	return t
}

// WithSession is the address of session name on t's host.
func (t Target) WithSession(name string) Target {
	t.Session = name
	return t
}

// connKey groups targets that share one SSH connection.
func (t Target) connKey(defaultUser string) string {
	return t.WithUser(defaultUser).WithSession("").String()
}
