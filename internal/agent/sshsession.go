package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/sessionhost"
	"github.com/tether-sh/tether/internal/wire"
)

// SessionChannelType is RFC 4254's interactive session channel, which the
// stock OpenSSH tools (ssh, scp, sftp, rsync, Ansible) open. The agent
// serves it next to its own channel type: exec and shell run in sessions
// as `tether invoke` and `tether enter` do, subsystem sftp runs the user's
// `tether sftp-server`.
const SessionChannelType = "session"

// EnvSession is the env request that names the session an ssh client's
// exec or shell runs in (ssh -o SetEnv=TETHER_SESSION=NAME); it is made if
// it does not exist, and outlives the client.
const EnvSession = "TETHER_SESSION"

// sshTempGrace is how long a temporary session of an ssh client waits
// after the client went away before it stops the command: an ssh client
// never comes back to resume, so at once.
const sshTempGrace = time.Millisecond

// eofGrace is how long an EOF on a named session's channel waits to see
// whether the channel is closing (the connection broke) rather than
// half-closed by the client (docs/ARCHITECTURE.md).
const eofGrace = 200 * time.Millisecond

// refuseChannel rejects channel types other than Tether's and session:
// port forwarding (direct-tcpip, forwarded-tcpip, direct-streamlocal) and
// X11 would make the agent a network relay for the user, which Tether does
// not offer (docs/SECURITY.md).
func refuseChannel(nc ssh.NewChannel) {
	switch t := nc.ChannelType(); {
	case t == "direct-tcpip" || t == "forwarded-tcpip" || strings.HasPrefix(t, "direct-streamlocal") || strings.HasPrefix(t, "forwarded-streamlocal"):
		nc.Reject(ssh.Prohibited, "port forwarding is refused by tether agents")
	case t == "x11":
		nc.Reject(ssh.Prohibited, "X11 forwarding is refused by tether agents")
	default:
		nc.Reject(ssh.UnknownChannelType, "tether agents speak "+ChannelType+" and the ssh session channel; "+t+" is not supported")
	}
}

// sshSession is one session channel of a stock SSH client.
type sshSession struct {
	a   *Agent
	ch  ssh.Channel
	id  identity
	log *slog.Logger

	mu      sync.Mutex
	tty     *wire.TTY
	session string // TETHER_SESSION, or attach NAME
	started bool

	resize  chan [2]int
	signals chan string
	gone    chan struct{} // the client closed the channel
	in      *channelInput
}

// acceptSession serves a session channel; release frees its
// MaxSessionsPerConnection slot once the client's close has arrived and the
// agent is done with it.
func (a *Agent) acceptSession(ctx context.Context, nc ssh.NewChannel, id identity, release func()) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		release()
		return
	}
	s := &sshSession{a: a, ch: ch, id: id, log: a.log.With("user", id.user, "remote", id.remote, "channel", "session"),
		resize: make(chan [2]int, 1), signals: make(chan string, 8), gone: make(chan struct{})}
	s.in = newChannelInput(ch, s.gone)
	done := make(chan struct{})
	var once sync.Once
	finish := func() { once.Do(func() { close(done) }) }
	go func() {
		s.requests(ctx, reqs, finish)
		close(s.gone)
		<-done
		release()
	}()
	// A channel whose client asks for nothing is closed like an idle
	// Tether channel (FirstRequestTimeout).
	go func() {
		t := time.NewTimer(a.opts.FirstRequestTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			s.mu.Lock()
			idle := !s.started
			s.started = true
			s.mu.Unlock()
			if idle {
				ch.Close()
				finish()
			}
		case <-s.gone:
			s.mu.Lock()
			idle := !s.started
			s.started = true
			s.mu.Unlock()
			if idle {
				ch.Close()
				finish()
			}
		}
	}()
}

// requests handles the channel's requests until the client closes it.
func (s *sshSession) requests(ctx context.Context, reqs <-chan *ssh.Request, finish func()) {
	for r := range reqs {
		ok := false
		switch r.Type {
		case "pty-req":
			var p struct {
				Term             string
				Cols, Rows, W, H uint32
				Modes            string
			}
			if ssh.Unmarshal(r.Payload, &p) == nil {
				s.mu.Lock()
				if !s.started {
					s.tty = &wire.TTY{Term: p.Term, Rows: int(p.Rows), Cols: int(p.Cols)}
					ok = true
				}
				s.mu.Unlock()
			}
		case "env":
			var e struct{ Name, Value string }
			if ssh.Unmarshal(r.Payload, &e) == nil {
				ok = s.env(e.Name, e.Value)
			}
		case "window-change":
			var w struct{ Cols, Rows, W, H uint32 }
			if ssh.Unmarshal(r.Payload, &w) == nil {
				select {
				case <-s.resize: // only the latest size matters
				default:
				}
				s.resize <- [2]int{int(w.Rows), int(w.Cols)}
				ok = true
			}
		case "signal":
			var sig struct{ Name string }
			if ssh.Unmarshal(r.Payload, &sig) == nil {
				select {
				case s.signals <- sig.Name:
					ok = true
				default:
				}
			}
		case "exec", "shell", "subsystem":
			var arg struct{ Value string }
			if r.Type != "shell" && ssh.Unmarshal(r.Payload, &arg) != nil {
				break
			}
			if r.Type == "subsystem" && arg.Value != "sftp" {
				s.log.Info("subsystem refused", "subsystem", arg.Value)
				break
			}
			s.mu.Lock()
			ok = !s.started
			s.started = true
			s.mu.Unlock()
			if ok {
				go func() {
					defer finish()
					s.serve(ctx, r.Type, arg.Value)
				}()
			}
		case "x11-req", "auth-agent-req@openssh.com":
			// Refused: see refuseChannel. OpenSSH asks for X11 with a
			// reply and says so itself; agent forwarding it asks for
			// without one, so the refusal goes to the client's stderr.
			s.log.Info("request refused", "request", r.Type)
			if !r.WantReply {
				s.mu.Lock()
				nl := "\n"
				if s.tty != nil {
					nl = "\r\n"
				}
				s.mu.Unlock()
				fmt.Fprintf(s.ch.Stderr(), "tether: %s refused: this agent does not forward ssh agents, X11 or ports%s", r.Type, nl)
			}
		}
		if r.WantReply {
			r.Reply(ok, nil)
		}
	}
}

// env takes TERM and TETHER_SESSION; every other variable is refused, as
// sshd's AcceptEnv refuses unlisted ones (a session's environment is the
// host's, not the client's).
func (s *sshSession) env(name, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	switch name {
	case "TERM":
		if s.tty != nil {
			s.tty.Term = value
		}
		return true
	case EnvSession:
		if ValidName(value) != nil {
			return false
		}
		s.session = value
		return true
	}
	return false
}

// serve runs the channel's one exec, shell or subsystem and ends the
// channel with its exit status.
func (s *sshSession) serve(ctx context.Context, kind, arg string) {
	defer s.ch.Close()
	var code int
	var err error
	if kind == "subsystem" {
		code, err = s.sftp()
	} else {
		code, err = s.run(ctx, kind, arg)
	}
	select {
	case <-s.gone:
		s.log.Debug("ssh "+kind+": the client went away", "err", err)
		return
	default:
	}
	if err != nil {
		s.log.Info("ssh "+kind+" failed", "err", err)
		fmt.Fprintf(s.ch.Stderr(), "tether: %s\n", strings.ReplaceAll(err.Error(), "%HOST%", "this host"))
		code = 255
	}
	s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	s.ch.CloseWrite()
}

// attachCommand parses the exec form that lands in a named session:
// "attach NAME".
func attachCommand(cmd string) (name string, ok bool) {
	f := strings.Fields(cmd)
	if len(f) == 2 && f[0] == "attach" {
		return f[1], true
	}
	return "", false
}

// run is exec and shell: in a temporary session, or in the named one.
func (s *sshSession) run(ctx context.Context, kind, command string) (int, error) {
	a := s.a
	a.awaitDiscovery()
	u, err := lookupUser(s.id.user)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	name, tty := s.session, s.tty
	s.mu.Unlock()
	attach := false
	if kind == "exec" {
		if n, ok := attachCommand(command); ok {
			if err := ValidName(n); err != nil {
				return 0, wire.Errorf(wire.CodeBadRequest, "attach: %v", err)
			}
			name, attach, kind = n, true, "shell"
		}
	}
	req := wire.Request{Op: wire.OpRun, Stdin: true, TTY: tty,
		Client: wire.Client{ID: "ssh-" + randomName(), Host: "ssh from " + s.id.remote}}
	if kind == "shell" {
		req.Argv = wire.Args{loginShell(u.Username), "-l"}
	} else {
		req.Command = command
	}
	var ref *sessionRef
	if name == "" {
		sh, err := a.chooseShell("", false)
		if err != nil {
			return 0, err
		}
		if ref, err = a.spawn(u, "tmp-"+randomName(), true, sh); err != nil {
			return 0, err
		}
		req.Grace = wire.Duration(sshTempGrace)
	} else if ref = a.lookup(u.Username, name); ref == nil {
		sh, err := a.chooseShell("", false)
		if err != nil {
			return 0, err
		}
		if ref, err = a.spawn(u, name, false, sh); err != nil && wire.CodeOf(err) != wire.CodeExists {
			return 0, err
		}
		if ref == nil { // made by a racing client a moment ago
			if ref = a.lookup(u.Username, name); ref == nil {
				return 0, a.notFound(u.Username, name)
			}
		}
	}
	if ref.broken != "" {
		return 0, wire.Errorf(wire.CodeClosed, "session %s is Broken: %s; remove it with tether remove", ref.name, ref.broken)
	}
	if attach {
		// Take the session over (as tmux attach -d) and follow what runs
		// in it: the shell of an earlier ssh -t ... attach, which went on
		// when its client went away. Nothing running: its pending output,
		// then a new shell.
		code, ran, err := s.follow(ctx, ref, wire.Request{Op: wire.OpReceive, Force: true, Client: req.Client}, true)
		if err != nil || ran {
			return code, err
		}
	}
	code, _, err := s.follow(ctx, ref, req, false)
	return code, err
}

// follow sends req to the session host and relays the stream it answers
// with until the command's exit record (or, for a receive while nothing
// runs, its last pending record). ran says that a command was followed.
func (s *sshSession) follow(ctx context.Context, ref *sessionRef, req wire.Request, receive bool) (code int, ran bool, err error) {
	nc, hc, err := s.a.dialSession(ref, s.id, req)
	if err != nil {
		return 0, false, err
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var resp wire.Response
	if err := hc.ReadJSON(wire.TResponse, &resp); err != nil {
		return 0, false, fmt.Errorf("session host for %s: %w", ref.name, err)
	}
	nc.SetReadDeadline(time.Time{})
	if !resp.OK {
		return 0, false, resp.Error
	}
	if resp.Session != nil {
		s.log.Debug("ssh command started", "session", resp.Session.Name, "temporary", resp.Session.Temporary)
	}
	f := &hostStream{s: s, hc: hc, cmd: resp.Cmd, until: resp.Until, last: resp.StartSeq,
		stdin: resp.Cmd != 0, persistent: !ref.meta.Temporary, stop: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	if receive && resp.Cmd == 0 && resp.Until <= resp.StartSeq {
		return 0, false, nil // nothing running, nothing pending
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.controls() }()
	go func() { defer wg.Done(); f.acks() }()
	if f.stdin {
		wg.Add(1)
		go func() { defer wg.Done(); f.pumpStdin() }()
	}
	// The client going away breaks the stream: a temporary session then
	// stops its command (sshTempGrace), a named one keeps it running.
	go func() {
		select {
		case <-s.gone:
			nc.Close()
		case <-f.stop:
		case <-ctx.Done():
			nc.Close()
		}
	}()
	code, msg, err := f.read()
	close(f.stop)
	f.wakeStdin()
	wg.Wait()
	if err != nil {
		return 0, resp.Cmd != 0, err
	}
	if msg != "" {
		fmt.Fprintf(s.ch.Stderr(), "tether: %s\n", msg)
	}
	// The host closes once it has our final ack; waiting for that lets a
	// temporary session go before the client's next command counts it.
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, nc)
	return code, resp.Cmd != 0, nil
}

// hostStream is one stream of records from a session host to an ssh
// channel, and the channel's stdin, signals and window size back.
type hostStream struct {
	s     *sshSession
	hc    *wire.Conn
	cmd   uint32 // the command followed; 0: a receive while nothing runs
	until uint64 // receive while nothing runs: the last record pending
	stdin bool
	// persistent: a named session, which outlives the client (an EOF
	// is passed on only once it is sure to be the client's).
	persistent bool

	mu       sync.Mutex
	last     uint64 // the last record delivered
	acked    uint64
	consumed uint64 // stdin bytes the host has consumed
	ackSeen  bool   // the host's first StdinAck: where stdin resumes
	cond     *sync.Cond
	stop     chan struct{}
}

// read relays records until the end; it returns the exit status.
func (f *hostStream) read() (code int, msg string, err error) {
	ch := f.s.ch
	for {
		t, p, err := f.hc.Read()
		if err != nil {
			select {
			case <-f.s.gone:
				return 0, "", errors.New("the ssh client went away")
			default:
			}
			return 0, "", fmt.Errorf("session host ended the stream: %w", err)
		}
		switch t {
		case wire.TOutput:
			o, err := wire.DecodeOutput(p)
			if err != nil {
				return 0, "", err
			}
			switch o.Kind {
			case wire.KindStdout:
				if _, err := ch.Write(o.Data); err != nil {
					return 0, "", err
				}
			case wire.KindStderr:
				if _, err := ch.Stderr().Write(o.Data); err != nil {
					return 0, "", err
				}
			case wire.KindExit:
				if o.Cmd == f.cmd {
					code, msg, _ = wire.DecodeExit(o.Data)
				}
			}
			f.mu.Lock()
			f.last = o.Seq
			f.mu.Unlock()
			if f.cmd != 0 && o.Kind == wire.KindExit && o.Cmd == f.cmd || f.cmd == 0 && o.Seq >= f.until {
				// The host completes on this ack.
				f.hc.WriteU64(wire.TAck, o.Seq, nil)
				return code, msg, nil
			}
		case wire.TStdinAck:
			off, _, err := wire.DecodeU64(t, p)
			if err == nil {
				f.lockCond()
				if !f.ackSeen || off > f.consumed {
					f.consumed, f.ackSeen = off, true
				}
				f.cond.Broadcast()
				f.mu.Unlock()
			}
		case wire.TEvent:
			var ev wire.Event
			wire.DecodeJSON(t, p, &ev)
			return 0, "", fmt.Errorf("detached: %s", ev.Reason)
		case wire.TResponse:
			var resp wire.Response
			wire.DecodeJSON(t, p, &resp)
			if !resp.OK && resp.Error != nil {
				return 0, "", resp.Error
			}
		}
	}
}

func (f *hostStream) lockCond() { f.mu.Lock() }

func (f *hostStream) wakeStdin() {
	f.lockCond()
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *hostStream) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// acks tells the host what was delivered, batched by time so that a chatty
// command costs few frames.
func (f *hostStream) acks() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		seq := f.last
		send := seq != f.acked
		f.acked = seq
		f.mu.Unlock()
		if send && f.hc.WriteU64(wire.TAck, seq, nil) != nil {
			return
		}
	}
}

// controls forwards the client's signals and window size.
func (f *hostStream) controls() {
	for {
		select {
		case <-f.stop:
			return
		case sig := <-f.s.signals:
			f.hc.WriteJSON(wire.TSignal, wire.Signal{Name: sig})
		case sz := <-f.s.resize:
			f.hc.WriteResize(sz[0], sz[1])
		}
	}
}

// pumpStdin sends the channel's data as the command's stdin, never more
// than the host's window ahead of what the command consumed, from the
// offset the host's first StdinAck gives (a reattached command's stdin
// goes on where it was).
func (f *hostStream) pumpStdin() {
	var sent uint64
	f.lockCond()
	for !f.ackSeen && !f.stopped() {
		f.cond.Wait()
	}
	sent = f.consumed
	f.mu.Unlock()
	for {
		data, eof := f.s.in.next(f.stop)
		if data == nil && !eof {
			return // stopped
		}
		if len(data) > 0 {
			f.lockCond()
			for sent+uint64(len(data))-f.consumed > sessionhost.StdinWindow && !f.stopped() {
				f.cond.Wait()
			}
			f.mu.Unlock()
			if f.stopped() {
				f.s.in.unread(data)
				return
			}
			if f.hc.WriteU64(wire.TStdin, sent, data) != nil {
				return
			}
			sent += uint64(len(data))
			continue
		}
		if f.persistent {
			// A channel closed by a connection that broke reads as EOF
			// too, a moment before the channel is gone: the shell of a
			// named session must not get an EOF its client never sent.
			select {
			case <-f.s.gone:
				return
			case <-f.stop:
				return
			case <-time.After(eofGrace):
			}
		}
		f.hc.WriteU64(wire.TStdinEOF, sent, nil)
		return
	}
}

// channelInput reads the channel's data for the streams of one channel in
// turn: a chunk taken by a stream that stops before sending it is given
// back for the next one (attach: a receive, then a new shell).
type channelInput struct {
	chunks chan []byte // closed at EOF
	held   []byte
}

func newChannelInput(ch ssh.Channel, gone <-chan struct{}) *channelInput {
	in := &channelInput{chunks: make(chan []byte)}
	go func() {
		defer close(in.chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := ch.Read(b)
			if n > 0 {
				select {
				case in.chunks <- b[:n]:
				case <-gone: // nobody takes input any more
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return in
}

// next is the next chunk, or eof; nil, false when stop closed first.
func (in *channelInput) next(stop <-chan struct{}) ([]byte, bool) {
	if in.held != nil {
		b := in.held
		in.held = nil
		return b, false
	}
	select {
	case b, ok := <-in.chunks:
		if !ok {
			return nil, true
		}
		return b, false
	case <-stop:
		return nil, false
	}
}

func (in *channelInput) unread(b []byte) { in.held = b }

// sftp runs `tether sftp-server` as the user, with her home as its working
// directory, on the channel: the agent moves bytes and never touches a
// file itself (docs/SECURITY.md).
func (s *sshSession) sftp() (int, error) {
	a := s.a
	if !a.store.Effective().AllowRemoteShellAccess {
		return 0, wire.Errorf(wire.CodeLimit, "AllowRemoteShellAccess is false on this host (%s); ask an admin to allow remote access",
			a.sourceOf("AllowRemoteShellAccess"))
	}
	u, err := lookupUser(s.id.user)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(a.opts.Executable, "sftp-server")
	cmd.Dir = u.HomeDir // entered after the switch to the user (forkExec sets credentials first)
	cmd.Env = a.sessionEnv(u)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if a.root && u.Uid != "0" {
		cred, err := credential(u)
		if err != nil {
			return 0, err
		}
		cmd.SysProcAttr.Credential = cred
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stdout = s.ch
	cmd.Stderr = s.ch.Stderr()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start sftp server: %w", err)
	}
	s.log.Info("sftp server started", "pid", cmd.Process.Pid)
	go func() {
		defer stdin.Close()
		stop := make(chan struct{})
		go func() { <-s.gone; close(stop) }()
		for {
			b, eof := s.in.next(stop)
			if eof || b == nil {
				return
			}
			if _, err := stdin.Write(b); err != nil {
				return
			}
		}
	}()
	go func() {
		// A client that goes away without EOF: the server's stdin closes
		// above; this is the backstop for one that ignores it.
		<-s.gone
		time.AfterFunc(5*time.Second, func() { cmd.Process.Kill() })
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("sftp server: %w", err)
	}
	return 0, nil
}
