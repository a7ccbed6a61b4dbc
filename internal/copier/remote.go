package copier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/sftpserve"
	"github.com/tether-sh/tether/internal/wire"
)

// remote is one session's end of a copy: an SFTP client on a wire.OpSftp
// channel, redialled (same session) when the transport breaks, and the
// session host's hash op. Safe for concurrent use.
type remote struct {
	d       *client.Dialer
	target  client.Target // the address as given (bare host: no session)
	timeout time.Duration // reconnect within this; < 0: never
	notify  io.Writer
	push    bool // larger write packets

	mu      sync.Mutex
	gen     int
	conn    *client.Conn
	sc      *sftp.Client   // the first stream
	scs     []*sftp.Client // every stream: pkg/sftp's server does one metadata op at a time per stream
	next    int
	streams int // how many streams to keep open (≥ 1)
	// bulk asks for the fd path (wire.Request.FdPass) on every stream:
	// set for a push of a file of sftpserve.PassAfter bytes or more, and
	// for a pull. A tree of small files does without it: the relay's
	// parsing and the session host's front cost it 10-20 % more CPU and
	// its files are too small to have their fds passed.
	bulk       bool
	packet     int           // the data of one SFTP write the host takes
	algo       string        // the checksum: sftpserve.HashXXH128 when the host offers it
	dead       chan struct{} // closed when the first stream has ended
	session    string        // filled from the first answer (temporary sessions)
	temporary  bool
	cwd, home  string
	created    int // the mode pkg/sftp's server gives a file it creates; -1 unknown
	reconnects int

	hmu      sync.Mutex
	hpending []*hashCall
	hrunning bool
}

// maxPacket bounds the SFTP packet a host may ask for: pkg/sftp's 256 KiB
// message limit (both ends) less room for the header.
const maxPacket = 255 << 10

// ErrChanged is a source that changed while it was copied; the destination
// was left as it was.
var ErrChanged = errors.New("changed while it was copied")

// ErrChecksum is a copy whose checksum on the two sides differs.
var ErrChecksum = errors.New("checksum mismatch")

func newRemote(d *client.Dialer, t client.Target, o *Options, push bool) *remote {
	return &remote{d: d, target: t, timeout: o.reconnectTimeout(), notify: o.Notify, push: push, session: t.Session, streams: 1, bulk: !push}
}

// open dials and opens the SFTP stream; the first call of a bare host
// gets a temporary session, later ones go back to it.
func (r *remote) open(ctx context.Context) error {
	conn, err := r.d.Dial(ctx, r.target)
	if err != nil {
		return err
	}
	dead := make(chan struct{})
	var once sync.Once
	sc, resp, err := r.openStream(conn, dead, &once)
	if err != nil {
		conn.Close()
		return err
	}
	scs := []*sftp.Client{sc}
	if resp.Session != nil {
		r.session = resp.Session.Name // a temporary session's other streams go to it
	}
	for len(scs) < r.streams {
		more, _, err := r.openStream(conn, dead, &once)
		if err != nil {
			break // fewer streams (a channel limit) is only slower
		}
		scs = append(scs, more)
	}
	r.conn, r.sc, r.scs, r.dead = conn, sc, scs, dead
	if resp.Session != nil {
		r.session, r.temporary = resp.Session.Name, resp.Session.Temporary
	}
	if r.cwd == "" { // relative paths mean the directory of the first answer
		r.cwd, r.home = resp.Cwd, resp.Home
		if resp.Hash == sftpserve.HashXXH128 {
			r.algo = sftpserve.HashXXH128
		}
		r.created = -1
		if m, err := strconv.ParseUint(resp.Umask, 8, 32); err == nil && resp.Umask != "" {
			r.created = int(0o644 &^ m)
		}
	}
	r.gen++
	return nil
}

// openStream opens one SFTP stream on conn; dead is closed when any
// stream ends.
func (r *remote) openStream(conn *client.Conn, dead chan struct{}, once *sync.Once) (*sftp.Client, wire.Response, error) {
	var resp wire.Response
	wc, ch, err := conn.Open(wire.Request{Op: wire.OpSftp, Session: r.session, Client: r.d.Client, Grace: wire.Duration(max(r.timeout, time.Minute)), FdPass: r.bulk})
	if err != nil {
		return nil, resp, remoteErr(r.target, err)
	}
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, resp, fmt.Errorf("%w: %v", client.ErrTransport, err)
	}
	if !resp.OK {
		ch.Close()
		return nil, resp, remoteErr(r.target, resp.Error)
	}
	opts := []sftp.ClientOption{sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(64)}
	r.packet = 32 << 10
	switch {
	case resp.MaxPacket > 0:
		// The host's server says what it reads and writes in one packet
		// (fewer, larger packets: less work per byte in all three
		// processes). Its 256 KiB message limit caps what it may say.
		r.packet = min(resp.MaxPacket, maxPacket)
		opts = append(opts, sftp.MaxPacketUnchecked(r.packet))
	case r.push:
		r.packet = 128 << 10
		// An older host: its server takes writes up to its 256 KiB
		// message limit, but answers reads with at most 32 KiB, and
		// pkg/sftp's concurrent reads would leave a gap after each short
		// answer, so pulls keep the default.
		opts = append(opts, sftp.MaxPacketUnchecked(128<<10))
	}
	sc, err := sftp.NewClientPipe(wc.Reader(), ch, opts...)
	if err != nil {
		ch.Close()
		return nil, resp, fmt.Errorf("%s: start SFTP: %w", r.target, err)
	}
	go func() { sc.Wait(); once.Do(func() { close(dead) }) }()
	return sc, resp, nil
}

// widen opens more streams, up to n, for a tree of many files or a large
// push.
func (r *remote) widen(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streams = max(r.streams, n)
	if r.conn == nil {
		return
	}
	// The streams share the generation's dead channel through the once
	// of the first; a new once here would close it twice, so extra
	// streams report their end by closing the first stream's client.
	for len(r.scs) < n {
		dead := make(chan struct{})
		var once sync.Once
		sc, _, err := r.openStream(r.conn, dead, &once)
		if err != nil {
			return
		}
		first := r.sc
		go func() { <-dead; first.Close() }()
		r.scs = append(r.scs, sc)
	}
}

func remoteErr(t client.Target, err error) error {
	var we *wire.Error
	if !errors.As(err, &we) {
		return err
	}
	kind := map[string]error{
		wire.CodeNotFound: client.ErrNotFound, wire.CodeClosed: client.ErrClosed, wire.CodeBusy: client.ErrBusy,
		wire.CodeLimit: client.ErrLimit, wire.CodeDenied: client.ErrDenied, wire.CodeDisconnected: client.ErrBusy,
	}[we.Code]
	if kind == nil {
		kind = client.ErrDenied
	}
	return &refusal{kind: kind, msg: we.Message}
}

// refusal is the host's no: its message, matching a client sentinel.
type refusal struct {
	kind error
	msg  string
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.kind }

// client returns an SFTP client of the current generation (the streams in
// turn) and the generation.
func (r *remote) client() (*sftp.Client, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.scs) == 0 {
		return r.sc, r.gen
	}
	r.next++
	return r.scs[r.next%len(r.scs)], r.gen
}

// all returns every stream of the current generation, its generation and
// the data of one write.
func (r *remote) all() ([]*sftp.Client, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.scs) == 0 {
		return []*sftp.Client{r.sc}, r.gen, r.packet
	}
	return append([]*sftp.Client(nil), r.scs...), r.gen, r.packet
}

// lost says whether err means generation gen's transport is gone (so the
// operation should be retried after reconnect), not that the host refused.
func (r *remote) lost(gen int, err error) bool {
	if err == nil {
		return false
	}
	r.mu.Lock()
	dead, cur := r.dead, r.gen
	r.mu.Unlock()
	if cur != gen {
		return true // already reconnected under us
	}
	select {
	case <-dead:
		return true
	default:
	}
	return transportError(err)
}

// transportError says whether err is the connection failing rather than
// the host answering: a socket error can reach a writer before the
// stream's reader has seen the end and closed dead.
func transportError(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, client.ErrTransport) || errors.As(err, &opErr) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// reconnect replaces generation gen's connection (once, however many
// workers saw it break), trying for up to the reconnect timeout.
func (r *remote) reconnect(ctx context.Context, gen int, cause error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return nil
	}
	if r.sc != nil {
		for _, sc := range r.scs {
			sc.Close()
		}
		r.conn.Close()
	}
	if r.timeout < 0 {
		return fmt.Errorf("%w: %v", client.ErrTransport, cause)
	}
	start := time.Now()
	if r.notify != nil {
		fmt.Fprintf(r.notify, "tether: connection to %s lost (%v); reconnecting for up to %s\n", r.target.HostString(), cause, r.timeout)
	}
	backoff := 50 * time.Millisecond
	last := cause
	for time.Since(start) < r.timeout {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := r.open(ctx)
		if err == nil {
			r.reconnects++
			if r.notify != nil {
				fmt.Fprintf(r.notify, "tether: reconnected to %s after %s; the copy resumes\n", r.target.WithSession(r.session), time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		var he *client.HostError
		if !errors.Is(err, client.ErrTransport) && !errors.As(err, &he) {
			return err // the host answered no: session closed, taken over
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return fmt.Errorf("%w: gave up reconnecting to %s after %s: %v", client.ErrTransport, r.target.HostString(), r.timeout, last)
}

// do runs op with the current client, reconnecting and retrying while the
// transport is what failed.
func (r *remote) do(ctx context.Context, op func(sc *sftp.Client) error) error {
	for {
		sc, gen := r.client()
		err := op(sc)
		if err == nil || !r.lost(gen, err) {
			return err
		}
		if rerr := r.reconnect(ctx, gen, err); rerr != nil {
			return rerr
		}
	}
}

type hashCall struct {
	f    wire.HashFile
	res  wire.HashResult
	err  error
	done chan struct{}
}

// hash asks the session host for the checksum of n bytes of p from off.
// Calls made while one is in flight go together in the next request, so
// a tree of small files costs a few round trips, not one per file.
func (r *remote) hash(ctx context.Context, p string, off, n int64) (wire.HashResult, error) {
	return r.hashFile(ctx, wire.HashFile{Path: p, Offset: off, Length: n, Algo: r.algo})
}

// hashFile is hash for any HashFile (a chain's check).
func (r *remote) hashFile(ctx context.Context, f wire.HashFile) (wire.HashResult, error) {
	c := r.ask(ctx, f)
	<-c.done
	return c.res, c.err
}

// ask queues f for the next hash request (requests keep the order of
// the calls) and returns its call, done when answered.
func (r *remote) ask(ctx context.Context, f wire.HashFile) *hashCall {
	c := &hashCall{f: f, done: make(chan struct{})}
	r.hmu.Lock()
	r.hpending = append(r.hpending, c)
	if !r.hrunning {
		r.hrunning = true
		go r.hashLoop(ctx)
	}
	r.hmu.Unlock()
	return c
}

func (r *remote) hashLoop(ctx context.Context) {
	for {
		r.hmu.Lock()
		batch := r.hpending[:min(len(r.hpending), wire.MaxHashFiles)]
		r.hpending = r.hpending[len(batch):]
		if len(batch) == 0 {
			r.hrunning = false
			r.hmu.Unlock()
			return
		}
		r.hmu.Unlock()
		files := make([]wire.HashFile, len(batch))
		for i, c := range batch {
			files[i] = c.f
		}
		res, err := r.hashBatch(ctx, files)
		for i, c := range batch {
			if err == nil {
				c.res = res[i]
			}
			c.err = err
			close(c.done)
		}
	}
}

func (r *remote) hashBatch(ctx context.Context, files []wire.HashFile) ([]wire.HashResult, error) {
	for {
		r.mu.Lock()
		conn, gen, session := r.conn, r.gen, r.session
		r.mu.Unlock()
		resp, err := conn.Call(ctx, wire.Request{Op: wire.OpHash, Session: session, Client: r.d.Client, Files: files})
		if err == nil {
			if len(resp.Hashes) != len(files) {
				return nil, fmt.Errorf("%s: the host answered %d hashes for %d files", r.target, len(resp.Hashes), len(files))
			}
			return resp.Hashes, nil
		}
		if !errors.Is(err, client.ErrTransport) {
			return nil, fmt.Errorf("%s: hash: %w", r.target, err)
		}
		if rerr := r.reconnect(ctx, gen, err); rerr != nil {
			return nil, rerr
		}
	}
}

// close ends the SFTP stream; a temporary session is removed with it.
func (r *remote) close(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sc == nil {
		return
	}
	for _, sc := range r.scs {
		sc.Close()
	}
	if r.temporary {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		r.conn.Call(ctx, wire.Request{Op: wire.OpRemove, Session: r.session, Client: r.d.Client})
		cancel()
	}
	r.conn.Close()
	r.sc = nil
}

// abs resolves a remote path as the session would: relative to its
// current directory, ~ its user's home.
func (r *remote) abs(p string) string {
	switch {
	case p == "~":
		return r.home
	case len(p) >= 2 && p[:2] == "~/":
		return joinRemote(r.home, p[2:])
	case p == "":
		return r.cwd
	case p[0] == '/':
		return cleanRemote(p)
	}
	return joinRemote(r.cwd, p)
}
