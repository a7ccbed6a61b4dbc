package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/osuser"
	"github.com/tether-sh/tether/internal/sshauth"
)

func (a *Agent) serverConfig(hostKey ssh.Signer) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		MaxAuthTries:      a.opts.MaxAuthTries,
		ServerVersion:     "SSH-2.0-tether",
		PublicKeyCallback: a.checkKey,
		BannerCallback: func(conn ssh.ConnMetadata) string {
			if !a.root && conn.User() != a.self.Username {
				return fmt.Sprintf("tether: this agent runs as %s and accepts only %s; connect as %s or use an agent running as root\n",
					a.self.Username, a.self.Username, a.self.Username)
			}
			return ""
		},
	}
	cfg.AddHostKey(hostKey)
	return cfg
}

// errDenied is all an unauthenticated client learns; the log says why.
var errDenied = errors.New("permission denied")

func (a *Agent) checkKey(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	name := conn.User()
	log := a.log.With("user", name, "remote", conn.RemoteAddr().String())
	if !a.root && name != a.self.Username {
		log.Warn("auth refused: this agent serves only its own user", "agent_user", a.self.Username)
		return nil, errDenied
	}
	u, err := lookupUser(name)
	if err != nil {
		log.Warn("auth refused: no such user")
		return nil, errDenied
	}
	cred, err := userCred(u)
	if err != nil {
		log.Warn("auth refused: cannot read the user's groups", "err", err)
		return nil, errDenied
	}
	// Read as the user (sshauth uses safefs.AsUser when root), as sshd does.
	keys, path, err := sshauth.AuthorizedKeys(a.opts.AuthorizedKeys, sshauth.UserInfo{Name: u.Username, Home: u.HomeDir, UID: cred.UID, GID: cred.GID, Groups: cred.Groups})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("auth refused: no authorized keys file", "path", path)
		} else {
			log.Warn("auth refused: authorized keys file rejected", "path", path, "reason", err)
		}
		return nil, errDenied
	}
	if !sshauth.KeyAllowed(keys, key) {
		log.Info("auth refused: key not in authorized keys", "path", path, "key", sshauth.Fingerprint(key))
		return nil, errDenied
	}
	admin := "0"
	if a.isAdmin(u) {
		admin = "1"
	}
	log.Info("authenticated", "key", sshauth.Fingerprint(key))
	return &ssh.Permissions{Extensions: map[string]string{"user": name, "admin": admin}}, nil
}

// isAdmin: the agent's own user in user mode; root or --admin-group in root mode.
func (a *Agent) isAdmin(u *user.User) bool {
	if !a.root {
		return u.Username == a.self.Username
	}
	if u.Uid == "0" {
		return true
	}
	if a.opts.AdminGroup == "" {
		return false
	}
	g, err := osuser.LookupGroup(a.opts.AdminGroup)
	if err != nil {
		return false
	}
	gids, err := osuser.GroupIds(u)
	if err != nil {
		return false
	}
	return slices.Contains(gids, g.Gid)
}

func lookupUser(name string) (*user.User, error) {
	if name == "" {
		return nil, errors.New("empty user name")
	}
	return osuser.Lookup(name)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
