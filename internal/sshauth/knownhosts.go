package sshauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tether-sh/tether/internal/atomicfile"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"
)

// DefaultPort is the Tether agent's default TCP port. A host on this port is
// written to known_hosts bare ("example.com"), any other port bracketed
// ("[example.com]:2222"), as OpenSSH does for port 22.
const DefaultPort = 4422

// KnownHosts checks host keys against an OpenSSH-format known_hosts file,
// trusting a host on first use.
//
// The file is read afresh on every check, so edits by the user or by other
// Tether processes are seen. Hashed (|1|...) entries, @cert-authority and
// @revoked markers are handled by golang.org/x/crypto/ssh/knownhosts.
//
// A host that is not in the file has its key appended (the file and its
// directory are created 0600 and 0700 as needed); appends are serialised
// across goroutines and, with flock(2), across processes. A host whose key
// differs from the known one is refused with a *HostKeyChangedError.
//
// Note on port 22: x/crypto's matcher reads a bare entry as port 22, so
// Tether asks it about a default-port host as host:22. A Tether agent
// listening on port 22 (with DefaultPort left at 4422) therefore shares the
// bare entries of default-port hosts; its own entries are written "[host]:22".
type KnownHosts struct {
	// Path is the known_hosts file.
	Path string
	// DefaultPort is the port written bare; 0 means DefaultPort (4422).
	DefaultPort int
	// Notify, when set, gets one line for each host added to the file.
	Notify io.Writer
	// RefuseUnknown refuses hosts that are not in the file instead of
	// adding them (StrictHostKeyChecking=yes).
	RefuseUnknown bool
	// HashHosts writes added host names hashed (HashKnownHosts=yes).
	HashHosts bool
}

// HostKeyChangedError is returned for a host whose key is not the one in the
// known_hosts file.
type HostKeyChangedError struct {
	// Host is the host as written in known_hosts: "example.com" or
	// "[127.0.0.1]:4423".
	Host string
	// File and Line locate the known entry.
	File string
	Line int
	// Offered is the key the host presented; Known the one on file.
	Offered ssh.PublicKey
	Known   ssh.PublicKey
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key for %s has changed (offered %s, known one in %s:%d); if the host was reinstalled, remove that line",
		e.Host, Fingerprint(e.Offered), e.File, e.Line)
}

// HostKeyRevokedError is returned for a host key marked @revoked.
type HostKeyRevokedError struct {
	Host    string
	File    string
	Line    int
	Offered ssh.PublicKey
}

func (e *HostKeyRevokedError) Error() string {
	return fmt.Sprintf("host key for %s (%s) is revoked in %s:%d", e.Host, Fingerprint(e.Offered), e.File, e.Line)
}

// HostUnknownError is returned for a host not in the file when RefuseUnknown
// is set.
type HostUnknownError struct {
	Host    string
	File    string
	Offered ssh.PublicKey
}

func (e *HostUnknownError) Error() string {
	return fmt.Sprintf("host %s is not in %s (offered %s) and unknown hosts are refused", e.Host, e.File, Fingerprint(e.Offered))
}

func (k *KnownHosts) defaultPort() string {
	if k.DefaultPort > 0 {
		return strconv.Itoa(k.DefaultPort)
	}
	return strconv.Itoa(DefaultPort)
}

// names returns the host as written in the file and the host:port to ask
// x/crypto's matcher about (the default port mapped to 22, which that
// matcher takes a bare entry to mean).
func (k *KnownHosts) names(hostport string) (name, query string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, k.defaultPort()
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if port == k.defaultPort() {
		return host, net.JoinHostPort(host, "22")
	}
	return "[" + host + "]:" + port, net.JoinHostPort(host, port)
}

// validHostPort refuses host names that cannot be written to known_hosts as a
// plain entry for exactly that host: empty, with whitespace or control
// characters, with pattern syntax (* ? ! , [ ]) that would make the entry
// match other hosts, or with a marker/hash/comment prefix; and ports that
// are not a number in 1-65535.
func validHostPort(query string) error {
	host, port, err := net.SplitHostPort(query)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host name")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("bad port %q", port)
	}
	switch host[0] {
	case '@', '|', '#':
		return errors.New("host name starts with a known_hosts marker")
	}
	for _, r := range host {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("*?!,[]\"", r) {
			return fmt.Errorf("character %q not allowed in a host name", r)
		}
	}
	return nil
}

// HostKeyCallback returns the callback for ssh.ClientConfig.HostKeyCallback.
// It prefers the host name the client dialled; it falls back to the remote
// address when that has no port.
func (k *KnownHosts) HostKeyCallback() ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		hp := hostname
		if _, _, err := net.SplitHostPort(hp); err != nil && remote != nil {
			if _, _, err := net.SplitHostPort(remote.String()); err == nil {
				hp = remote.String()
			}
		}
		return k.check(hp, remote, key)
	}
}

var placeholderRemote = &net.TCPAddr{IP: net.IPv4zero}

func (k *KnownHosts) check(hostport string, remote net.Addr, key ssh.PublicKey) error {
	if key == nil {
		return errors.New("known hosts: no host key")
	}
	if remote == nil {
		remote = placeholderRemote
	}
	name, query := k.names(hostport)
	if err := validHostPort(query); err != nil {
		return fmt.Errorf("known hosts: host %q: %w", hostport, err)
	}
	err := k.lookup(name, query, remote, key)
	var unknown *HostUnknownError
	if !errors.As(err, &unknown) {
		return err
	}
	if k.RefuseUnknown {
		return err
	}
	return k.addUnknown(name, query, remote, key)
}

// lookup checks key; it returns nil, a *HostUnknownError, or a refusal.
func (k *KnownHosts) lookup(name, query string, remote net.Addr, key ssh.PublicKey) error {
	cb, err := knownhosts.New(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &HostUnknownError{Host: name, File: k.Path, Offered: key}
	}
	if err != nil {
		return fmt.Errorf("known hosts %s: %w", k.Path, err)
	}
	err = cb(query, remote, key)
	if err == nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if errors.As(err, &keyErr) {
		if len(keyErr.Want) == 0 {
			return &HostUnknownError{Host: name, File: k.Path, Offered: key}
		}
		// Name the known key of the offered type if there is one: that is
		// the line the user must look at.
		want := keyErr.Want[0]
		for _, w := range keyErr.Want {
			if w.Key != nil && w.Key.Type() == key.Type() {
				want = w
				break
			}
		}
		return &HostKeyChangedError{Host: name, File: want.Filename, Line: want.Line, Offered: key, Known: want.Key}
	}
	var revErr *knownhosts.RevokedError
	if errors.As(err, &revErr) {
		return &HostKeyRevokedError{Host: name, File: revErr.Revoked.Filename, Line: revErr.Revoked.Line, Offered: key}
	}
	return fmt.Errorf("known hosts %s: host %s: %w", k.Path, name, err)
}

// pathLocks serialises appends within the process (flock does it across
// processes, but would park one OS thread per waiting goroutine).
var pathLocks sync.Map // cleaned path -> *sync.Mutex

func lockFor(path string) *sync.Mutex {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	m, _ := pathLocks.LoadOrStore(path, new(sync.Mutex))
	return m.(*sync.Mutex)
}

func (k *KnownHosts) addUnknown(name, query string, remote net.Addr, key ssh.PublicKey) error {
	mu := lockFor(k.Path)
	mu.Lock()
	defer mu.Unlock()

	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	f, err := os.OpenFile(k.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("known hosts %s: lock: %w", k.Path, err)
	}
	defer flock(f, unix.LOCK_UN)

	// Another goroutine or process may have added the host meanwhile.
	err = k.lookup(name, query, remote, key)
	var unknown *HostUnknownError
	if !errors.As(err, &unknown) {
		return err
	}

	host := name
	if k.HashHosts {
		host = knownhosts.HashHostname(name)
	}
	line := host + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("known hosts %s: %w", k.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("known hosts %s: %w", k.Path, err)
	}
	if k.Notify != nil {
		fmt.Fprintf(k.Notify, "tether: permanently added '%s' (%s) to the list of known hosts (%s)\n", name, Fingerprint(key), k.Path)
	}
	return nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

var (
	probeOnce sync.Once
	probeKey  ssh.PublicKey
)

// HostKeyAlgorithms returns the host key algorithms to ask hostport for:
// those of the keys already known for it first, then the others x/crypto
// supports, so that a host with several key types is asked for the one on
// file (no false "changed"), while a host that now has only another type
// still reaches the callback and gets a clear "changed" error. It returns
// nil when no key is known for the host; use it for
// ssh.ClientConfig.HostKeyAlgorithms.
func (k *KnownHosts) HostKeyAlgorithms(hostport string) []string {
	probeOnce.Do(func() {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err == nil {
			probeKey, _ = ssh.NewPublicKey(pub)
		}
	})
	if probeKey == nil {
		return nil
	}
	cb, err := knownhosts.New(k.Path)
	if err != nil {
		return nil
	}
	_, query := k.names(hostport)
	var keyErr *knownhosts.KeyError
	if err := cb(query, placeholderRemote, probeKey); !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		return nil
	}
	supported := ssh.SupportedAlgorithms().HostKeys
	var algos []string
	for _, w := range keyErr.Want {
		if w.Key == nil {
			continue
		}
		for _, a := range algorithmsForKeyType(w.Key.Type()) {
			if !slices.Contains(algos, a) && slices.Contains(supported, a) {
				algos = append(algos, a)
			}
		}
	}
	if len(algos) == 0 {
		return nil
	}
	for _, a := range supported {
		if !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

func algorithmsForKeyType(t string) []string {
	switch t {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	}
	return []string{t}
}

// Fingerprint formats a key as OpenSSH shows it: "ED25519 SHA256:...".
func Fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return "(no key)"
	}
	return keyTypeLabel(k.Type()) + " " + ssh.FingerprintSHA256(k)
}

func keyTypeLabel(t string) string {
	suffix := ""
	if base, ok := strings.CutSuffix(t, "-cert-v01@openssh.com"); ok {
		t, suffix = base, "-CERT"
	}
	var label string
	switch {
	case t == ssh.KeyAlgoED25519:
		label = "ED25519"
	case t == ssh.KeyAlgoSKED25519:
		label = "ED25519-SK"
	case t == ssh.KeyAlgoRSA:
		label = "RSA"
	case t == ssh.KeyAlgoDSA:
		label = "DSA"
	case t == ssh.KeyAlgoSKECDSA256:
		label = "ECDSA-SK"
	case strings.HasPrefix(t, "ecdsa-sha2-"):
		label = "ECDSA"
	case strings.HasPrefix(t, "sk-ssh-ed25519"):
		label = "ED25519-SK"
	case strings.HasPrefix(t, "sk-ecdsa"):
		label = "ECDSA-SK"
	default:
		label = strings.ToUpper(t)
	}
	return label + suffix
}

// Removed is one line Remove took out of the file.
type Removed struct {
	Line int    // 1-based, in the file as it was
	Text string // the line
}

// Remove deletes every key of hostport from the file, as ssh-keygen -R
// does: lines whose host list names the host (plainly or hashed) go, the
// whole line even when it also names other hosts; comments, blank lines,
// @cert-authority and @revoked lines and other hosts' lines stay byte for
// byte. Entries that match only through a pattern (*, ?) are kept. The
// file is replaced atomically (temporary file, fsync, rename, same mode),
// under the lock appends take; the old contents are kept in FILE.old.
// It returns the lines removed; none is not an error.
func (k *KnownHosts) Remove(hostport string) ([]Removed, error) {
	name, query := k.names(hostport)
	if err := validHostPort(query); err != nil {
		return nil, fmt.Errorf("known hosts: host %q: %w", hostport, err)
	}
	mu := lockFor(k.Path)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(k.Path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("known hosts %s: lock: %w", k.Path, err)
	}
	defer flock(f, unix.LOCK_UN)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("known hosts %s: %w", k.Path, err)
	}
	var kept []byte
	var removed []Removed
	rest := old
	for n := 1; len(rest) > 0; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if lineNamesHost(strings.TrimRight(string(line), "\r\n"), name) {
			removed = append(removed, Removed{Line: n, Text: strings.TrimRight(string(line), "\r\n")})
			continue
		}
		kept = append(kept, line...)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	if err := atomicfile.WriteFile(k.Path+".old", old, fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("known hosts: keep the old file: %w", err)
	}
	if err := atomicfile.WriteFile(k.Path, kept, fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	return removed, nil
}

// lineNamesHost reports whether a known_hosts line is a plain key line
// (no marker) whose host list has name, plainly or hashed.
func lineNamesHost(line, name string) bool {
	fields := strings.Fields(line)
	if len(fields) < 3 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "@") {
		return false
	}
	for _, p := range strings.Split(fields[0], ",") {
		if strings.HasPrefix(p, "|1|") {
			if hashedMatch(p, name) {
				return true
			}
			continue
		}
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// hashedMatch checks name against a |1|SALT|HASH entry (HMAC-SHA1 of the
// name keyed with the salt, as OpenSSH's HashKnownHosts writes them).
func hashedMatch(entry, name string) bool {
	parts := strings.Split(entry, "|")
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	want, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(name))
	return hmac.Equal(mac.Sum(nil), want)
}
