package sshauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKnownHostsTrustOnFirstUse(t *testing.T) {
	hostKey, _ := newEd25519(t)
	srv := startServer(t, nil, hostKey)
	path := filepath.Join(t.TempDir(), "tether", "known_hosts")
	var notify bytes.Buffer
	kh := &KnownHosts{Path: path, Notify: &notify}

	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()}); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	name := fmt.Sprintf("[127.0.0.1]:%d", srv.port)
	want := fmt.Sprintf("tether: permanently added '%s' (%s) to the list of known hosts (%s)\n", name, Fingerprint(hostKey.PublicKey()), path)
	if notify.String() != want {
		t.Errorf("notify = %q\nwant %q", notify.String(), want)
	}
	if !strings.HasPrefix(Fingerprint(hostKey.PublicKey()), "ED25519 SHA256:") {
		t.Errorf("fingerprint %q", Fingerprint(hostKey.PublicKey()))
	}
	content := readFile(t, path)
	wantLine := name + " " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	if content != wantLine {
		t.Errorf("known_hosts = %q\nwant %q", content, wantLine)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", di.Mode())
	}

	// Second contact: silent, file unchanged.
	notify.Reset()
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()}); err != nil {
		t.Fatalf("second contact: %v", err)
	}
	if notify.Len() != 0 {
		t.Errorf("second contact notified: %q", notify.String())
	}
	if got := readFile(t, path); got != content {
		t.Errorf("file changed on second contact: %q", got)
	}
}

func TestKnownHostsChangedKeyRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "known_hosts")
	oldKey, _ := newEd25519(t)
	newKey, _ := newEd25519(t)
	srv := startServer(t, nil, newKey)
	name := fmt.Sprintf("[127.0.0.1]:%d", srv.port)
	// The host's entry on line 3, after a comment and another host.
	other, _ := newEd25519(t)
	content := "# my hosts\n" +
		knownhosts.Line([]string{"other.example"}, other.PublicKey()) + "\n" +
		name + " " + string(ssh.MarshalAuthorizedKey(oldKey.PublicKey()))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var notify bytes.Buffer
	kh := &KnownHosts{Path: path, Notify: &notify}
	err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()})
	ce, ok := isChanged(err)
	if !ok {
		t.Fatalf("want HostKeyChangedError, got %v", err)
	}
	if ce.Host != name || ce.File != path || ce.Line != 3 {
		t.Errorf("error fields: %+v", ce)
	}
	if !bytes.Equal(ce.Offered.Marshal(), newKey.PublicKey().Marshal()) || !bytes.Equal(ce.Known.Marshal(), oldKey.PublicKey().Marshal()) {
		t.Errorf("offered/known keys wrong")
	}
	wantMsg := fmt.Sprintf("host key for %s has changed (offered %s, known one in %s:3); if the host was reinstalled, remove that line", name, Fingerprint(newKey.PublicKey()), path)
	if ce.Error() != wantMsg {
		t.Errorf("message %q\nwant %q", ce.Error(), wantMsg)
	}
	if !strings.Contains(err.Error(), path+":3") {
		t.Errorf("dial error lacks file:line: %v", err)
	}
	if readFile(t, path) != content || notify.Len() != 0 {
		t.Errorf("a changed key must not touch the file or notify")
	}
}

func TestKnownHostsDefaultPortWrittenBare(t *testing.T) {
	hostKey, _ := newEd25519(t)
	srv := startServer(t, nil, hostKey)
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh := &KnownHosts{Path: path, DefaultPort: srv.port}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()}); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "127.0.0.1 "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey())); got != want {
		t.Errorf("file %q, want %q", got, want)
	}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()}); err != nil {
		t.Fatalf("second contact: %v", err)
	}
	// The same file read with another default port: the bare entry is not
	// this host's, so it is added bracketed.
	kh2 := &KnownHosts{Path: path, DefaultPort: 1}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh2.HostKeyCallback()}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(readFile(t, path)), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], fmt.Sprintf("[127.0.0.1]:%d ", srv.port)) {
		t.Errorf("lines %q", lines)
	}
}

func TestKnownHostsNames(t *testing.T) {
	kh := &KnownHosts{}
	for _, tc := range []struct{ in, name, query string }{
		{"127.0.0.1:4422", "127.0.0.1", "127.0.0.1:22"},
		{"127.0.0.1:4423", "[127.0.0.1]:4423", "127.0.0.1:4423"},
		{"host.example", "host.example", "host.example:22"},
		{"[::1]:4422", "::1", "[::1]:22"},
		{"[::1]:22", "[::1]:22", "[::1]:22"},
	} {
		name, query := kh.names(tc.in)
		if name != tc.name || query != tc.query {
			t.Errorf("names(%q) = %q, %q; want %q, %q", tc.in, name, query, tc.name, tc.query)
		}
	}
}

func TestKnownHostsHashedEntries(t *testing.T) {
	hostKey, _ := newEd25519(t)
	srv := startServer(t, nil, hostKey)
	path := filepath.Join(t.TempDir(), "known_hosts")
	name := fmt.Sprintf("[127.0.0.1]:%d", srv.port)
	content := "|1|AAAAAAAAAAAAAAAAAAAAAAAAAAA=|AAAAAAAAAAAAAAAAAAAAAAAAAAA= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOQ8Lq5mIIwu8S+S3sB6o+6D3bMqu7X8zS1dj0XO4K4N\n" +
		knownhosts.HashHostname(name) + " " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var notify bytes.Buffer
	kh := &KnownHosts{Path: path, Notify: &notify}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()}); err != nil {
		t.Fatalf("hashed entry not matched: %v", err)
	}
	if notify.Len() != 0 || readFile(t, path) != content {
		t.Errorf("known hashed host was added again")
	}

	// A changed key against a hashed entry is refused with its line.
	newKey, _ := newEd25519(t)
	srv2 := startServer(t, nil, newKey)
	name2 := fmt.Sprintf("[127.0.0.1]:%d", srv2.port)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "%s %s", knownhosts.HashHostname(name2), ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	f.Close()
	err := dial(t, srv2.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()})
	if ce, ok := isChanged(err); !ok || ce.Line != 3 {
		t.Fatalf("want changed at line 3, got %v", err)
	}

	// Hashed bare entry for a default-port host; HashHosts writes hashed.
	path2 := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(path2, []byte(knownhosts.HashHostname("127.0.0.1")+" "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))), 0o600)
	kh2 := &KnownHosts{Path: path2, DefaultPort: srv.port, Notify: &notify}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh2.HostKeyCallback()}); err != nil || notify.Len() != 0 {
		t.Fatalf("hashed bare entry: %v %q", err, notify.String())
	}
	path3 := filepath.Join(t.TempDir(), "known_hosts")
	kh3 := &KnownHosts{Path: path3, HashHosts: true}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh3.HostKeyCallback()}); err != nil {
		t.Fatal(err)
	}
	if c := readFile(t, path3); !strings.HasPrefix(c, "|1|") || strings.Contains(c, "127.0.0.1") {
		t.Errorf("HashHosts wrote %q", c)
	}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh3.HostKeyCallback()}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(readFile(t, path3), "\n"); n != 1 {
		t.Errorf("hashed host added %d times", n)
	}
}

func TestKnownHostsHostKeyAlgorithms(t *testing.T) {
	edKey, _ := newEd25519(t)
	ecKey, _ := newECDSA(t)
	srv := startServer(t, nil, edKey, ecKey)
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh := &KnownHosts{Path: path}
	if algos := kh.HostKeyAlgorithms(srv.addr()); algos != nil {
		t.Errorf("no file: algos %v", algos)
	}
	name := fmt.Sprintf("[127.0.0.1]:%d", srv.port)
	os.WriteFile(path, []byte(name+" "+string(ssh.MarshalAuthorizedKey(edKey.PublicKey()))), 0o600)
	if algos := kh.HostKeyAlgorithms("127.0.0.1:1"); algos != nil {
		t.Errorf("unknown host: algos %v", algos)
	}
	algos := kh.HostKeyAlgorithms(srv.addr())
	if len(algos) == 0 || algos[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("algos %v", algos)
	}

	// x/crypto prefers ECDSA: without the hint the ecdsa key is offered and
	// looks like a change.
	err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()})
	if _, ok := isChanged(err); !ok {
		t.Fatalf("without HostKeyAlgorithms: want changed, got %v", err)
	}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback(), HostKeyAlgorithms: algos}); err != nil {
		t.Fatalf("with HostKeyAlgorithms: %v", err)
	}

	// RSA keys map to the SHA-2 signature algorithms.
	if got := algorithmsForKeyType(ssh.KeyAlgoRSA); got[0] != ssh.KeyAlgoRSASHA512 {
		t.Errorf("rsa algos %v", got)
	}
}

func TestKnownHostsRefuseUnknownAndRevoked(t *testing.T) {
	hostKey, _ := newEd25519(t)
	srv := startServer(t, nil, hostKey)
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh := &KnownHosts{Path: path, RefuseUnknown: true}
	err := dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()})
	var ue *HostUnknownError
	if !errors.As(err, &ue) {
		t.Fatalf("want HostUnknownError, got %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("RefuseUnknown created the file")
	}
	os.WriteFile(path, []byte("@revoked * "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))), 0o600)
	kh.RefuseUnknown = false
	err = dial(t, srv.addr(), &ssh.ClientConfig{HostKeyCallback: kh.HostKeyCallback()})
	var re *HostKeyRevokedError
	if !errors.As(err, &re) || re.Line != 1 {
		t.Fatalf("want HostKeyRevokedError, got %v", err)
	}
}

func TestKnownHostsBadFile(t *testing.T) {
	key, _ := newEd25519(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	// Only garbage: refused rather than trusting anything.
	os.WriteFile(path, []byte("this is not a known_hosts file\n"), 0o600)
	kh := &KnownHosts{Path: path}
	cb := kh.HostKeyCallback()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4422}
	if err := cb("127.0.0.1:4422", remote, key.PublicKey()); err == nil {
		t.Fatal("garbage-only file accepted")
	}
	// A bad line among good ones is skipped; an append after a last line
	// without newline starts a new line.
	other, _ := newEd25519(t)
	os.WriteFile(path, []byte("garbage\n"+knownhosts.Line([]string{"other.example"}, other.PublicKey())), 0o600)
	if err := cb("127.0.0.1:4422", remote, key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(readFile(t, path), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "127.0.0.1 ssh-ed25519 ") || lines[3] != "" {
		t.Errorf("lines %q", lines)
	}
	if err := cb("127.0.0.1:4422", remote, key.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

// checkWellFormed parses path line by line and returns the hosts, failing on
// any malformed line.
func checkWellFormed(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hosts := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		_, hs, _, _, rest, err := ssh.ParseKnownHosts(sc.Bytes())
		if err != nil || len(hs) != 1 || len(rest) != 0 {
			t.Fatalf("line %d malformed: %q (%v)", n, sc.Text(), err)
		}
		if hosts[hs[0]] {
			t.Errorf("host %s added twice", hs[0])
		}
		hosts[hs[0]] = true
	}
	return hosts
}

func TestKnownHostsConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "known_hosts")
	var notify syncBuffer
	kh := &KnownHosts{Path: path, Notify: &notify}
	cb := kh.HostKeyCallback()
	const n = 50
	keys := make([]ssh.PublicKey, n)
	for i := range keys {
		s, _ := newEd25519(t)
		keys[i] = s.PublicKey()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := fmt.Sprintf("host%02d.example:4422", i)
			// Each host twice at once: it must be added exactly once.
			var inner sync.WaitGroup
			for range 2 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					errs <- cb(host, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4422}, keys[i])
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	hosts := checkWellFormed(t, path)
	if len(hosts) != n {
		t.Errorf("%d hosts in file, want %d", len(hosts), n)
	}
	if got := strings.Count(notify.String(), "permanently added"); got != n {
		t.Errorf("%d notifications, want %d", got, n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKnownHostsHelperProcess appends hosts when run as a child of
// TestKnownHostsConcurrentProcesses.
func TestKnownHostsHelperProcess(t *testing.T) {
	path := os.Getenv("TETHER_SSHAUTH_KH_PATH")
	if path == "" {
		t.Skip("helper process only")
	}
	id := os.Getenv("TETHER_SSHAUTH_KH_ID")
	count, _ := strconv.Atoi(os.Getenv("TETHER_SSHAUTH_KH_COUNT"))
	cb := (&KnownHosts{Path: path}).HostKeyCallback()
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		s, _ := newEd25519(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every process also races on a shared host with its own key:
			// exactly one key may win, the others see "changed".
			shared := cb("shared.example:4422", &net.TCPAddr{}, s.PublicKey())
			if _, ok := isChanged(shared); shared != nil && !ok {
				t.Error(shared)
			}
			if err := cb(fmt.Sprintf("p%s-h%02d.example:4422", id, i), &net.TCPAddr{}, s.PublicKey()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestKnownHostsConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	const procs, count = 4, 25
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for p := 0; p < procs; p++ {
		cmd := exec.Command(exe, "-test.run=^TestKnownHostsHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"TETHER_SSHAUTH_KH_PATH="+path,
			"TETHER_SSHAUTH_KH_ID="+strconv.Itoa(p),
			"TETHER_SSHAUTH_KH_COUNT="+strconv.Itoa(count))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	hosts := checkWellFormed(t, path)
	if len(hosts) != procs*count+1 || !hosts["shared.example"] {
		t.Errorf("%d hosts in file, want %d", len(hosts), procs*count+1)
	}
}

func TestFingerprintLabels(t *testing.T) {
	for typ, want := range map[string]string{
		ssh.KeyAlgoED25519:                     "ED25519",
		ssh.KeyAlgoRSA:                         "RSA",
		ssh.KeyAlgoECDSA384:                    "ECDSA",
		ssh.KeyAlgoSKED25519:                   "ED25519-SK",
		ssh.KeyAlgoSKECDSA256:                  "ECDSA-SK",
		ssh.CertAlgoED25519v01:                 "ED25519-CERT",
		"ssh-mldsa-65@openssh.com-experiments": "SSH-MLDSA-65@OPENSSH.COM-EXPERIMENTS",
	} {
		if got := keyTypeLabel(typ); got != want {
			t.Errorf("label(%s) = %s, want %s", typ, got, want)
		}
	}
	if Fingerprint(nil) == "" {
		t.Error("nil key")
	}
}

func TestKnownHostsRefusesPatternHostNames(t *testing.T) {
	key, _ := newEd25519(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	cb := (&KnownHosts{Path: path}).HostKeyCallback()
	for _, hp := range []string{"*:4422", "*.example:4422", "a,b:4422", "!x:4422", "@revoked:4422", "|1|x:4422", "a b:4422", ":4422", "x:0", "x:port", "x:99999", "host\n:4422", "[a]b]:4422"} {
		if err := cb(hp, nil, key.PublicKey()); err == nil {
			t.Errorf("%q accepted", hp)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file written for refused names: %q", readFile(t, path))
	}
	for _, hp := range []string{"host.example:4422", "[fe80::1%eth0]:4423", "host.example"} {
		if err := cb(hp, nil, key.PublicKey()); err != nil {
			t.Errorf("%q: %v", hp, err)
		}
	}
}
