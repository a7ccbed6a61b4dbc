package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/wire"
)

// relayFunc takes over a channel after the request, splicing it to a
// session host. An error before the splice is answered as a Response.
type relayFunc func(c *wire.Conn, ch ssh.Channel) error

func (a *Agent) dispatch(ctx context.Context, id identity, req *wire.Request) (wire.Response, relayFunc) {
	a.awaitDiscovery() // sessions from before a restart are known before any answer
	// Every name is checked before any lookup or file access: a name is
	// joined into paths below the user's directory ("../../alice/...").
	if err := checkNames(req); err != nil {
		return wire.Refuse(err), nil
	}
	switch req.Op {
	case wire.OpNew:
		return a.opNew(id, req), nil
	case wire.OpList:
		return a.opList(id, req), nil
	case wire.OpRemove:
		return a.opRemove(id, req), nil
	case wire.OpConfigList, wire.OpConfigGet, wire.OpConfigSet, wire.OpConfigReset:
		return a.opConfig(id, req), nil
	case wire.OpModuleList, wire.OpModuleHelp:
		return a.opModule(id, req), nil
	case wire.OpSftp:
		if req.Session == "" {
			// A bare host copies through a temporary session, which the
			// client removes afterwards (wire.OpSftp).
			return a.relayTemporary(id, req, false)
		}
		return a.relaySession(id, req)
	case wire.OpHash:
		return a.relaySession(id, req)
	case wire.OpRun:
		if req.Module != "" {
			if err := a.prepareModuleRun(id, req); err != nil {
				return wire.Refuse(err), nil
			}
		}
		if req.Session == "" {
			// A bare host runs in a temporary session, unless the command
			// starts disconnected: then the session stays, under a new name.
			return a.relayTemporary(id, req, req.Detach)
		}
		return a.relaySession(id, req)
	case wire.OpAttach, wire.OpReceive, wire.OpConnect, wire.OpDisconnect, wire.OpStatus, wire.OpInterrupt:
		return a.relaySession(id, req)
	}
	return wire.Refuse(wire.Errorf(wire.CodeBadRequest, "unknown operation %q; is the client newer than this agent?", req.Op)), nil
}

// relayTemporary opens a session for a request to a bare host (temporary,
// or kept under a new name) and relays the request to it.
func (a *Agent) relayTemporary(id identity, req *wire.Request, keep bool) (wire.Response, relayFunc) {
	u, err := lookupUser(id.user)
	if err != nil {
		return wire.Refuse(err), nil
	}
	name, temporary := "tmp-"+randomName(), true
	if keep {
		name, temporary = randomName(), false
	}
	sh, err := a.chooseShell("", false)
	if err != nil {
		return wire.Refuse(err), nil
	}
	ref, err := a.spawn(u, name, temporary, sh)
	if err != nil {
		return wire.Refuse(err), nil
	}
	return wire.Response{}, a.relay(ref, id, req)
}

// relaySession relays a request to the named session's host.
func (a *Agent) relaySession(id identity, req *wire.Request) (wire.Response, relayFunc) {
	if req.IdleTimeout != "" {
		if _, err := a.checkIdleTimeout(req.IdleTimeout); err != nil {
			return wire.Refuse(err), nil
		}
	}
	ref := a.lookup(id.user, req.Session)
	if ref == nil {
		return wire.Refuse(a.notFound(id.user, req.Session)), nil
	}
	if ref.broken != "" {
		return wire.Refuse(wire.Errorf(wire.CodeClosed, "session %s is Broken: %s; remove it with tether remove", ref.name, ref.broken)), nil
	}
	return wire.Response{}, a.relay(ref, id, req)
}

// sessionOps take a session name (run and new may leave it empty: the
// agent picks one).
var sessionOps = map[wire.Op]bool{wire.OpNew: true, wire.OpRun: true, wire.OpAttach: true, wire.OpReceive: true,
	wire.OpConnect: true, wire.OpDisconnect: true, wire.OpStatus: true, wire.OpRemove: true,
	wire.OpSftp: true, wire.OpHash: true}

// checkNames validates the session name, and remove's owner, of a request.
func checkNames(req *wire.Request) error {
	if !sessionOps[req.Op] {
		return nil
	}
	if req.Session != "" || (req.Op != wire.OpNew && req.Op != wire.OpRun && req.Op != wire.OpSftp) {
		if err := ValidName(req.Session); err != nil {
			return wire.Errorf(wire.CodeBadRequest, "%v", err)
		}
	}
	if req.Op == wire.OpRemove && req.Owner != "" {
		if err := ValidUserName(req.Owner); err != nil {
			return wire.Errorf(wire.CodeBadRequest, "%v", err)
		}
	}
	return nil
}

var validUser = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}\$?$`) })

// ValidUserName reports whether name can be a user name (POSIX's portable
// set, as useradd accepts): never a path, never "." or "..".
func ValidUserName(name string) error {
	if !validUser().MatchString(name) {
		return fmt.Errorf("bad user name %q: use 1-32 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'", name)
	}
	return nil
}

func (a *Agent) relay(ref *sessionRef, id identity, req *wire.Request) relayFunc {
	return func(c *wire.Conn, ch ssh.Channel) error {
		if keepsHost(ref, req) {
			return a.relayKept(ref, id, req, c, ch) // hostpool.go
		}
		hreq := *req
		hreq.FdPass = req.Op == wire.OpSftp && req.FdPass // asked for by tether cp, for sftp only
		nc, hc, err := a.dialSession(ref, id, hreq)
		if err != nil {
			if why := a.closedMeanwhile(ref); why != nil {
				return why
			}
			return wire.Errorf(wire.CodeClosed, "%v", err)
		}
		defer nc.Close()
		if uc, ok := nc.(*net.UnixConn); ok && hreq.FdPass {
			return a.relaySftpFD(ref, c, ch, uc, hc) // sftpfd.go
		}
		if uc, ok := nc.(*net.UnixConn); ok {
			// Stdin goes on while the session host takes what came
			// before: the client's window (1 MiB) fits, so that the
			// relay's writes do not wait for each read of the host.
			_ = uc.SetWriteBuffer(relaySendBytes)
		}
		done := make(chan struct{})
		go func() {
			// Not io.Copy: through the channel's bufio.Reader that
			// relays stdin in reads of at most its 32 KiB.
			copyRelay(nc, c.Reader(), stdinBulkRead)
			if uc, ok := nc.(*net.UnixConn); ok {
				uc.CloseWrite()
			}
			close(done)
		}()
		copyRelay(packetWriter{ch}, hc.Reader(), outputBulkRead)
		ch.CloseWrite()
		ch.Close()
		<-done
		return nil
	}
}

func (a *Agent) opNew(id identity, req *wire.Request) wire.Response {
	u, err := lookupUser(id.user)
	if err != nil {
		return wire.Refuse(err)
	}
	name := req.Session // checked by checkNames
	if name == "" {
		name = randomName()
	}
	var idle time.Duration
	if req.IdleTimeout != "" {
		idle, err = a.checkIdleTimeout(req.IdleTimeout)
		if err != nil {
			return wire.Refuse(err)
		}
	}
	sh, err := a.chooseShell(req.Shell, req.NoProfile)
	if err != nil {
		return wire.Refuse(err)
	}
	ref, err := a.spawn(u, name, req.Temporary, sh)
	if err != nil {
		return wire.Refuse(err)
	}
	// The creating client holds the session; this also sets its own idle timeout.
	info, err := a.call(ref, id, wire.Request{Op: wire.OpConnect, Client: req.Client, IdleTimeout: durString(idle)})
	if err != nil {
		return wire.Refuse(err)
	}
	return wire.Response{OK: true, Session: info.Session}
}

func durString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// checkIdleTimeout validates a per-session idle timeout against MaxIdleTimeout.
func (a *Agent) checkIdleTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, wire.Errorf(wire.CodeBadRequest, "bad --idle-timeout %q: use a positive Go duration like 30m or 2h", s)
	}
	if max := a.store.Effective().MaxIdleTimeout; max > 0 && d > max {
		return 0, wire.Errorf(wire.CodeLimit, "idle timeout %s is above MaxIdleTimeout (%s, %s); ask for less or ask an admin to raise it",
			d, max, a.sourceOf("MaxIdleTimeout"))
	}
	return d, nil
}

// call sends one request to a session host and reads its response.
func (a *Agent) call(ref *sessionRef, id identity, req wire.Request) (wire.Response, error) {
	nc, c, err := a.dialSession(ref, id, req)
	if err != nil {
		return wire.Response{}, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var resp wire.Response
	if err := c.ReadJSON(wire.TResponse, &resp); err != nil {
		return wire.Response{}, err
	}
	if !resp.OK && resp.Error != nil {
		return resp, resp.Error
	}
	return resp, nil
}

func (a *Agent) opList(id identity, req *wire.Request) wire.Response {
	if req.AllUsers && !id.admin {
		return wire.Refuse(wire.Errorf(wire.CodeDenied, "listing all users' sessions needs admin rights on this host (root or the agent's --admin-group)"))
	}
	a.rescanMissing(id.user, "") // stdio agents: sessions another one started (stdiorescan.go)
	var refs []*sessionRef
	a.mu.Lock()
	for user, m := range a.sessions {
		if user != id.user && !req.AllUsers {
			continue
		}
		for _, ref := range m {
			refs = append(refs, ref)
		}
	}
	a.mu.Unlock()
	infos := make([]wire.SessionInfo, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i] = a.status(ref, id)
			if ref.user != id.user {
				infos[i] = redacted(infos[i])
			}
		}()
	}
	wg.Wait()
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].User != infos[j].User {
			return infos[i].User < infos[j].User
		}
		return infos[i].Created.Before(infos[j].Created)
	})
	return wire.Response{OK: true, Sessions: infos}
}

// redacted is what an admin's `list --all-users` shows of another user's
// session: that it exists and its state, not what it runs or where its
// client is (docs/SECURITY.md).
func redacted(info wire.SessionInfo) wire.SessionInfo {
	info.Command = ""
	info.HeldBy = ""
	return info
}

func (a *Agent) status(ref *sessionRef, id identity) wire.SessionInfo {
	broken := wire.SessionInfo{Name: ref.name, User: ref.user, State: wire.StateBroken, Availability: wire.AvailNone, Created: ref.meta.Created, Reason: ref.broken}
	if ref.broken != "" {
		return broken
	}
	resp, err := a.call(ref, identity{user: ref.user, admin: id.admin, remote: id.remote}, wire.Request{Op: wire.OpStatus})
	if err != nil || resp.Session == nil {
		broken.Reason = fmt.Sprintf("session host does not answer: %v", err)
		return broken
	}
	return *resp.Session
}

func (a *Agent) opRemove(id identity, req *wire.Request) wire.Response {
	user := id.user
	if req.Owner != "" && req.Owner != id.user { // an admin removing another user's session
		if !id.admin {
			return wire.Refuse(a.notFound(id.user, req.Session))
		}
		user = req.Owner
	}
	ref := a.lookup(user, req.Session)
	if ref == nil {
		return wire.Refuse(a.notFound(user, req.Session))
	}
	if ref.broken != "" {
		a.unregister(ref)
		a.removeBroken(ref)
		a.log.Info("broken session removed", "user", user, "session", ref.name, "by", id.user)
		return wire.Response{OK: true}
	}
	by := fmt.Sprintf("%s from %s", id.user, orUnknown(req.Client.Host))
	resp, err := a.call(ref, id, wire.Request{Op: wire.OpClose, Client: wire.Client{ID: req.Client.ID, Host: by}, Reason: "removed with tether remove"})
	if err != nil {
		// The host may end before its answer is read (its close is
		// done by then): the session is removed if the host is gone.
		select {
		case <-ref.gone:
			a.log.Warn("session host ended without answering close; it is gone", "user", user, "session", ref.name, "err", err)
			resp, err = wire.Response{OK: true}, nil
		case <-time.After(2 * time.Second):
		}
	}
	if err != nil {
		return wire.Refuse(err)
	}
	// The host has closed; answer once the agent has removed its directory
	// and cgroup, so that the name can be used again at once.
	a.awaitGone(ref)
	a.unregister(ref)
	a.log.Info("session removed", "user", user, "session", ref.name, "by", id.user)
	return resp
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown client"
	}
	return s
}

// randomName is a short unique session name.
func randomName() string {
	const letters = "abcdefghjkmnpqrstuvwxyz23456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// admit checks the limits on opening one more session for user and
// reserves the slot: concurrent `new`s each count the others' reservations,
// so together they never pass MaxShellsPerUser or MaxConcurrentUsers.
// release gives the reservation back once the session is registered (or
// failed to start).
func (a *Agent) admit(user string) (release func(), err error) {
	s := a.store.Effective()
	release, err = a.admitWith(s, user)
	if wire.CodeOf(err) == wire.CodeLimit {
		// Another agent of this user (one per ssh connection or master)
		// may have just raised the limit in the settings file they share:
		// the user's next command must not be refused with the old value.
		a.store.Refresh()
		if now := a.store.Effective(); now != s {
			release, err = a.admitWith(now, user)
		}
	}
	return release, err
}

// admitWith is admit under the settings s.
func (a *Agent) admitWith(s config.Settings, user string) (release func(), err error) {
	if !s.AllowRemoteShellAccess {
		return nil, wire.Errorf(wire.CodeLimit, "AllowRemoteShellAccess is false on this host (%s); existing sessions keep running, ask an admin to allow new ones",
			a.sourceOf("AllowRemoteShellAccess"))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	mine := len(a.sessions[user]) + a.spawning[user]
	users := len(a.sessions)
	for u := range a.spawning {
		if _, ok := a.sessions[u]; !ok {
			users++
		}
	}
	_, known := a.sessions[user]
	known = known || a.spawning[user] > 0
	if s.MaxShellsPerUser > 0 && mine >= s.MaxShellsPerUser {
		return nil, wire.Errorf(wire.CodeLimit, "MaxShellsPerUser (%d) reached for %s; remove a session (tether list %%HOST%%) or ask an admin to raise it",
			s.MaxShellsPerUser, user)
	}
	if s.MaxConcurrentUsers > 0 && !known && users >= s.MaxConcurrentUsers {
		return nil, wire.Errorf(wire.CodeLimit, "MaxConcurrentUsers (%d) reached on this host; try later or ask an admin to raise it",
			s.MaxConcurrentUsers)
	}
	a.spawning[user]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.spawning[user]--; a.spawning[user] <= 0 {
			delete(a.spawning, user)
		}
	}, nil
}

// sourceOf says where a setting's value comes from, for refusal messages.
func (a *Agent) sourceOf(key string) string {
	e, err := a.store.Get(key)
	if err != nil {
		return "default"
	}
	switch e.Source {
	case config.Source("policy"):
		return "set by policy " + e.SetBy
	case config.Source("local"):
		return "set in " + e.SetBy
	}
	return "the default"
}

// limits are the per-session settings, as session hosts enforce them.
func (a *Agent) limits() wire.Limits {
	s := a.store.Effective()
	return wire.Limits{
		IdleTimeout:    wire.Duration(s.IdleTimeout),
		MaxRunTime:     wire.Duration(s.MaxShellRunTime),
		JournalBytes:   int64(s.MaxOutputBufferMB) << 20,
		BufferingMode:  s.OutputBufferingMode,
		MaxProcesses:   s.MaxProcessesPerShell,
		MaxMemoryBytes: int64(s.MaxMemoryPerShellMB) << 20,
	}
}

func (a *Agent) pushLimits() {
	a.mu.Lock()
	var refs []*sessionRef
	for _, m := range a.sessions {
		for _, ref := range m {
			if ref.broken == "" {
				refs = append(refs, ref)
			}
		}
	}
	a.mu.Unlock()
	for _, ref := range refs {
		a.pushLimitsTo(ref)
	}
}

func (a *Agent) pushLimitsTo(ref *sessionRef) {
	if ref.group != nil {
		if err := ref.group.Update(a.limitSpec()); err != nil {
			a.log.Warn("cannot update session cgroup", "user", ref.user, "session", ref.name, "err", err)
		}
	}
	l := a.limits()
	if _, err := a.call(ref, identity{user: ref.user}, wire.Request{Op: wire.OpLimits, Limits: &l}); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("cannot update session limits", "user", ref.user, "session", ref.name, "err", err)
	}
}

// relayBufs lends the large buffers that bulk output is relayed through.
var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufBytes); return &b }}

const relayBufBytes = 256 << 10

// relaySendBytes is the send buffer of the relay's connection to a
// session host: the client's stdin window.
const relaySendBytes = 1 << 20

// copyRelay relays a session host's output to the client, or the client's
// stdin to the session host. Bulk data goes in large reads (the SSH
// channel cuts it into packets anyway, and each read of the socket is a
// syscall), but a large buffer is borrowed only while data flows (reads of
// at least bulk bytes): a relay waiting on a quiet command, or one of a
// thousand fan-out targets, holds a small one.
const (
	// The session host writes output in frames of up to 256 KiB.
	outputBulkRead = relayBufBytes / 4
	// A read of the channel returns the packets that arrived, each at
	// most 32 KiB: one or two of them is bulk. (Falling back to the small
	// buffer after each packet split every packet into two writes, #18.)
	stdinBulkRead = 16 << 10
)

// sshDataPayload is the most output sent in one SSH data packet: the
// receiver's x/crypto/ssh copies each packet it reads (9 bytes of header
// and the payload) into a fresh allocation, and at its full 32 KiB
// payload that is 32,777 bytes, a large object (page-allocated, zeroed,
// 40 KiB); 9 bytes less fits Go's largest small size class, 32 KiB.
// A Go client's output path allocated 1.25 GiB per GiB and ran a
// collection every ~2.7 MiB (#18).
const sshDataPayload = 1<<15 - 9

// packetWriter writes to an SSH channel in packets of at most
// sshDataPayload bytes.
type packetWriter struct{ ch ssh.Channel }

func (w packetWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), sshDataPayload)
		m, err := w.ch.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func copyRelay(dst io.Writer, src io.Reader, bulk int) {
	// src may hold bytes read with the Hello; once it is empty, bufio
	// reads into a buffer at least as large as its own directly.
	var small [4 << 10]byte
	for {
		n, err := src.Read(small[:])
		if n > 0 {
			if _, werr := dst.Write(small[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if n < len(small) {
			continue
		}
		bp := relayBufs.Get().(*[]byte)
		for {
			n, err = src.Read(*bp)
			if n > 0 {
				if _, werr := dst.Write((*bp)[:n]); werr != nil {
					err = werr
				}
			}
			if err != nil || n < bulk {
				break // ended, or no longer bulk
			}
		}
		relayBufs.Put(bp)
		if err != nil {
			return
		}
	}
}
