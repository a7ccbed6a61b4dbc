package wire

// Op names an operation, the kind of a Request. This is the one list of
// them: the agent serves the agent-local ones itself, relays the session
// ones to the session's host, and only the agent sends the internal ones.
// An op's JSON form is its string; docs/ARCHITECTURE.md ("The wire
// protocol") lists each with who sends it, the fields it uses and its reply.
type Op string

// Agent-local operations, answered by the agent.
const (
	// OpNew opens a session (Session, or a random name; IdleTimeout,
	// Temporary) and holds it for Client. Reply: Session.
	OpNew Op = "new"
	// OpList lists the caller's sessions, every user's with AllUsers
	// (admins only). Reply: Sessions.
	OpList Op = "list"
	// OpRemove closes and forgets Session; an admin names another user's
	// session with Owner. Reply: Session as it was.
	OpRemove Op = "remove"
	// OpConfigList lists the host's settings. Reply: Config.
	OpConfigList Op = "config.list"
	// OpConfigGet reads setting Key. Reply: Config (one entry).
	OpConfigGet Op = "config.get"
	// OpConfigSet sets Key to Value (admins only). Reply: Config.
	OpConfigSet Op = "config.set"
	// OpConfigReset returns Key to its default (admins only). Reply: Config.
	OpConfigReset Op = "config.reset"
	// OpModuleList lists the command modules on the host. Reply: Modules.
	OpModuleList Op = "module.list"
	// OpModuleHelp is the help text of HelpCommand in Module. Reply: Help.
	OpModuleHelp Op = "module.help"
)

// Session operations, relayed by the agent to the session's host (run
// without a Session first opens a temporary session).
const (
	// OpRun starts a command: Command (or CommandBytes), or Argv — with
	// Module, the agent turns Argv (encoded as ArgvEncoding says) into the
	// module's script first. Stdin, Detach, Reuse, TTY, Grace. Reply: Cmd,
	// StartSeq, Session; then the stream of Output frames.
	OpRun Op = "run"
	// OpAttach resumes following command Cmd after record After (a client
	// back after a broken transport). Reply: StdinOffset; then the stream.
	OpAttach Op = "attach"
	// OpReceive delivers output not yet received (everything retained
	// with All), then follows a running command; Force takes the session
	// over. Reply: StartSeq, Cmd, Until; then the stream.
	OpReceive Op = "receive"
	// OpConnect attaches Client to the session (Force: take it over;
	// IdleTimeout: set the session's own). With Hold the channel stays
	// open and the client holds the session while it is (tether enter).
	// Reply: Session.
	OpConnect Op = "connect"
	// OpDisconnect releases the session (IdleTimeout: set the session's
	// own). Reply: Session.
	OpDisconnect Op = "disconnect"
	// OpStatus describes the session. Reply: Session.
	OpStatus Op = "status"
	// OpInterrupt sends SIGINT to the running command, from any client
	// (Ctrl-C from another terminal). Reply: Cmd and Text of the
	// command, or only Text when none runs.
	OpInterrupt Op = "interrupt"
	// OpSftp (tether cp) serves SFTP on the rest of the channel, as the
	// session's user, relative paths against the session's current
	// directory. Reply: Session, Cwd, Home; then the SFTP stream. A bare
	// host first opens a temporary session, which its client removes
	// after the copy (or which closes Grace after the stream ends).
	OpSftp Op = "sftp"
	// OpHash hashes files as the session's user: SHA-256 of Length bytes
	// from Offset of each of Files (absolute paths), so that tether cp
	// checks what landed and resumes a cut transfer. Reply: Hashes.
	OpHash Op = "hash"
	// OpMux makes the channel a mux channel (mux.go): after its Response
	// (OK), each TMux Request on it (a run of a named session, without
	// stdin, a terminal, a module or Detach) starts a sub-stream relayed
	// to that session's host as a run on a channel of its own would be;
	// at most MaxMuxStreams at once. Only agents advertising MuxMarker
	// serve it.
	OpMux Op = "mux"
)

// Internal operations: only the agent sends them, to a session host, which
// believes them only from the agent's uid.
const (
	// OpWatch holds the channel open until the session closes.
	OpWatch Op = "watch"
	// OpLimits pushes new Limits. Reply: OK.
	OpLimits Op = "limits"
	// OpClose closes the session for Client.Host with Reason. Reply:
	// Session as it was.
	OpClose Op = "close"
)

// Ops lists every operation, in the order above.
var Ops = []Op{
	OpNew, OpList, OpRemove, OpConfigList, OpConfigGet, OpConfigSet, OpConfigReset, OpModuleList, OpModuleHelp,
	OpRun, OpAttach, OpReceive, OpConnect, OpDisconnect, OpStatus, OpInterrupt, OpSftp, OpHash, OpMux,
	OpWatch, OpLimits, OpClose,
}
