package wire

// Operations a Request may carry (Request.Op). This is the one list of
// them: the agent serves the agent-local ones itself, relays the session
// ones to the session's host, and only the agent sends the internal ones.
// docs/ARCHITECTURE.md ("The wire protocol") describes each.
const (
	// Agent-local.
	OpNew         = "new"
	OpList        = "list"
	OpRemove      = "remove"
	OpConfigList  = "config.list"
	OpConfigGet   = "config.get"
	OpConfigSet   = "config.set"
	OpConfigReset = "config.reset"
	OpModuleList  = "module.list"
	OpModuleHelp  = "module.help"

	// Relayed to the session host.
	OpRun        = "run"
	OpAttach     = "attach"
	OpReceive    = "receive"
	OpConnect    = "connect" // with Hold: stay attached while the channel is open (tether enter)
	OpDisconnect = "disconnect"
	OpStatus     = "status"
	OpInterrupt  = "interrupt" // Ctrl-C from anywhere: SIGINT to the running command

	// Agent to session host only.
	OpWatch  = "watch"
	OpLimits = "limits"
	OpClose  = "close"
)
