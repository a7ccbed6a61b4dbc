package sessionhost

import (
	"github.com/tether-sh/tether/internal/wire"
)

// opInterrupt is Ctrl-C from anywhere (tether interrupt): SIGINT to the
// running command, whoever is attached to the session. The agent routes
// only a session's own user here. The answer carries the interrupted
// command's id and text, or no id when nothing runs.
func (h *Host) opInterrupt(c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	running := h.running
	var info wire.SessionInfo
	if running != nil {
		info = h.infoLocked()
	}
	h.mu.Unlock()
	if running == nil {
		c.WriteJSON(wire.TResponse, wire.Response{OK: true, Text: "no command is running"})
		return
	}
	h.log.Info("command interrupted", "by", req.Client.Host, "command", running.text)
	h.interrupt(running)
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Cmd: running.id, Text: running.text, Session: &info})
}

// interrupt is Ctrl-C for c, the running command: the runspace's
// Interrupt, and c's run context cancelled, which stops c at its start
// when the runspace has not begun it yet (Interrupt alone would find no
// job then and do nothing).
func (h *Host) interrupt(c *command) {
	c.interrupt()
	h.rs.Interrupt()
}
