// Package sshauth holds Tether's keys and trust decisions, on both sides of
// a connection.
//
// On the agent (server) side it loads or creates the agent's host key
// (LoadOrCreateHostKey) and decides which client keys may log in, reading
// the user's authorized_keys file with sshd's StrictModes ownership and
// permission checks (ExpandPattern, AuthorizedKeys, ParseAuthorizedKeys,
// KeyAllowed, MatchKey).
//
// On the client side it picks the user's own SSH keys to offer — an
// identity file, the ssh-agent, or the default ~/.ssh/id_* files
// (ClientSigners) — and checks the agent's host key against an OpenSSH
// known_hosts file, trusting a host on first use and refusing a changed
// key (KnownHosts).
package sshauth
