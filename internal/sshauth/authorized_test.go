package sshauth

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestExpandPattern(t *testing.T) {
	u := UserInfo{Name: "alice", Home: "/home/alice", UID: 1001, GID: 1001}
	for _, tc := range []struct{ pattern, want string }{
		{".ssh/authorized_keys", "/home/alice/.ssh/authorized_keys"},
		{"%h/.ssh/authorized_keys", "/home/alice/.ssh/authorized_keys"},
		{"/etc/ssh/keys/%u", "/etc/ssh/keys/alice"},
		{"/etc/ssh/keys/%U.keys", "/etc/ssh/keys/1001.keys"},
		{"%h/100%%/keys", "/home/alice/100%/keys"},
		{"keys-%u", "/home/alice/keys-alice"},
		{"~/.ssh/ak", "/home/alice/.ssh/ak"},
		{"/x/%z/%", "/x/%z/%"},
		{"%%h", "/home/alice/%h"},
		{"/a//b/../c", "/a/c"},
	} {
		if got := ExpandPattern(tc.pattern, u); got != tc.want {
			t.Errorf("ExpandPattern(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

const testUID = 4242

// strictHome lays out home/.ssh/authorized_keys owned by testUID with sshd's
// usual modes and returns the user.
func strictHome(t *testing.T, content string) (UserInfo, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	base := t.TempDir()
	// The file is read as the user: they must be able to reach their home.
	must(t, os.Chmod(filepath.Dir(base), 0o755))
	must(t, os.Chmod(base, 0o755))
	home := filepath.Join(base, "alice")
	ssh := filepath.Join(home, ".ssh")
	file := filepath.Join(ssh, "authorized_keys")
	must(t, os.MkdirAll(ssh, 0o700))
	must(t, os.WriteFile(file, []byte(content), 0o600))
	for _, p := range []string{home, ssh, file} {
		must(t, os.Chown(p, testUID, testUID))
	}
	must(t, os.Chmod(home, 0o755))
	must(t, os.Chmod(ssh, 0o700))
	must(t, os.Chmod(file, 0o600))
	return UserInfo{Name: "alice", Home: home, UID: testUID, GID: testUID}, file
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuthorizedKeysStrictModes(t *testing.T) {
	key, _ := newEd25519(t)
	line := string(ssh.MarshalAuthorizedKey(key.PublicKey()))
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, u UserInfo, file string)
		wantErr string // substring; "" = accepted
	}{
		{"ok", func(*testing.T, UserInfo, string) {}, ""},
		{"file owned by root, readable by the user", func(t *testing.T, u UserInfo, f string) {
			must(t, os.Chown(f, 0, 0))
			must(t, os.Chmod(f, 0o644))
		}, ""},
		// Read as the user, as sshd does: what only root can read is refused.
		{"file only root can read", func(t *testing.T, u UserInfo, f string) { must(t, os.Chown(f, 0, 0)) }, "permission denied"},
		{"symlink to a root-only file", func(t *testing.T, u UserInfo, f string) {
			secret := filepath.Join(t.TempDir(), "root-keys") // in a 0700 root directory
			must(t, os.WriteFile(secret, []byte(line), 0o600))
			must(t, os.Remove(f))
			must(t, os.Symlink(secret, f))
		}, "permission denied"},
		{"group-readable file", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(f, 0o644)) }, ""},
		{"group-writable file", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(f, 0o620)) }, "file: group-writable (mode 0620)"},
		{"world-writable file", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(f, 0o606)) }, "world-writable"},
		{"file owned by other user", func(t *testing.T, u UserInfo, f string) {
			must(t, os.Chown(f, 12345, 12345))
			must(t, os.Chmod(f, 0o644)) // readable: the owner check refuses it
		}, "owned by uid 12345, not by alice (uid 4242) or root"},
		{"world-writable .ssh", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(filepath.Dir(f), 0o777)) }, "directory " + "%SSH%" + ": world-writable"},
		{".ssh owned by other user", func(t *testing.T, u UserInfo, f string) {
			must(t, os.Chown(filepath.Dir(f), 12345, 0))
			must(t, os.Chmod(filepath.Dir(f), 0o755))
		}, "owned by uid 12345"},
		{"group-writable home", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(u.Home, 0o775)) }, "directory " + "%HOME%" + ": group-writable"},
		{"world-writable above home is not checked", func(t *testing.T, u UserInfo, f string) { must(t, os.Chmod(filepath.Dir(u.Home), 0o777)) }, ""},
		{"not a regular file", func(t *testing.T, u UserInfo, f string) {
			must(t, os.Remove(f))
			must(t, os.Mkdir(f, 0o700))
			must(t, os.Chown(f, testUID, testUID))
		}, "not a regular file"},
		{"symlink to a bad file", func(t *testing.T, u UserInfo, f string) {
			other := filepath.Join(u.Home, "keys")
			must(t, os.WriteFile(other, []byte(line), 0o666))
			must(t, os.Chmod(other, 0o666))
			must(t, os.Remove(f))
			must(t, os.Symlink(other, f))
		}, "world-writable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, file := strictHome(t, line)
			tc.setup(t, u, file)
			keys, path, err := AuthorizedKeys("%h/.ssh/authorized_keys", u)
			if path != file {
				t.Errorf("path %q, want %q", path, file)
			}
			want := strings.NewReplacer("%SSH%", filepath.Dir(file), "%HOME%", u.Home).Replace(tc.wantErr)
			if want == "" {
				if err != nil || len(keys) != 1 || !KeyAllowed(keys, key.PublicKey()) {
					t.Fatalf("want accepted, got %v (%d keys)", err, len(keys))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
			if keys != nil {
				t.Errorf("keys returned with error")
			}
		})
	}
}

func TestAuthorizedKeysMissing(t *testing.T) {
	u, file := strictHome(t, "")
	must(t, os.Remove(file))
	_, path, err := AuthorizedKeys(".ssh/authorized_keys", u)
	if !errors.Is(err, fs.ErrNotExist) || path != file {
		t.Fatalf("err %v path %q", err, path)
	}
	// A missing directory too.
	_, _, err = AuthorizedKeys("nodir/authorized_keys", u)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	k1, _ := newEd25519(t)
	k2, _ := newECDSA(t)
	k3, _ := newEd25519(t)
	pub := func(s ssh.Signer) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) }
	data := strings.Join([]string{
		"# comment",
		"",
		pub(k1) + " alice@laptop",
		`restrict,from="10.0.0.0/8,!10.1.2.3",no-pty ` + pub(k2) + " with options",
		"ssh-ed25519 notbase64!!! broken",
		"   " + pub(k3) + "\r",
		"garbage line",
		`bogus-option ` + pub(k1),
		`command="echo \"hi\"" ` + pub(k1) + " forced",
		"\t# indented comment",
	}, "\n")
	keys, errs := ParseAuthorizedKeys([]byte(data))
	if len(keys) != 4 {
		t.Fatalf("%d keys: %+v", len(keys), keys)
	}
	if keys[0].Line != 3 || keys[0].Comment != "alice@laptop" || len(keys[0].Options) != 0 {
		t.Errorf("key 0: %+v", keys[0])
	}
	if keys[1].Line != 4 || keys[1].Comment != "with options" ||
		strings.Join(keys[1].Options, "|") != `restrict|from="10.0.0.0/8,!10.1.2.3"|no-pty` {
		t.Errorf("key 1: %+v", keys[1])
	}
	if keys[2].Line != 6 || keys[2].Comment != "" {
		t.Errorf("key 2: %+v", keys[2])
	}
	if keys[3].Line != 9 || keys[3].Options[0] != `command="echo \"hi\""` {
		t.Errorf("key 3: %+v", keys[3])
	}
	if len(errs) != 3 {
		t.Fatalf("errs %v", errs)
	}
	for i, wantLine := range []int{5, 7, 8} {
		if !strings.HasPrefix(errs[i].Error(), fmt.Sprintf("line %d:", wantLine)) {
			t.Errorf("err %d = %v, want line %d", i, errs[i], wantLine)
		}
	}
	if !strings.Contains(errs[2].Error(), `unknown option "bogus-option"`) {
		t.Errorf("err %v", errs[2])
	}
}

func TestMatchKeyOptions(t *testing.T) {
	k, _ := newEd25519(t)
	other, _ := newEd25519(t)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey())))
	from := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 5555} }
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		options string
		remote  net.Addr
		ok      bool
	}{
		{"", nil, true},
		{"restrict,pty", nil, true},
		{"no-pty,no-port-forwarding", nil, true},
		{`command="/usr/bin/backup"`, nil, false},
		{"cert-authority", nil, false},
		{`principals="alice"`, nil, false},
		{`from="127.0.0.1"`, nil, false},
		{`from="127.0.0.1"`, from("127.0.0.1"), true},
		{`from="127.0.0.1"`, from("::ffff:127.0.0.1"), true},
		{`from="127.0.0.2"`, from("127.0.0.1"), false},
		{`from="127.0.0.*"`, from("127.0.0.1"), true},
		{`from="10.0.0.0/8,127.0.0.0/8"`, from("127.3.2.1"), true},
		{`from="127.0.0.0/8,!127.0.0.1"`, from("127.0.0.1"), false},
		{`from="::1"`, from("::1"), true},
		{`FROM="192.168.0.?"`, from("192.168.0.7"), true},
		{`expiry-time="20291231"`, nil, false},
		{`expiry-time="20300102"`, nil, true},
		{`expiry-time="203001010001Z"`, nil, true},
		{`expiry-time="20300101000000Z"`, nil, false},
	} {
		keys, errs := ParseAuthorizedKeys([]byte(strings.TrimSpace(tc.options + " " + line)))
		if len(errs) != 0 || len(keys) != 1 {
			t.Fatalf("%s: parse: %v", tc.options, errs)
		}
		m, err := MatchKey(keys, k.PublicKey(), tc.remote, now)
		if (m != nil) != tc.ok || (err == nil) != tc.ok {
			t.Errorf("options %s remote %v: match %v err %v, want ok=%v", tc.options, tc.remote, m != nil, err, tc.ok)
		}
		if m, err := MatchKey(keys, other.PublicKey(), tc.remote, now); m != nil || !errors.Is(err, ErrKeyNotAuthorized) {
			t.Errorf("%s: other key matched: %v", tc.options, err)
		}
	}
	// A refused line does not hide a later usable one for the same key.
	keys, _ := ParseAuthorizedKeys([]byte(`command="x" ` + line + "\n" + line + " second\n"))
	if m, err := MatchKey(keys, k.PublicKey(), nil, now); err != nil || m.Line != 2 {
		t.Errorf("second line not used: %v", err)
	}
	if KeyAllowed(nil, k.PublicKey()) || KeyAllowed(keys, nil) {
		t.Error("allowed from nothing")
	}
	// Bad from= / expiry-time are refused at parse time.
	for _, bad := range []string{`from="10.0.0.0/99"`, `from=""`, `expiry-time="tomorrow"`} {
		if keys, errs := ParseAuthorizedKeys([]byte(bad + " " + line)); len(keys) != 0 || len(errs) != 1 {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestAuthorizedKeysHandshake runs a real handshake: the server authorises
// with AuthorizedKeys+KeyAllowed, the client offers ClientSigners' key and
// checks the host with KnownHosts.
func TestAuthorizedKeysHandshake(t *testing.T) {
	clientKey, clientPriv := newEd25519(t)
	stranger, _ := newEd25519(t)
	u, _ := strictHome(t, "# keys\n"+string(ssh.MarshalAuthorizedKey(clientKey.PublicKey())))
	hostKey, _, err := LoadOrCreateHostKey(filepath.Join(t.TempDir(), "agent", "host_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(meta ssh.ConnMetadata, offered ssh.PublicKey) (*ssh.Permissions, error) {
		keys, path, err := AuthorizedKeys(".ssh/authorized_keys", u)
		if err != nil {
			return nil, err
		}
		if !KeyAllowed(keys, offered) {
			return nil, fmt.Errorf("%s not in %s", Fingerprint(offered), path)
		}
		if _, err := MatchKey(keys, offered, meta.RemoteAddr(), time.Now()); err != nil {
			return nil, err
		}
		return &ssh.Permissions{Extensions: map[string]string{"fp": Fingerprint(offered)}}, nil
	}, hostKey)

	clientHome := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(clientHome, ".ssh"), 0o700))
	writeKey(t, filepath.Join(clientHome, ".ssh", "id_ed25519"), clientPriv, "")
	signers, closer, err := ClientSigners("", clientHome, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	kh := &KnownHosts{Path: filepath.Join(clientHome, ".tether", "known_hosts")}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: kh.HostKeyCallback(),
	}); err != nil {
		t.Fatalf("authorised key refused: %v", err)
	}
	if err := dial(t, srv.addr(), &ssh.ClientConfig{
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(stranger)},
		HostKeyCallback: kh.HostKeyCallback(),
	}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("stranger: %v", err)
	}
}
