package wire

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Hello opens every conversation, in both directions. The agent adds the
// authenticated identity when it relays a client to a session host; a session
// host trusts those fields only from a peer running as root or as itself.
type Hello struct {
	Proto    int    `json:"proto"`
	Software string `json:"software,omitempty"`
	// Set by the agent towards a session host.
	User       string `json:"user,omitempty"`
	Admin      bool   `json:"admin,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
}

// Client identifies the client machine behind a request, so that a session
// knows who holds it ("Busy: attached to laptop since ...").
type Client struct {
	ID   string `json:"id"`
	Host string `json:"host"`
}

// TTY describes the client's terminal for interactive commands.
type TTY struct {
	Term string `json:"term"`
	Rows int    `json:"rows"`
	Cols int    `json:"cols"`
}

// Request is the one request a channel carries after Hello. Each field has
// one meaning; the comments name the ops that use it (ops.go lists them).
type Request struct {
	Op      Op     `json:"op"`
	Session string `json:"session,omitempty"`
	Client  Client `json:"client"`

	// new
	IdleTimeout string `json:"idle_timeout,omitempty"`
	Temporary   bool   `json:"temporary,omitempty"`
	// Shell is the runspace the session runs ("bash", "builtin"; "" the
	// host's DefaultShell); NoProfile skips bash's login profile.
	Shell     string `json:"shell,omitempty"`
	NoProfile bool   `json:"no_profile,omitempty"`

	// run
	Command string `json:"command,omitempty"`
	// CommandBytes carries a command that is not valid UTF-8 (JSON would
	// replace its bytes); Command is empty then. See MarshalJSON, Script.
	CommandBytes []byte `json:"command_bytes,omitempty"`
	Argv         Args   `json:"argv,omitempty"`   // run a command as an exact argument list (implicit remoting)
	Module       string `json:"module,omitempty"` // run Argv in this module's context
	// ArgvEncoding (module run) says how Argv's elements are encoded:
	// "" as they are, "argv:base64" each base64 (an argument that is not
	// valid UTF-8; modules.EncodeArgv).
	ArgvEncoding string `json:"argv_encoding,omitempty"`
	Stdin        bool   `json:"stdin,omitempty"`  // the client sends stdin frames
	Detach       bool   `json:"detach,omitempty"` // start and disconnect at once
	// Reuse asks the session host to keep the connection after the
	// command: the client ends the stream with TEnd and may send another
	// Request (without a Hello) on the same channel.
	Reuse bool `json:"reuse,omitempty"`
	// EndMark (from the agent, on a plain run whose client did not ask
	// for Reuse) asks the session host to send TEnd once the client has
	// acknowledged the command's exit record, and to keep the connection
	// if the agent answers TEnd: the agent then knows the stream's end
	// at a frame boundary and keeps the connection for the session's next
	// run (agent/hostpool.go). A host that does not know it closes the
	// connection after the stream, as before.
	EndMark bool `json:"end_mark,omitempty"`
	TTY     *TTY `json:"tty,omitempty"`
	// Grace is how long a temporary session waits for its client to come
	// back after the transport broke before it interrupts the command.
	Grace Duration `json:"grace,omitempty"`

	// attach / receive
	After uint64 `json:"after,omitempty"` // deliver records after this seq
	Cmd   uint32 `json:"cmd,omitempty"`   // follow until this command's exit
	All   bool   `json:"all,omitempty"`   // receive: replay everything retained
	Force bool   `json:"force,omitempty"` // connect: take over from another client
	// Hold (connect): the client holds the session while this channel is
	// open, between its commands too (tether enter); the host answers,
	// then sends an Event if another client takes the session over.
	Hold bool `json:"hold,omitempty"`

	// config.get, config.set, config.reset: the setting and its new value.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`

	// remove: the user whose session an admin removes ("" the caller).
	Owner string `json:"owner,omitempty"`

	// module.help: the module command whose help is asked for.
	HelpCommand string `json:"help_command,omitempty"`

	// close: why the session is closed, as list shows it.
	Reason string `json:"reason,omitempty"`

	// list
	AllUsers bool `json:"all_users,omitempty"`

	// hash: the files to hash and how much of each.
	Files []HashFile `json:"files,omitempty"`

	// limits pushed by the agent to a session host
	Limits *Limits `json:"limits,omitempty"`

	// sftp: tether cp asks for the fd path on a stream that carries big
	// files; the agent passes it on to the session host (for sftp only)
	// and then takes the fds of the regular files the host opens and
	// serves their READ and WRITE packets itself (sftpserve.ServeFD,
	// sftpserve.Relay).
	FdPass bool `json:"fd_pass,omitempty"`
}

// Limits are the per-session settings a session host enforces itself.
type Limits struct {
	IdleTimeout    Duration `json:"idle_timeout"`
	MaxRunTime     Duration `json:"max_run_time"`
	JournalBytes   int64    `json:"journal_bytes"`
	BufferingMode  string   `json:"buffering_mode"`
	MaxProcesses   int      `json:"max_processes"`
	MaxMemoryBytes int64    `json:"max_memory_bytes"`
}

// Response answers a Request. Error is set when OK is false.
type Response struct {
	OK    bool   `json:"ok"`
	Error *Error `json:"error,omitempty"`

	Session  *SessionInfo  `json:"session,omitempty"`
	Sessions []SessionInfo `json:"sessions,omitempty"`

	// run / attach
	Cmd         uint32 `json:"cmd,omitempty"`
	StartSeq    uint64 `json:"start_seq,omitempty"`    // records of this command come after it
	StdinOffset uint64 `json:"stdin_offset,omitempty"` // stdin bytes the host already has
	Until       uint64 `json:"until,omitempty"`        // receive without a running command: last seq it delivers

	Config  []ConfigEntry `json:"config,omitempty"`
	Modules []ModuleInfo  `json:"modules,omitempty"`
	Help    string        `json:"help,omitempty"`
	Text    string        `json:"text,omitempty"`

	// sftp: the session's current directory and its user's home, and the
	// umask of the process that serves SFTP (octal, "" unknown): a file
	// it creates gets 0644 less it.
	Cwd   string `json:"cwd,omitempty"`
	Home  string `json:"home,omitempty"`
	Umask string `json:"umask,omitempty"`
	// MaxPacket: the bytes its SFTP server reads or writes in one packet
	// (0: pkg/sftp's default, reads answered with at most 32 KiB).
	MaxPacket int `json:"max_packet,omitempty"`
	// Hash: the checksum its hash op also speaks besides SHA-256
	// (HashFile.Algo), "" none.
	Hash string `json:"hash,omitempty"`
	// hash: one result per Request.Files, in order.
	Hashes []HashResult `json:"hashes,omitempty"`
}

// MaxHashFiles bounds the files of one hash request.
const MaxHashFiles = 4096

// HashFile asks for the SHA-256 of Length bytes of Path from Offset.
// With Chain set it asks for the SHA-256 of the first Offset+Length bytes
// instead (a prefix), and the host keeps its running hash under Chain so
// that the chain's next request, at Offset+Length, reads only the new
// bytes; a host without the state hashes the prefix from the start.
type HashFile struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset,omitempty"`
	Length int64  `json:"length"`
	Chain  string `json:"chain,omitempty"`
	// Algo: "" SHA-256, or one the host offers (Response.Hash).
	Algo string `json:"algo,omitempty"`
}

// HashResult is a HashFile's answer: SHA256 (hex), or Error naming the
// path and what was wrong.
type HashResult struct {
	SHA256 string `json:"sha256,omitempty"`
	Sum    string `json:"sum,omitempty"` // hex, of the Algo asked for (SHA-256 too, from hosts that know Algo)
	Size   int64  `json:"size"`          // the file's size when it was hashed
	Error  string `json:"error,omitempty"`
	// Prefix: SHA256 is of the first Offset+Length bytes (a Chain
	// request answered by a host that knows chains; older hosts answer
	// a chain request with the section's hash and leave this false).
	Prefix bool `json:"prefix,omitempty"`
}

// Error codes callers act on.
const (
	CodeNotFound     = "not_found"
	CodeClosed       = "closed"
	CodeBusy         = "busy"
	CodeLimit        = "limit"
	CodeDenied       = "denied"
	CodeDisconnected = "disconnected"
	CodeBadRequest   = "bad_request"
	CodeExists       = "exists"
	CodeInternal     = "internal"
)

// Error is a refusal with a code and a message meant for the user.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Refuse is the Response refusing a request with err: the *Error in err's
// chain as it is (its code is what the client acts on), anything else as
// CodeInternal with err's text.
func Refuse(err error) Response {
	var e *Error
	if errors.As(err, &e) {
		return Response{Error: e}
	}
	return Response{Error: Errorf(CodeInternal, "%v", err)}
}

// CodeOf returns the code of an *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Session states and availabilities, as PowerShell names them.
const (
	StateOpened       = "Opened"
	StateDisconnected = "Disconnected"
	StateClosed       = "Closed"
	StateBroken       = "Broken"
	// StateUnreachable is shown by the client for a remembered session
	// whose host it cannot reach; no host reports it.
	StateUnreachable = "Unreachable"

	AvailAvailable = "Available"
	AvailBusy      = "Busy"
	AvailNone      = "None"
)

// SessionInfo describes a session for list and errors. Times that do not
// apply are left out of the JSON (omitzero), never sent as year 1.
type SessionInfo struct {
	Name         string    `json:"name"`
	User         string    `json:"user"`
	State        string    `json:"state"`
	Availability string    `json:"availability"`
	Created      time.Time `json:"created,omitzero"`
	IdleSince    time.Time `json:"idle_since,omitzero"`
	Command      string    `json:"command,omitempty"`
	Temporary    bool      `json:"temporary,omitempty"`
	Shell        string    `json:"shell,omitempty"` // the session's runspace: bash or builtin
	// HeldBy is the client attached to the session (running a command,
	// in tether enter, receiving), which makes it Busy; empty when no
	// client is attached.
	HeldBy    string    `json:"held_by,omitempty"`
	HeldSince time.Time `json:"held_since,omitzero"`
	ClosesAt  time.Time `json:"closes_at,omitzero"` // when idleness would close it
	ClosedBy  string    `json:"closed_by,omitempty"`
	ClosedAt  time.Time `json:"closed_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Pending   uint64    `json:"pending_bytes,omitempty"` // journalled output not yet received
}

// ConfigEntry is one host setting as `tether config list` shows it.
type ConfigEntry struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Default string `json:"default"`
	Source  string `json:"source"`
	Locked  bool   `json:"locked"`
	SetBy   string `json:"set_by,omitempty"`
	Help    string `json:"help,omitempty"`
}

// ModuleInfo describes a command module on a host.
type ModuleInfo struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description,omitempty"`
	Path        string   `json:"path"`
	Commands    []string `json:"commands,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// Signal asks the host to signal the running command.
type Signal struct {
	Name string `json:"name"` // INT, TERM, QUIT, TSTP, HUP, KILL
}

// Event tells an attached client about its attachment.
type Event struct {
	Kind   string `json:"kind"` // "detached"
	Reason string `json:"reason,omitempty"`
}

// Output is one journal record sent to a client.
type Output struct {
	Seq  uint64
	Kind Kind
	Cmd  uint32
	Data []byte
}

const outputHeader = 8 + 1 + 4

// OutputHeader encodes o's fixed fields; send it with o.Data as one frame.
func OutputHeader(dst *[outputHeader]byte, o Output) []byte {
	binary.BigEndian.PutUint64(dst[0:8], o.Seq)
	dst[8] = byte(o.Kind)
	binary.BigEndian.PutUint32(dst[9:13], o.Cmd)
	return dst[:]
}

// WriteOutput sends o as one frame.
func (c *Conn) WriteOutput(o Output) error {
	var h [outputHeader]byte
	return c.Write(TOutput, OutputHeader(&h, o), o.Data)
}

// DecodeOutput parses an Output payload. Data aliases p.
func DecodeOutput(p []byte) (Output, error) {
	if len(p) < outputHeader {
		return Output{}, fmt.Errorf("wire: output frame of %d bytes is shorter than its header", len(p))
	}
	return Output{
		Seq:  binary.BigEndian.Uint64(p[0:8]),
		Kind: Kind(p[8]),
		Cmd:  binary.BigEndian.Uint32(p[9:13]),
		Data: p[outputHeader:],
	}, nil
}

// WriteU64 sends a frame whose payload is one big-endian uint64 followed by
// data (Stdin, StdinEOF, StdinAck, Ack).
func (c *Conn) WriteU64(t Type, v uint64, data []byte) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return c.Write(t, b[:], data)
}

// DecodeU64 parses a payload written by WriteU64.
func DecodeU64(t Type, p []byte) (uint64, []byte, error) {
	if len(p) < 8 {
		return 0, nil, fmt.Errorf("wire: %s frame of %d bytes is too short", t, len(p))
	}
	return binary.BigEndian.Uint64(p[:8]), p[8:], nil
}

// WriteResize sends the terminal size.
func (c *Conn) WriteResize(rows, cols int) error {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:2], uint16(rows))
	binary.BigEndian.PutUint16(b[2:4], uint16(cols))
	return c.Write(TResize, b[:])
}

// DecodeResize parses a Resize payload.
func DecodeResize(p []byte) (rows, cols int, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("wire: resize frame of %d bytes, want 4", len(p))
	}
	return int(binary.BigEndian.Uint16(p[0:2])), int(binary.BigEndian.Uint16(p[2:4])), nil
}

// Duration is a time.Duration encoded as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("wire: duration %s is not a string", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return fmt.Errorf("wire: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Handshake sends our Hello and reads the peer's, refusing another version.
// h.Proto is the version spoken: 0 means Version; the agent and a session
// host speak HostVersion.
func (c *Conn) Handshake(h Hello) (Hello, error) {
	h.Proto = cmp.Or(h.Proto, Version)
	var peer Hello
	err := c.WriteJSON(THello, h)
	if err == nil {
		err = c.ReadJSON(THello, &peer)
	}
	if err != nil {
		return peer, fmt.Errorf("wire: handshake: %w", err)
	}
	if peer.Proto != h.Proto {
		return peer, fmt.Errorf("wire: peer speaks protocol %d, this side %d: upgrade the older side", peer.Proto, h.Proto)
	}
	return peer, nil
}

// Args is an argument list that survives JSON byte for byte: each argument
// travels base64-encoded, so invalid UTF-8 and NULs arrive unchanged.
type Args []string

// MarshalJSON implements json.Marshaler.
func (a Args) MarshalJSON() ([]byte, error) {
	enc := make([][]byte, len(a))
	for i, s := range a {
		enc[i] = []byte(s)
	}
	return json.Marshal(enc)
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *Args) UnmarshalJSON(b []byte) error {
	var enc [][]byte
	if err := json.Unmarshal(b, &enc); err != nil {
		return fmt.Errorf("wire: argv: %w", err)
	}
	out := make(Args, len(enc))
	for i, e := range enc {
		out[i] = string(e)
	}
	*a = out
	return nil
}

// HandshakeRequest is Handshake for the side that opens a conversation: it
// sends its Hello and the Request together, in one write, and then reads the
// peer's Hello — one round trip less than Handshake followed by a request.
func (c *Conn) HandshakeRequest(h Hello, req Request) (Hello, error) {
	buf, err := EncodeHandshake(h, req, c.max)
	if err != nil {
		return Hello{}, err
	}
	c.wmu.Lock()
	_, err = c.rw.Write(buf)
	c.wmu.Unlock()
	if err != nil {
		return Hello{}, fmt.Errorf("wire: handshake: %w", err)
	}
	return c.ReadPeerHello(h)
}

// EncodeHandshake is what HandshakeRequest writes on a Conn whose frames
// are at most maxFrame bytes (<= 0: MaxFrame): the Hello and Request
// frames, for a caller that sends them itself (with a master's channel
// request, mux.Pending) and then calls ReadPeerHello.
func EncodeHandshake(h Hello, req Request, maxFrame int) ([]byte, error) {
	if maxFrame <= 0 {
		maxFrame = MaxFrame
	}
	h.Proto = cmp.Or(h.Proto, Version)
	hb, err := marshalHello(h)
	if err != nil {
		return nil, fmt.Errorf("wire: encode hello: %w", err)
	}
	rb, err := marshalRequest(req)
	if err != nil {
		return nil, fmt.Errorf("wire: encode request: %w", err)
	}
	if 1+len(rb) > maxFrame {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d", ErrFrameTooLarge, 1+len(rb), maxFrame)
	}
	buf := make([]byte, 0, 10+len(hb)+len(rb))
	buf = binary.BigEndian.AppendUint32(buf, uint32(1+len(hb)))
	buf = append(append(buf, byte(THello)), hb...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(1+len(rb)))
	buf = append(append(buf, byte(TRequest)), rb...)
	return buf, nil
}

// ReadPeerHello reads the peer's Hello after an EncodeHandshake of h and
// checks that it speaks h's protocol.
func (c *Conn) ReadPeerHello(h Hello) (Hello, error) {
	h.Proto = cmp.Or(h.Proto, Version)
	var peer Hello
	if err := c.ReadJSON(THello, &peer); err != nil {
		return peer, fmt.Errorf("wire: handshake: %w", err)
	}
	if peer.Proto != h.Proto {
		return peer, fmt.Errorf("wire: peer speaks protocol %d, this side %d: upgrade the older side", peer.Proto, h.Proto)
	}
	return peer, nil
}

// MarshalJSON sends a Command that is not valid UTF-8 as CommandBytes,
// which JSON carries byte for byte (base64), whoever builds the request.
func (r Request) MarshalJSON() ([]byte, error) {
	if b, ok := appendRequest(nil, &r); ok {
		return b, nil
	}
	type plain Request // without this method
	p := plain(r)
	if p.Command != "" && !utf8.ValidString(p.Command) {
		p.CommandBytes, p.Command = []byte(p.Command), ""
	}
	return json.Marshal(p)
}

// Script is the command as the client sent it, from Command or CommandBytes.
func (r *Request) Script() string {
	if len(r.CommandBytes) > 0 {
		return string(r.CommandBytes)
	}
	return r.Command
}
