package sessionhost

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/wire"
)

func TestLaunchRoundTrip(t *testing.T) {
	l := Launch{Dir: "/var/lib/tether/s/alice/work", Name: "work", User: "alice", Tombstone: "/var/lib/tether/s/alice/.closed/work.json",
		Temporary: true, Limits: wire.Limits{IdleTimeout: wire.Duration(time.Hour), MaxProcesses: 7}, LimitsGroup: "g", LimitsMechanism: "cgroup2"}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadLaunch(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != l {
		t.Fatalf("got %+v, want %+v", got, l)
	}
	o := got.Options()
	if o.Dir != l.Dir || o.Name != l.Name || o.Tombstone != l.Tombstone || o.Limits != l.Limits || !o.Temporary || o.LimitsGroup != "g" {
		t.Fatalf("options %+v", o)
	}
}

func TestReadLaunchRefuses(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "EOF"},
		{"not json", "--dir /x", "invalid character"},
		{"unknown field", `{"dir":"/x","name":"n","user":"u","evil":1}`, "unknown field"},
		{"relative dir", `{"dir":"x","name":"n","user":"u"}`, "absolute"},
		{"no name", `{"dir":"/x","user":"u"}`, "no session name"},
		{"too large", `{"dir":"/` + strings.Repeat("a", maxLaunch) + `"}`, "more than"},
	} {
		if _, err := ReadLaunch(strings.NewReader(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// host.log is opened without following a symlink the user put there.
func TestRedirectOutputRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, nil, 0o600)
	os.Symlink(target, LogPath(dir))
	if err := RedirectOutput(dir); err == nil {
		t.Fatal("host.log symlink followed")
	}
}
