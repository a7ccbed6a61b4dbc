package sessionhost

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/peercred"
	"github.com/tether-sh/tether/internal/wire"
)

// handle serves one local connection: a Hello from the agent (carrying the
// authenticated user), one Request, then what the request implies.
func (h *Host) handle(nc net.Conn) {
	defer nc.Close()
	if uc, ok := nc.(*net.UnixConn); ok {
		// Output goes to the agent in batches of up to a MiB (writeRecords);
		// with the default send buffer (208 KiB) each batch took several
		// writes, each waking the agent to read a piece of it: twice the
		// context switches per MiB in all three processes (#18). The kernel
		// holds this much only while the agent does not read (a slow
		// client), next to the journal's 8 MiB tail; it caps the size at
		// net.core.wmem_max.
		_ = uc.SetWriteBuffer(sendBufferBytes)
	}
	// Clients send small frames (requests, acks, signals) and stdin in
	// frames large enough to bypass the buffer: 16 KiB, not 64, per request.
	c := wire.NewConnBuffer(nc, 0, 16<<10)
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := h.checkAgent(nc); err != nil {
		// Before reading anything: what a peer says (the Hello's user,
		// admin and address, agent-only ops like limits and watch) is
		// believed only from the agent.
		h.log.Warn("refused local connection", "err", err)
		c.WriteJSON(wire.THello, wire.Hello{Proto: wire.HostVersion, Software: "tether-session-host"})
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeDenied, "%v; use tether through the agent", err)))
		// Discard what the peer sends meanwhile (a bounded amount, for a
		// moment), so that its write does not fail before it reads why.
		if uc, ok := nc.(*net.UnixConn); ok {
			uc.CloseWrite()
		}
		nc.SetDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
		return
	}
	peer, err := c.Handshake(wire.Hello{Proto: wire.HostVersion, Software: "tether-session-host"})
	if err != nil {
		return
	}
	var req wire.Request
	if err := c.ReadJSON(wire.TRequest, &req); err != nil {
		return
	}
	nc.SetDeadline(time.Time{})
	if peer.User != h.opts.User {
		// The agent routes by user; anything else is a bug or a stranger.
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeNotFound, "no session %s", h.opts.Name)))
		return
	}
	for h.serveRequest(nc, c, peer, &req) {
		if !h.nextRequest(nc, c, &req) {
			return
		}
	}
}

// checkAgent accepts only the agent as the peer of nc: a process of the
// agent's uid (SO_PEERCRED), which is the owner of STATE/s — the agent made
// it, and the session's user cannot change its owner. In root mode that is
// root, so the session's user, whose uid the session host shares, cannot
// lift her limits or claim another identity on her own socket. In user mode
// the agent and the user are one uid and nothing here can tell them apart
// (docs/SECURITY.md says what that means).
func (h *Host) checkAgent(nc net.Conn) error {
	peer, err := peercred.UID(nc)
	if err != nil {
		return err
	}
	agent, err := h.agentUID()
	if err != nil {
		return err
	}
	if peer != 0 && uint32(peer) != agent {
		return fmt.Errorf("peer uid %d is not the agent (uid %d): only the agent may talk to a session host", peer, agent)
	}
	return nil
}

// agentUID is the uid of the agent that runs this session: the owner of
// STATE/s, two levels above the session directory (STATE/s/USER/NAME).
func (h *Host) agentUID() (uint32, error) {
	dir := filepath.Dir(filepath.Dir(h.opts.Dir))
	fi, err := os.Lstat(dir)
	if err != nil {
		return 0, fmt.Errorf("find the agent's uid: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return 0, fmt.Errorf("find the agent's uid: %s is not a directory", dir)
	}
	return st.Uid, nil
}

// nextRequest waits on a connection the client kept (wire.Request.Reuse)
// for its next request. Only runs may follow: the agent checked the first
// request, and a run is the only op that can keep the connection.
func (h *Host) nextRequest(nc net.Conn, c *wire.Conn, req *wire.Request) bool {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return false
	}
	h.pipes[nc] = struct{}{} // Close closes it: nothing else would wake this read
	h.mu.Unlock()
	*req = wire.Request{}
	err := c.ReadJSON(wire.TRequest, req)
	h.mu.Lock()
	delete(h.pipes, nc)
	h.mu.Unlock()
	if err != nil {
		return false
	}
	if req.Op != wire.OpRun || req.Module != "" {
		// Module runs are prepared by the agent, which a kept
		// connection bypasses.
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeBadRequest, "only a plain run may follow a run on a kept connection, not %q (module %q)", req.Op, req.Module)))
		return false
	}
	return true
}

// serveRequest serves one request and reports whether the connection may
// serve another.
func (h *Host) serveRequest(nc net.Conn, c *wire.Conn, peer wire.Hello, req *wire.Request) (again bool) {
	switch req.Op {
	case wire.OpStatus:
		info := h.Info()
		c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})
	case wire.OpWatch:
		h.watch(nc, c)
	case wire.OpLimits:
		if req.Limits != nil {
			h.setLimits(*req.Limits)
		}
		c.WriteJSON(wire.TResponse, wire.Response{OK: true})
	case wire.OpRun:
		return h.opRun(c, req)
	case wire.OpAttach:
		h.opAttach(c, req)
	case wire.OpReceive:
		h.opReceive(c, req)
	case wire.OpConnect:
		if req.Hold {
			h.opHold(c, req)
			break
		}
		h.opConnect(c, req)
	case wire.OpDisconnect:
		h.opDisconnect(c, req)
	case wire.OpInterrupt:
		h.opInterrupt(c, req)
	case wire.OpSftp:
		h.opSftp(nc, c, req)
	case wire.OpHash:
		h.opHash(c, req)
	case wire.OpClose:
		info := h.Info()
		by := req.Client.Host
		if by == "" {
			by = peer.User
		}
		// Close before answering: once remove returns, no request
		// (say, one on a kept connection) may still start a command.
		h.Close(by, orDefault(req.Reason, "removed with tether remove"))
		c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})
	default:
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeBadRequest, "unknown operation %q", req.Op)))
	}
	return false
}

// watch holds a connection open for the agent until the session closes, so
// the agent learns at once when it is gone.
func (h *Host) watch(nc net.Conn, c *wire.Conn) {
	h.mu.Lock()
	if h.watchers == nil {
		h.mu.Unlock()
		return
	}
	h.watchers[nc] = struct{}{}
	h.mu.Unlock()
	info := h.Info()
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})
	for {
		if _, _, err := c.Read(); err != nil {
			break
		}
	}
	h.mu.Lock()
	if h.watchers != nil {
		delete(h.watchers, nc)
	}
	h.mu.Unlock()
}

func (h *Host) setLimits(l wire.Limits) {
	defer h.poke()
	h.mu.Lock()
	h.limits = l
	h.mu.Unlock()
	if mode, err := parseMode(l.BufferingMode); err == nil && l.JournalBytes > 0 {
		h.j.SetLimits(l.JournalBytes, mode)
	}
	h.applyProcessLimits(l)
}

// claimLocked checks that client may attach to the session and attaches
// conn (nil: connect, which attaches nothing). Only an attached client
// holds a session (attach.go); force takes it over from another one.
func (h *Host) claimLocked(c *wire.Conn, client wire.Client, force, needConnected bool) (*attachment, error) {
	defer h.poke()
	if h.closing {
		return nil, h.closingErrLocked()
	}
	if err := h.checkHeldLocked(client, force); err != nil {
		return nil, err
	}
	// A transport that broke after the client had its command's exit
	// (the ack was lost with it) leaves the session Disconnected; that
	// client's next command is its way back, as after any cut it resumed.
	resuming := h.brokenBy != "" && h.brokenBy == client.ID
	if needConnected && h.disconnected && !resuming {
		return nil, wire.Errorf(wire.CodeDisconnected, "session %s is Disconnected; reattach it first with tether connect (tether receive also gets its output)", h.opts.Name)
	}
	h.takeOverLocked(client)
	h.disconnected = false
	h.brokenBy = ""
	h.graceUntil = time.Time{}
	var a *attachment
	if c != nil {
		a = newAttachment(c, client, h.now())
		h.att = a
	}
	return a, nil
}

// release ends an attachment. When delivery did not complete because the
// transport broke, the session becomes Disconnected and keeps running.
func (h *Host) release(a *attachment, completed bool, grace time.Duration) {
	defer h.poke()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.att != a {
		return
	}
	h.att = nil
	h.idleSince = h.now()
	select {
	case <-a.kicked:
		return // whoever kicked it set the state
	default:
	}
	if !completed {
		h.disconnected = true
		h.disconnAt = h.now()
		h.brokenBy = a.client.ID
		if h.opts.Temporary {
			if grace <= 0 {
				grace = 4 * time.Minute
			}
			h.graceUntil = h.now().Add(grace)
		}
	}
}

func (h *Host) opRun(c *wire.Conn, req *wire.Request) (reusable bool) {
	h.mu.Lock()
	if r := h.running; r != nil && r.finishing {
		// A client that read the exit record may ask again before the
		// session has noted the end: wait for it, it is a moment.
		h.mu.Unlock()
		<-r.done
		h.mu.Lock()
	}
	if h.closing {
		err := h.closingErrLocked()
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	if h.running != nil {
		// Refuse before claiming: claiming would detach whoever follows
		// the running command.
		err := h.busyRunningLocked()
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	a, err := h.claimLocked(c, req.Client, false, true)
	if err != nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	cmd, err := h.startCommandLocked(req)
	if err != nil {
		h.att = nil
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	if req.Detach {
		h.att = nil
		h.disconnected = true
		h.disconnAt = h.now()
	}
	info := h.infoLocked()
	h.mu.Unlock()
	resp, err := c.FrameJSON(wire.TResponse, wire.Response{OK: true, Session: &info, Cmd: cmd.id, StartSeq: cmd.startSeq})
	if err != nil {
		h.log.Error("encode a run's response", "err", err) // the client times out, as on a failed write
	}
	if req.Detach {
		c.WriteFrame(resp)
		return
	}
	reuse := req.Reuse && !h.opts.Temporary
	// Only a plain run: stdin and terminals leave state on the connection.
	endMark := req.EndMark && !reuse && !req.Stdin && req.TTY == nil && !h.opts.Temporary
	completed, reusable := h.stream(a, streamSpec{after: cmd.startSeq, cmd: cmd, reuse: reuse, endMark: endMark, response: resp})
	h.release(a, completed, time.Duration(req.Grace))
	if completed && h.opts.Temporary {
		go h.Close(req.Client.Host, "temporary session ended with its command")
	}
	return reusable
}

// opAttach resumes a command's output after a reconnect (or follows a
// command from where the client says it is).
func (h *Host) opAttach(c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	var cmd *command
	switch {
	case h.running != nil && h.running.id == req.Cmd:
		cmd = h.running
	case h.lastCmd != nil && h.lastCmd.id == req.Cmd:
		cmd = h.lastCmd
	}
	if cmd == nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeNotFound, "session %s has no command %d to resume", h.opts.Name, req.Cmd)))
		return
	}
	a, err := h.claimLocked(c, req.Client, req.Force, false)
	if err != nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	var received uint64
	if cmd.stdin != nil {
		cmd.stdin.mu.Lock()
		received = cmd.stdin.received
		cmd.stdin.mu.Unlock()
	}
	h.mu.Unlock()
	if req.After+1 < h.j.First() && req.After < cmd.startSeq {
		req.After = cmd.startSeq
	}
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Cmd: cmd.id, StartSeq: cmd.startSeq, StdinOffset: received})
	completed, _ := h.stream(a, streamSpec{after: req.After, cmd: cmd})
	h.release(a, completed, time.Duration(req.Grace))
	if completed && h.opts.Temporary {
		go h.Close(req.Client.Host, "temporary session ended with its command")
	}
}

// opReceive delivers what is journalled and not yet received, then follows a
// running command to its end. It reattaches the session like connect.
func (h *Host) opReceive(c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	a, err := h.claimLocked(c, req.Client, req.Force, false)
	if err != nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	spec := streamSpec{after: h.j.Acked(), cmd: h.running, until: h.j.Last()}
	if req.All {
		// Acknowledged records too, while their segment is kept.
		spec.after, spec.retained = h.j.Retained()-1, true
	}
	resp := wire.Response{OK: true, StartSeq: spec.after, Until: spec.until}
	if h.running != nil {
		resp.Cmd = h.running.id
	}
	h.mu.Unlock()
	c.WriteJSON(wire.TResponse, resp)
	completed, _ := h.stream(a, spec)
	h.release(a, completed, 0)
}

func (h *Host) opConnect(c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	_, err := h.claimLocked(nil, req.Client, req.Force, false)
	if err == nil {
		h.setIdleOverrideLocked(req.IdleTimeout)
	}
	info := h.infoLocked()
	h.mu.Unlock()
	if err != nil {
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})
}

func (h *Host) opDisconnect(c *wire.Conn, req *wire.Request) {
	defer h.poke()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(h.closingErrLocked()))
		return
	}
	if h.att != nil {
		h.att.kick(fmt.Sprintf("session disconnected by tether disconnect from %s", req.Client.Host))
		h.att = nil
	}
	h.dropHoldLocked(fmt.Sprintf("session disconnected by tether disconnect from %s", req.Client.Host))
	if !h.disconnected {
		h.disconnected = true
		h.disconnAt = h.now()
	}
	h.brokenBy = "" // disconnected on purpose: connect or receive ends it
	h.setIdleOverrideLocked(req.IdleTimeout)
	info := h.infoLocked()
	h.mu.Unlock()
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})
}

// setIdleOverrideLocked applies a per-session idle timeout the agent has
// already checked against MaxIdleTimeout.
func (h *Host) setIdleOverrideLocked(s string) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		h.idleOverride = d
	}
}

// sendBufferBytes is the send buffer of a connection from the agent.
const sendBufferBytes = 1 << 20
