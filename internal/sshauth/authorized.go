package sshauth

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/safefs"
)

// UserInfo describes the local account whose authorized keys are checked.
type UserInfo struct {
	Name   string
	Home   string
	UID    int
	GID    int
	Groups []int // supplementary groups, for reading the file as the user
}

// readTimeout bounds the read of an authorized_keys file (a home on a
// stuck network file system must not hold a login attempt forever).
const readTimeout = 5 * time.Second

// AuthorizedKey is one usable line of an authorized_keys file.
type AuthorizedKey struct {
	Key     ssh.PublicKey
	Comment string
	// Options are the line's options as written, e.g. `restrict` or
	// `from="10.0.0.0/8"`.
	Options []string
	// Line is the 1-based line number in the file.
	Line int
}

// maxAuthorizedKeysSize bounds how much of an authorized_keys file is read.
const maxAuthorizedKeysSize = 4 << 20

// ExpandPattern expands sshd's tokens in an AuthorizedKeysFile pattern:
// %h the home directory, %u the user name, %U the numeric uid and %% a
// percent sign; a leading "~/" also means the home directory. An unknown
// token is left as written. A relative result is taken relative to the
// home directory, as sshd does.
func ExpandPattern(pattern string, u UserInfo) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' || i+1 == len(pattern) {
			b.WriteByte(c)
			continue
		}
		i++
		switch pattern[i] {
		case 'h':
			b.WriteString(u.Home)
		case 'u':
			b.WriteString(u.Name)
		case 'U':
			b.WriteString(strconv.Itoa(u.UID))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(pattern[i])
		}
	}
	p := b.String()
	if p == "~" {
		p = u.Home
	} else if strings.HasPrefix(p, "~/") {
		p = filepath.Join(u.Home, p[2:])
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(u.Home, p)
	}
	return filepath.Clean(p)
}

// AuthorizedKeys reads the user's authorized keys file named by pattern (see
// ExpandPattern), checking it the way sshd's StrictModes does: the file must
// be a regular file, and it and every directory from it up to the home
// directory (the home directory included; up to / for a file outside it)
// must be owned by the user or root and not be group- or world-writable.
// Otherwise the error names the path and the reason, for the agent's log.
// A missing file gives an error wrapping fs.ErrNotExist.
//
// The file is read as the user, as sshd does: a process running as root
// reads it (and checks every directory) on a thread with the user's
// file-system rights (safefs.AsUser), so a symlink to a file only root can
// read is refused with permission denied.
//
// Lines that do not parse are skipped; ReadAuthorizedKeys also returns them.
func AuthorizedKeys(pattern string, u UserInfo) (keys []AuthorizedKey, path string, err error) {
	keys, path, _, err = ReadAuthorizedKeys(pattern, u)
	return keys, path, err
}

// ReadAuthorizedKeys is AuthorizedKeys that also returns the errors of the
// lines it skipped, each naming the file and line.
func ReadAuthorizedKeys(pattern string, u UserInfo) (keys []AuthorizedKey, path string, lineErrs []error, err error) {
	path = ExpandPattern(pattern, u)
	var data []byte
	if os.Geteuid() == 0 && u.UID != 0 {
		err = safefs.AsUser(safefs.Cred{UID: u.UID, GID: u.GID, Groups: u.Groups}, readTimeout, func() (err error) {
			data, err = readStrict(path, u)
			return err
		})
	} else {
		data, err = readStrict(path, u)
	}
	if err != nil {
		return nil, path, nil, err
	}
	keys, errs := ParseAuthorizedKeys(data)
	for _, e := range errs {
		lineErrs = append(lineErrs, fmt.Errorf("%s: %w", path, e))
	}
	return keys, path, lineErrs, nil
}

// readStrict opens path and applies the StrictModes checks to it.
func readStrict(path string, u UserInfo) ([]byte, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("authorized keys: %w", err)
	}
	// O_NONBLOCK so that a FIFO planted there cannot hang the agent; the
	// regular-file check below then refuses it.
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("authorized keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("authorized keys: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("authorized keys: refusing %s: not a regular file", real)
	}
	if why := badOwnerOrMode(fi, u); why != "" {
		return nil, fmt.Errorf("authorized keys: refusing %s: bad ownership or modes for file: %s", real, why)
	}

	home := filepath.Clean(u.Home)
	if h, err := filepath.EvalSymlinks(home); err == nil {
		home = h
	}
	underHome := home != "" && (real == home || strings.HasPrefix(real, strings.TrimSuffix(home, "/")+"/"))
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("authorized keys: refusing %s: directory %s: %w", real, dir, err)
		}
		if why := badOwnerOrMode(di, u); why != "" {
			return nil, fmt.Errorf("authorized keys: refusing %s: bad ownership or modes for directory %s: %s", real, dir, why)
		}
		if underHome && dir == home {
			break
		}
		if dir == "/" || dir == "." || dir == filepath.Dir(dir) {
			break
		}
	}

	data, err := readLimited(f, maxAuthorizedKeysSize)
	if err != nil {
		return nil, fmt.Errorf("authorized keys %s: %w", real, err)
	}
	return data, nil
}

// badOwnerOrMode says why fi fails sshd's ownership and mode rule, or "".
func badOwnerOrMode(fi fs.FileInfo, u UserInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "cannot read owner"
	}
	if uid := int(st.Uid); uid != 0 && uid != u.UID {
		return fmt.Sprintf("owned by uid %d, not by %s (uid %d) or root", uid, u.Name, u.UID)
	}
	perm := fi.Mode().Perm()
	switch {
	case perm&0o002 != 0:
		return fmt.Sprintf("world-writable (mode %04o)", perm)
	case perm&0o020 != 0:
		return fmt.Sprintf("group-writable (mode %04o)", perm)
	}
	return ""
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file larger than %d bytes", limit)
	}
	return data, nil
}

// ParseAuthorizedKeys parses the content of an authorized_keys file. Blank
// lines and # comments are skipped; options (from=, restrict, ...) are kept
// in each key's Options. A line that does not parse is skipped and reported
// in the returned errors with its line number.
func ParseAuthorizedKeys(data []byte) ([]AuthorizedKey, []error) {
	var keys []AuthorizedKey
	var errs []error
	for n := 1; len(data) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, comment, options, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			// Cannot happen for a single line; be safe anyway.
			errs = append(errs, fmt.Errorf("line %d: trailing data", n))
			continue
		}
		if err := checkOptions(options); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		keys = append(keys, AuthorizedKey{Key: key, Comment: comment, Options: options, Line: n})
	}
	return keys, errs
}

// Options that only restrict features Tether does not offer, or that relax
// such restrictions, and so need no enforcement here. no-pty and restrict are
// among them: the caller can read them from the matched key.
var harmlessOptions = map[string]bool{
	"restrict": true, "no-pty": true, "pty": true,
	"no-port-forwarding": true, "port-forwarding": true,
	"no-agent-forwarding": true, "agent-forwarding": true,
	"no-x11-forwarding": true, "x11-forwarding": true,
	"no-user-rc": true, "user-rc": true,
	"permitopen": true, "permitlisten": true, "environment": true, "tunnel": true,
	"no-touch-required": true, "verify-required": true,
}

// Options that restrict who may use the key in a way Tether must honour or,
// where it cannot, refuse the key for.
var restrictingOptions = map[string]bool{
	"from": true, "expiry-time": true, "command": true,
	"cert-authority": true, "principals": true,
}

func splitOption(opt string) (name, value string, hasValue bool) {
	name, value, hasValue = strings.Cut(opt, "=")
	name = strings.ToLower(name)
	if hasValue && len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = strings.ReplaceAll(value[1:len(value)-1], `\"`, `"`)
	}
	return name, value, hasValue
}

// checkOptions refuses a line whose options sshd would not know, as sshd
// skips such lines ("bad options").
func checkOptions(options []string) error {
	for _, o := range options {
		name, value, _ := splitOption(o)
		if !harmlessOptions[name] && !restrictingOptions[name] {
			return fmt.Errorf("unknown option %q", name)
		}
		switch name {
		case "expiry-time":
			if _, err := parseExpiry(value); err != nil {
				return fmt.Errorf("bad expiry-time %q", value)
			}
		case "from":
			if _, err := matchFrom(value, netip.IPv4Unspecified()); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrKeyNotAuthorized is returned by MatchKey when no line has the key.
var ErrKeyNotAuthorized = errors.New("key not in authorized keys")

// KeyAllowed reports whether offered is one of keys, on a line whose options
// do not forbid it. Keys are compared in constant time on their wire
// encoding. A line with from= is not allowed here (no address is known:
// use MatchKey); nor is a command= line, whose forced command a Tether
// session cannot honour, nor a cert-authority or principals= line, nor one
// past its expiry-time.
func KeyAllowed(keys []AuthorizedKey, offered ssh.PublicKey) bool {
	k, err := MatchKey(keys, offered, nil, time.Now())
	return k != nil && err == nil
}

// MatchKey finds the line that authorises offered for a client at remote
// (nil when unknown) at time now. It returns that line, or an error saying
// why not: ErrKeyNotAuthorized when no line has the key, otherwise the reason
// the first line with it was refused.
func MatchKey(keys []AuthorizedKey, offered ssh.PublicKey, remote net.Addr, now time.Time) (*AuthorizedKey, error) {
	if offered == nil {
		return nil, ErrKeyNotAuthorized
	}
	want := offered.Marshal()
	var firstRefusal error
	var found *AuthorizedKey
	for i := range keys {
		k := &keys[i]
		if k.Key == nil {
			continue
		}
		got := k.Key.Marshal()
		// ConstantTimeCompare returns at once on a length mismatch, which
		// only tells the key type; the content is compared in full.
		if subtle.ConstantTimeCompare(got, want) != 1 {
			continue
		}
		if err := optionsPermit(k.Options, remote, now); err != nil {
			if firstRefusal == nil {
				firstRefusal = fmt.Errorf("authorized key on line %d refused: %w", k.Line, err)
			}
			continue
		}
		if found == nil {
			found = k
		}
	}
	if found != nil {
		return found, nil
	}
	if firstRefusal != nil {
		return nil, firstRefusal
	}
	return nil, ErrKeyNotAuthorized
}

func optionsPermit(options []string, remote net.Addr, now time.Time) error {
	for _, o := range options {
		name, value, _ := splitOption(o)
		switch {
		case name == "command":
			return errors.New("command= forces a command, which a Tether session cannot honour")
		case name == "cert-authority":
			return errors.New("cert-authority lines authorise certificates, which Tether does not accept")
		case name == "principals":
			return errors.New("principals= applies to certificates, which Tether does not accept")
		case name == "expiry-time":
			t, err := parseExpiry(value)
			if err != nil {
				return fmt.Errorf("bad expiry-time %q", value)
			}
			if !now.Before(t) {
				return fmt.Errorf("key expired at %s", t.Format(time.RFC3339))
			}
		case name == "from":
			ip, ok := remoteIP(remote)
			if !ok {
				return errors.New("from= is set and the client address is unknown")
			}
			okFrom, err := matchFrom(value, ip)
			if err != nil {
				return err
			}
			if !okFrom {
				return fmt.Errorf("client address %s does not match from=%q", ip, value)
			}
		case harmlessOptions[name]:
		default:
			return fmt.Errorf("unknown option %q", name)
		}
	}
	return nil
}

func remoteIP(a net.Addr) (netip.Addr, bool) {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	case nil:
		return netip.Addr{}, false
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = net.ParseIP(host)
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// matchFrom applies an sshd from= pattern list to ip, without DNS (as sshd
// with UseDNS no): comma-separated wildcard patterns (* and ?) or CIDR
// blocks, each optionally negated with !. A negated match refuses outright.
func matchFrom(list string, ip netip.Addr) (bool, error) {
	s := ip.String()
	matched := false
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		negate := strings.HasPrefix(p, "!")
		if negate {
			p = p[1:]
		}
		if p == "" {
			return false, fmt.Errorf("empty pattern in from=%q", list)
		}
		var m bool
		if strings.Contains(p, "/") {
			prefix, err := netip.ParsePrefix(p)
			if err != nil {
				return false, fmt.Errorf("bad CIDR %q in from=", p)
			}
			m = prefix.Contains(ip)
		} else {
			m = wildcardMatch(strings.ToLower(p), strings.ToLower(s))
		}
		if m && negate {
			return false, nil
		}
		matched = matched || m
	}
	return matched, nil
}

// wildcardMatch matches s against pattern with * and ? wildcards.
func wildcardMatch(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// parseExpiry parses sshd's expiry-time: YYYYMMDD[HHMM[SS]], local time, or
// UTC with a trailing Z.
func parseExpiry(v string) (time.Time, error) {
	loc := time.Local
	if strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z") {
		loc = time.UTC
		v = v[:len(v)-1]
	}
	var layout string
	switch len(v) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, errors.New("bad length")
	}
	return time.ParseInLocation(layout, v, loc)
}
