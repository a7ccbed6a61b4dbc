// Package config holds the agent's host settings: the limits a `tether serve`
// agent enforces (idle timeouts, session and connection caps, output
// buffering), the files they are read from, and the central policy that
// overrides them.
//
// A setting's effective value comes from, in order of precedence:
//
//  1. the policy file (the Group Policy analog, typically
//     /etc/tether/policy.toml, managed centrally): a key set there is locked
//     and cannot be changed through the agent;
//  2. the local settings file, written by [Store.Set] when a setting is changed
//     remotely (or edited by hand while the agent is stopped);
//  3. the built-in default ([Defaults]).
//
// Both files are flat TOML: one `Key = value` line per setting, where the value
// is a string ("2h", "unlimited", "block"), an integer or a boolean as is
// natural for the key. Setting names are the ones WinRM uses and are matched
// case-insensitively. See [Keys] for the table.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Settings is one complete set of values, as enforced by the agent.
type Settings struct {
	// AllowRemoteShellAccess false refuses new sessions; existing sessions
	// keep running.
	AllowRemoteShellAccess bool

	// IdleTimeout closes a session that has had no client attached and no
	// command running (or is disconnected while a command runs) for this
	// long. 0 means unlimited.
	IdleTimeout time.Duration
	// MaxIdleTimeout bounds the per-session idle timeout a client may ask
	// for. 0 means unlimited.
	MaxIdleTimeout time.Duration
	// MaxShellRunTime closes a session this long after it was opened.
	// 0 means unlimited.
	MaxShellRunTime time.Duration

	// MaxConcurrentUsers is the number of distinct users that may have open
	// sessions at once. 0 means unlimited.
	MaxConcurrentUsers int
	// MaxShellsPerUser is the number of open sessions per user.
	// 0 means unlimited.
	MaxShellsPerUser int
	// MaxConnections is the number of concurrent client connections to the
	// agent. 0 means unlimited.
	MaxConnections int
	// MaxConnectionsPerUser is the number of concurrent client connections
	// one user may hold, so that one user cannot use up MaxConnections.
	// 0 means unlimited.
	MaxConnectionsPerUser int
	// MaxSessionsPerConnection is the number of channels (requests in
	// flight, kept pipes) open at once on one connection, as OpenSSH's
	// MaxSessions. 0 means unlimited.
	MaxSessionsPerConnection int
	// MaxProcessesPerShell is the number of processes alive at once in one
	// session. 0 means unlimited.
	MaxProcessesPerShell int
	// MaxMemoryPerShellMB is the memory, in MiB, of all processes of one
	// session. 0 means unlimited.
	MaxMemoryPerShellMB int
	// MaxOutputBufferMB is the size, in MiB, of a session's output journal.
	// It is at least 1; there is no unlimited journal.
	MaxOutputBufferMB int

	// OutputBufferingMode says what a disconnected session does when its
	// journal is full: BufferBlock (the session's output blocks until a
	// client drains it) or BufferDrop (the oldest output is discarded).
	OutputBufferingMode string

	// DefaultShell is the runspace of a session that does not ask for one:
	// ShellBash (the host's real bash) or ShellBuiltin (Tether's own
	// interpreter, for hosts without bash).
	DefaultShell string
}

// Values of DefaultShell.
const (
	ShellBash    = "bash"
	ShellBuiltin = "builtin"
)

// BashPaths are where a host's bash is looked for; the first that exists
// is the session's bash (not $PATH: the agent's PATH is not the user's).
var BashPaths = []string{"/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"}

// HostBash is the host's bash, or "" when it has none.
func HostBash() string {
	for _, p := range BashPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// defaultShell: bash when the host has it.
func defaultShell() string {
	if HostBash() != "" {
		return ShellBash
	}
	return ShellBuiltin
}

// Values of OutputBufferingMode.
const (
	BufferBlock = "block"
	BufferDrop  = "drop"
)

// Unlimited is the word accepted (and shown) for "no limit".
const Unlimited = "unlimited"

// Kind is the type of a setting's value.
type Kind int

// Kinds of settings.
const (
	KindBool Kind = iota
	KindDuration
	KindInt
	KindEnum
)

func (k Kind) String() string {
	switch k {
	case KindBool:
		return "bool"
	case KindDuration:
		return "duration"
	case KindInt:
		return "int"
	case KindEnum:
		return "enum"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Key describes one setting.
type Key struct {
	Name    string // canonical name, e.g. "IdleTimeout"
	Default string // default value, normalized (see Validate)
	Help    string // one line for listings
	Kind    Kind
	// Unlimited says 0 (or the word "unlimited") means no limit.
	Unlimited bool
	// Min and Max bound a KindInt value (Min applies to non-zero values
	// when Unlimited is set).
	Min, Max int
	// Allowed lists the values of a KindEnum setting.
	Allowed []string

	get func(*Settings) string  // normalized value of this key in s
	set func(*Settings, string) // apply a normalized value
}

// minDuration is the shortest non-zero duration accepted: anything shorter is
// almost surely a mistake that would close every session at once.
const minDuration = time.Second

// maxMB keeps a size in MiB convertible to bytes in an int64 with room to
// spare (1 PiB).
const maxMB = 1 << 30

func boolKey(name, def, help string, f func(*Settings) *bool) Key {
	return Key{Name: name, Default: def, Help: help, Kind: KindBool,
		get: func(s *Settings) string { return strconv.FormatBool(*f(s)) },
		set: func(s *Settings, v string) { *f(s) = v == "true" },
	}
}

func durationKey(name, def, help string, f func(*Settings) *time.Duration) Key {
	return Key{Name: name, Default: def, Help: help, Kind: KindDuration, Unlimited: true,
		get: func(s *Settings) string { return FormatDuration(*f(s)) },
		set: func(s *Settings, v string) { *f(s) = mustDuration(v) },
	}
}

func intKey(name, def, help string, unlimited bool, lo, hi int, f func(*Settings) *int) Key {
	return Key{Name: name, Default: def, Help: help, Kind: KindInt, Unlimited: unlimited, Min: lo, Max: hi,
		get: func(s *Settings) string {
			if unlimited && *f(s) == 0 {
				return Unlimited
			}
			return strconv.Itoa(*f(s))
		},
		set: func(s *Settings, v string) {
			if v == Unlimited {
				*f(s) = 0
				return
			}
			n, _ := strconv.Atoi(v)
			*f(s) = n
		},
	}
}

// keys is the table, in display order.
var keys = []Key{
	boolKey("AllowRemoteShellAccess", "true",
		"false refuses new sessions; existing sessions keep running",
		func(s *Settings) *bool { return &s.AllowRemoteShellAccess }),
	durationKey("IdleTimeout", "2h",
		"close a session with no client attached and no command running (or disconnected with a command) after this long",
		func(s *Settings) *time.Duration { return &s.IdleTimeout }),
	durationKey("MaxIdleTimeout", Unlimited,
		"upper bound for a per-session idle timeout asked for by a client",
		func(s *Settings) *time.Duration { return &s.MaxIdleTimeout }),
	durationKey("MaxShellRunTime", Unlimited,
		"close a session this long after it was opened",
		func(s *Settings) *time.Duration { return &s.MaxShellRunTime }),
	intKey("MaxConcurrentUsers", "10",
		"distinct users with open sessions (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxConcurrentUsers }),
	intKey("MaxShellsPerUser", "30",
		"open sessions per user (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxShellsPerUser }),
	intKey("MaxConnections", "300",
		"concurrent client connections to the agent (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxConnections }),
	// 50: room for a fan-out at --throttle 256 (26 connections at 10
	// channels each) beside a few terminals and scripts, while one user
	// holds at most a sixth of the default MaxConnections.
	intKey("MaxConnectionsPerUser", "50",
		"concurrent client connections of one user (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxConnectionsPerUser }),
	intKey("MaxSessionsPerConnection", "10",
		"channels open at once on one connection, as OpenSSH's MaxSessions (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxSessionsPerConnection }),
	intKey("MaxProcessesPerShell", "25",
		"processes alive at once in one session (0 or unlimited: no limit)", true, 1, math.MaxInt32,
		func(s *Settings) *int { return &s.MaxProcessesPerShell }),
	intKey("MaxMemoryPerShellMB", "1024",
		"memory in MiB of all processes of one session (0 or unlimited: no limit)", true, 1, maxMB,
		func(s *Settings) *int { return &s.MaxMemoryPerShellMB }),
	{Name: "OutputBufferingMode", Default: BufferBlock, Kind: KindEnum,
		Help:    "when a disconnected session's journal is full: block its output, or drop the oldest output",
		Allowed: []string{BufferBlock, BufferDrop},
		get:     func(s *Settings) string { return s.OutputBufferingMode },
		set:     func(s *Settings, v string) { s.OutputBufferingMode = v },
	},
	intKey("MaxOutputBufferMB", "64",
		"output journal size in MiB per session (at least 1)", false, 1, maxMB,
		func(s *Settings) *int { return &s.MaxOutputBufferMB }),
	{Name: "DefaultShell", Default: defaultShell(), Kind: KindEnum,
		Help:    "the shell of a new session that does not ask for one (tether new --shell): the host's bash, or the builtin interpreter",
		Allowed: []string{ShellBash, ShellBuiltin},
		get:     func(s *Settings) string { return s.DefaultShell },
		set:     func(s *Settings, v string) { s.DefaultShell = v },
	},
}

var byLower = func() map[string]int {
	m := make(map[string]int, len(keys))
	for i, k := range keys {
		m[strings.ToLower(k.Name)] = i
	}
	return m
}()

// Defaults returns the built-in values.
func Defaults() Settings {
	var s Settings
	for _, k := range keys {
		k.set(&s, k.Default)
	}
	return s
}

// Keys returns the settings in the table's order.
func Keys() []Key {
	out := make([]Key, len(keys))
	copy(out, keys)
	for i := range out {
		out[i].Allowed = append([]string(nil), keys[i].Allowed...)
	}
	return out
}

// Names returns the canonical setting names in the table's order.
func Names() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}

// Lookup finds a setting by name, case-insensitively. The returned Key carries
// the canonical name. When ok is false, [Names] lists the valid names and
// [UnknownKeyError] suggests close ones.
func Lookup(name string) (Key, bool) {
	i, ok := byLower[lower(name)]
	if !ok {
		return Key{}, false
	}
	k := keys[i]
	k.Allowed = append([]string(nil), k.Allowed...)
	return k, true
}

func lower(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// Value returns the normalized value of key in s ("" for an unknown key).
func (s Settings) Value(key string) string {
	i, ok := byLower[lower(key)]
	if !ok {
		return ""
	}
	return keys[i].get(&s)
}

// ErrUnknownKey is wrapped by errors about a setting name that does not exist.
var ErrUnknownKey = errors.New("unknown setting")

// UnknownKeyError is returned for a setting name that does not exist.
type UnknownKeyError struct {
	Name    string
	Similar []string // close valid names, best first; empty if none is close
}

func (e *UnknownKeyError) Error() string {
	if len(e.Similar) > 0 {
		return fmt.Sprintf("unknown setting %q (did you mean %s?)", e.Name, strings.Join(e.Similar, " or "))
	}
	return fmt.Sprintf("unknown setting %q (valid settings: %s)", e.Name, strings.Join(Names(), ", "))
}

// Unwrap lets errors.Is(err, ErrUnknownKey) match.
func (e *UnknownKeyError) Unwrap() error { return ErrUnknownKey }

func unknownKey(name string) *UnknownKeyError {
	e := &UnknownKeyError{Name: name}
	low := strings.ToLower(strings.TrimSpace(name))
	type cand struct {
		name string
		dist int
	}
	var cs []cand
	for _, k := range keys {
		kl := strings.ToLower(k.Name)
		d := editDistance(low, kl)
		limit := max(2, len(kl)/4)
		if d <= limit || (len(low) >= 4 && strings.Contains(kl, low)) {
			cs = append(cs, cand{k.Name, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].dist < cs[j].dist })
	for i, c := range cs {
		if i == 3 {
			break
		}
		e.Similar = append(e.Similar, c.name)
	}
	return e
}

// editDistance is the Levenshtein distance of a and b, in bytes. Inputs are
// capped so a hostile name cannot cost much.
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ValueError is returned for a value a setting does not accept.
type ValueError struct {
	Key    string // canonical name
	Value  string // as given
	Reason string // e.g. `is not a duration (use ...)`
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("%s: %q %s", e.Key, e.Value, e.Reason)
}

// Validate checks value for the setting name (matched case-insensitively) and
// returns the canonical name and the normalized value: "true"/"false" for
// booleans; durations in short Go syntax ("2h", "1h30m", "90s" becomes
// "1m30s") or "unlimited"; integers in decimal or "unlimited"; enum values in
// lower case. Surrounding spaces are ignored.
//
// Errors are *UnknownKeyError or *ValueError, with messages meant for people.
func Validate(name, value string) (canonical string, normalized string, err error) {
	i, ok := byLower[lower(name)]
	if !ok {
		return "", "", unknownKey(name)
	}
	k := &keys[i]
	norm, reason := k.normalize(value)
	if reason != "" {
		return k.Name, "", &ValueError{Key: k.Name, Value: value, Reason: reason}
	}
	return k.Name, norm, nil
}

// normalize returns the normalized form of v, or a reason it is invalid.
func (k *Key) normalize(v string) (string, string) {
	t := strings.TrimSpace(v)
	low := strings.ToLower(t)
	switch k.Kind {
	case KindBool:
		switch low {
		case "true", "yes", "on", "1":
			return "true", ""
		case "false", "no", "off", "0":
			return "false", ""
		}
		return "", "is not a boolean (use true or false)"

	case KindDuration:
		const use = `(use Go syntax like 90s, 30m, 2h, or "unlimited")`
		if low == Unlimited {
			return Unlimited, ""
		}
		d, err := time.ParseDuration(t)
		if err != nil {
			return "", "is not a duration " + use
		}
		switch {
		case d < 0:
			return "", `is negative (use "unlimited" for no limit)`
		case d > 0 && d < minDuration:
			return "", "is too short (minimum " + FormatDuration(minDuration) + `, or "unlimited")`
		}
		return FormatDuration(d), ""

	case KindInt:
		if k.Unlimited && low == Unlimited {
			return Unlimited, ""
		}
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return "", fmt.Sprintf("is too large (maximum %d)", k.Max)
			}
			if k.Unlimited {
				return "", `is not a whole number (use e.g. ` + k.Default + `, or 0 or "unlimited" for no limit)`
			}
			return "", "is not a whole number (use e.g. " + k.Default + ")"
		}
		switch {
		case n < 0 && k.Unlimited:
			return "", `is negative (use 0 or "unlimited" for no limit)`
		case n < 0:
			return "", fmt.Sprintf("is negative (minimum %d)", k.Min)
		case n == 0 && k.Unlimited:
			return Unlimited, ""
		case n < int64(k.Min):
			return "", fmt.Sprintf("is too small (minimum %d)", k.Min)
		case n > int64(k.Max):
			return "", fmt.Sprintf("is too large (maximum %d)", k.Max)
		}
		return strconv.FormatInt(n, 10), ""

	case KindEnum:
		for _, a := range k.Allowed {
			if low == a {
				return a, ""
			}
		}
		return "", "is not allowed (use one of: " + strings.Join(k.Allowed, ", ") + ")"
	}
	return "", "has an unknown kind"
}

func mustDuration(v string) time.Duration {
	if v == Unlimited {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic("config: unnormalized duration " + strconv.Quote(v))
	}
	return d
}

// FormatDuration formats d the short way: "2h", "1h30m", "1m30s", "500ms",
// and 0 as "unlimited".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return Unlimited
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
