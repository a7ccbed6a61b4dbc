// Package osuser looks up the host's users and groups. In a build with cgo
// it is os/user, which asks the C library (NSS: files, LDAP, sssd, …). A
// static build (CGO_ENABLED=0, as make build and make release make it: a
// fresh client process then skips the dynamic loader and libc's start, ≈ 1
// ms) has os/user's pure-Go lookups, which read only /etc/passwd and
// /etc/group; there a user or group they do not find is looked up with
// getent(1), which asks NSS, so a directory user still logs in.
package osuser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// getentTimeout bounds one getent run (an unreachable directory server).
const getentTimeout = 10 * time.Second

// fromNSS holds the names of the users that only getent found: their
// groups come from getent too (os/user's pure-Go GroupIds reads
// /etc/group alone).
var fromNSS sync.Map

// Lookup is user.Lookup, with getent for a name the files lack.
func Lookup(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if err == nil || !nssFallback || !errors.As(err, &unknown) {
		return u, err
	}
	nu, gerr := getentUser(name, func(u *user.User) bool { return u.Username == name })
	if gerr != nil {
		return nil, err // os/user's error: the user is unknown everywhere
	}
	fromNSS.Store(nu.Username, true)
	return nu, nil
}

// LookupId is user.LookupId, with getent for a uid the files lack.
func LookupId(uid string) (*user.User, error) {
	u, err := user.LookupId(uid)
	var unknown user.UnknownUserIdError
	if err == nil || !nssFallback || !errors.As(err, &unknown) {
		return u, err
	}
	nu, gerr := getentUser(uid, func(u *user.User) bool { return u.Uid == uid })
	if gerr != nil {
		return nil, err
	}
	fromNSS.Store(nu.Username, true)
	return nu, nil
}

// Current is the user this process runs as (its real uid), as
// user.Current, found with getent when the files lack it.
func Current() (*user.User, error) {
	if !nssFallback {
		return user.Current()
	}
	if u, err := LookupId(strconv.Itoa(os.Getuid())); err == nil {
		return u, nil
	}
	return user.Current()
}

// LookupGroup is user.LookupGroup, with getent for a name the files lack.
func LookupGroup(name string) (*user.Group, error) {
	g, err := user.LookupGroup(name)
	var unknown user.UnknownGroupError
	if err == nil || !nssFallback || !errors.As(err, &unknown) {
		return g, err
	}
	if ng, gerr := getentGroup(name); gerr == nil {
		return ng, nil
	}
	return nil, err
}

// getentGroup looks a group up by name with getent.
func getentGroup(name string) (*user.Group, error) {
	out, err := getent("group", name)
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(out) {
		// name:password:gid:members
		f := strings.Split(strings.TrimRight(line, "\n"), ":")
		if len(f) >= 3 && f[0] == name && isID(f[2]) {
			return &user.Group{Gid: f[2], Name: f[0]}, nil
		}
	}
	return nil, fmt.Errorf("getent group %s: no matching entry", name)
}

// GroupIds is u.GroupIds: the primary group and the supplementary ones,
// from getent initgroups for a user only NSS knows.
func GroupIds(u *user.User) ([]string, error) {
	if _, ok := fromNSS.Load(u.Username); !nssFallback || !ok {
		return u.GroupIds()
	}
	return getentGroupIds(u)
}

// getentGroupIds is GroupIds through getent initgroups.
func getentGroupIds(u *user.User) ([]string, error) {
	out, err := getent("initgroups", u.Username)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	gids := []string{u.Gid}
	// "name gid gid …": the supplementary groups.
	f := strings.Fields(out)
	if len(f) == 0 || f[0] != u.Username {
		return nil, fmt.Errorf("groups of %s: getent initgroups answered %q", u.Username, firstLine(out))
	}
	for _, g := range f[1:] {
		if isID(g) && !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	return gids, nil
}

// getentUser looks key up in the passwd database and returns the entry
// that match accepts: getent passwd answers a number with the user of that
// uid, and a name that is a number must not turn into another user.
func getentUser(key string, match func(*user.User) bool) (*user.User, error) {
	out, err := getent("passwd", key)
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(out) {
		u, ok := parsePasswd(strings.TrimRight(line, "\n"))
		if ok && match(u) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("getent passwd %s: no matching entry", key)
}

// parsePasswd reads one passwd line, name:password:uid:gid:gecos:home:shell.
func parsePasswd(line string) (*user.User, bool) {
	f := strings.Split(line, ":")
	if len(f) != 7 || f[0] == "" || !isID(f[2]) || !isID(f[3]) {
		return nil, false
	}
	name, _, _ := strings.Cut(f[4], ",") // GECOS: the full name comes first
	return &user.User{Uid: f[2], Gid: f[3], Username: f[0], Name: name, HomeDir: f[5]}, true
}

func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// getent runs getent(1) for key in db. A key getent could take for an
// option, or with bytes no name has, is not looked up.
func getent(db, key string) (string, error) {
	if key == "" || strings.ContainsAny(key, ":\n\x00") || strings.HasPrefix(key, "-") {
		return "", fmt.Errorf("getent %s: %q is not a name", db, key)
	}
	path, err := getentPath()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), getentTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, path, db, key)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("getent %s %s: %v %s", db, key, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// getentPath is the system's getent: from /usr/bin or /bin, not from PATH
// (the agent runs as root).
func getentPath() (string, error) {
	for _, p := range []string{"/usr/bin/getent", "/bin/getent"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", errors.New("no getent in /usr/bin or /bin to ask NSS with")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
