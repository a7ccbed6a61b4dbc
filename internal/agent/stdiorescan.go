package agent

import (
	"strings"
	"sync"
)

// rescanMu serializes rescans, so one session is never registered twice.
var rescanMu sync.Mutex

// rescanMissing registers sessions of user that another stdio agent
// started after this one's discovery. Several stdio agents run at once
// (one per ssh connection), and one may live long (the connection a
// TETHER_CONTROL_PERSIST master holds): without this it would answer "no
// session" for a session made through another connection. name "" looks
// at all of the user's entries (list); otherwise only that one. A TCP
// agent is the only agent of its state directory and skips this.
func (a *Agent) rescanMissing(user, name string) {
	if !stdioMode.Load() || user != a.self.Username {
		return
	}
	a.mu.Lock()
	_, known := a.sessions[user][name]
	busy := a.spawning[user] > 0 // a new of ours is between its mkdir and register
	a.mu.Unlock()
	if (name != "" && known) || busy {
		return
	}
	rescanMu.Lock()
	defer rescanMu.Unlock()
	ud, uid, err := a.discoverUser(user)
	if err != nil {
		return
	}
	defer ud.Close()
	for _, n := range readNames(ud) {
		if (name != "" && n != name) || n == closedDir || strings.HasPrefix(n, closedDir+".bad") || ValidName(n) != nil {
			continue
		}
		a.mu.Lock()
		_, known := a.sessions[user][n]
		busy := a.spawning[user] > 0
		a.mu.Unlock()
		if known || busy {
			continue
		}
		a.discoverOne(ud, user, n, uid)
	}
}

// skipDiscovery marks start-up discovery done without doing it (stdio
// agents: see ServeStdio).
func (a *Agent) skipDiscovery() {
	select {
	case <-a.discovered:
	default:
		close(a.discovered)
	}
}
