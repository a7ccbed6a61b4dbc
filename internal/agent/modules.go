package agent

import "github.com/tether-sh/tether/internal/wire"

// opModule is implicit remoting's host side: module.list and module.help.
func (a *Agent) opModule(id identity, req *wire.Request) wire.Response {
	return refuse(wire.Errorf(wire.CodeBadRequest, "this agent does not serve command modules yet"))
}

// prepareModuleRun turns a run of req.Argv in module req.Module into a
// command for the session host.
func (a *Agent) prepareModuleRun(id identity, req *wire.Request) error {
	return wire.Errorf(wire.CodeBadRequest, "this agent does not serve command modules yet")
}
