package osuser

import (
	"os"
	"os/user"
	"slices"
	"strconv"
	"testing"
)

// The getent path must find what the files hold exactly as os/user reads
// them: every user and group in /etc/passwd and /etc/group is also in NSS.
func TestGetentAgreesWithFiles(t *testing.T) {
	if _, err := getent("passwd", "root"); err != nil {
		t.Skipf("no getent here: %v", err)
	}
	want, err := user.Lookup("root")
	if err != nil {
		t.Fatal(err)
	}
	got, err := getentUser("root", func(u *user.User) bool { return u.Username == "root" })
	if err != nil {
		t.Fatal(err)
	}
	if got.Uid != want.Uid || got.Gid != want.Gid || got.HomeDir != want.HomeDir || got.Username != want.Username {
		t.Errorf("getent root = %+v, os/user %+v", got, want)
	}
	byID, err := getentUser("0", func(u *user.User) bool { return u.Uid == "0" })
	if err != nil || byID.Username != want.Username {
		t.Errorf("getent uid 0 = %+v, %v; want %s", byID, err, want.Username)
	}
	g, err := getentGroup("root")
	if err != nil || g.Gid != "0" {
		t.Errorf("getent group root = %+v, %v", g, err)
	}
	// A user in supplementary groups, if the files have one.
	for _, name := range []string{"root", "daemon", "nobody", "man", "tt-alice", "tt-bob"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		want, err := u.GroupIds()
		if err != nil {
			continue
		}
		got, err := getentGroupIds(u)
		if err != nil {
			t.Fatalf("getent groups of %s: %v", name, err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("groups of %s: getent %v, os/user %v", name, got, want)
		}
	}
}

// A name that is a number is a name: getent passwd would answer it with the
// user of that uid, which must not come back as the user looked up.
func TestNumericNameIsNotAUID(t *testing.T) {
	if _, err := getent("passwd", "root"); err != nil {
		t.Skipf("no getent here: %v", err)
	}
	if u, err := getentUser("0", func(u *user.User) bool { return u.Username == "0" }); err == nil {
		t.Fatalf("name %q resolved to %+v", "0", u)
	}
	if _, err := getentGroup(strconv.Itoa(0)); err == nil {
		t.Fatal("group name \"0\" resolved to a group")
	}
}

func TestBadNamesAreNotLookedUp(t *testing.T) {
	for _, k := range []string{"", "-s", "a:b", "a\nroot", "a\x00"} {
		if _, err := getent("passwd", k); err == nil {
			t.Errorf("getent passwd %q ran", k)
		}
	}
}

func TestParsePasswd(t *testing.T) {
	u, ok := parsePasswd("alice:x:1001:1002:Alice A,room 1,,:/home/alice:/bin/bash")
	if !ok || u.Username != "alice" || u.Uid != "1001" || u.Gid != "1002" || u.Name != "Alice A" || u.HomeDir != "/home/alice" {
		t.Fatalf("parsePasswd = %+v, %v", u, ok)
	}
	for _, bad := range []string{"", "alice:x:1001:1002:/home/alice:/bin/bash", "alice:x:uid:1002::/h:/bin/sh", ":x:1:1::/h:/bin/sh"} {
		if _, ok := parsePasswd(bad); ok {
			t.Errorf("parsePasswd(%q) accepted", bad)
		}
	}
}

// The exported lookups answer as os/user does for users the files hold,
// in this build (cgo or not).
func TestLookupsMatchOSUser(t *testing.T) {
	u, err := Lookup("root")
	if err != nil || u.Uid != "0" {
		t.Fatalf("Lookup(root) = %+v, %v", u, err)
	}
	if _, err := Lookup("no-such-user-tether"); err == nil {
		t.Fatal("Lookup of a missing user succeeded")
	}
	if _, err := LookupGroup("no-such-group-tether"); err == nil {
		t.Fatal("LookupGroup of a missing group succeeded")
	}
	c, err := Current()
	if err != nil || c.Uid != strconv.Itoa(currentUID()) {
		t.Fatalf("Current() = %+v, %v", c, err)
	}
}

func currentUID() int { return os.Getuid() }
