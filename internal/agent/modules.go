package agent

import (
	"errors"
	"path/filepath"
	"slices"

	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/safefs"
	"github.com/tether-sh/tether/internal/wire"
)

// moduleDirs is the module path as id sees it: the agent's --modules, and
// in root mode also the user's own ~/.config/tether/modules, whose files
// must belong to that user.
func (a *Agent) moduleDirs(id identity) []modules.Dir {
	var dirs []modules.Dir
	for _, p := range a.opts.Modules {
		dirs = append(dirs, modules.Dir{Path: p, Owner: -1})
	}
	if a.root {
		if u, err := lookupUser(id.user); err == nil && u.HomeDir != "" {
			own := filepath.Join(u.HomeDir, ".config", "tether", "modules")
			if !slices.Contains(a.opts.Modules, own) {
				dirs = append(dirs, modules.Dir{Path: own, Owner: atoi(u.Uid)})
			}
		}
	}
	return dirs
}

// scanModules scans id's module path as id's user (safefs.AsUser, with a
// time limit): every directory, file and symlink in it is looked at with
// the user's rights, so a scan cannot reveal what exists behind another
// user's 0700 directory, and a stuck file system costs one bounded wait.
// The module files themselves are opened non-blocking, regular files only,
// with bounded reads (internal/modules). then, if set, runs in the same
// call with the scanned modules (help files are read the same way).
func (a *Agent) scanModules(id identity, then func([]modules.Module) error) ([]modules.Module, error) {
	dirs := a.moduleDirs(id)
	res := make(chan []modules.Module, 1)
	err := a.asUser(id.user, func() error {
		mods := modules.Scan(dirs)
		res <- mods
		if then != nil {
			return then(mods)
		}
		return nil
	})
	if errors.Is(err, safefs.ErrTimeout) || errors.Is(err, safefs.ErrBusy) {
		return nil, wire.Errorf(wire.CodeInternal, "reading the module path on %%HOST%% did not finish in time (%v); a module directory may be on a stuck file system", err)
	}
	if err != nil {
		return nil, err
	}
	return <-res, nil
}

// opModule is implicit remoting's host side: module.list and module.help.
func (a *Agent) opModule(id identity, req *wire.Request) wire.Response {
	if req.Op == wire.OpModuleHelp {
		var text string
		_, err := a.scanModules(id, func(mods []modules.Module) (err error) {
			text, err = a.moduleHelp(mods, req)
			return err
		})
		if err != nil {
			return wire.Refuse(err)
		}
		return wire.Response{OK: true, Help: text}
	}
	mods, err := a.scanModules(id, nil)
	if err != nil {
		return wire.Refuse(err)
	}
	switch req.Op {
	case wire.OpModuleList:
		infos := make([]wire.ModuleInfo, 0, len(mods))
		for _, m := range mods {
			info := wire.ModuleInfo{Name: m.Name, Version: m.Version, Description: m.Description, Path: m.Dir, Commands: m.CommandNames()}
			if err := m.Err(); err != nil {
				info.Error = err.Error()
			}
			infos = append(infos, info)
		}
		return wire.Response{OK: true, Modules: infos}
	}
	return wire.Refuse(wire.Errorf(wire.CodeBadRequest, "unknown operation %q", req.Op))
}

// moduleHelp is module.help's answer; it runs as the user (scanModules).
func (a *Agent) moduleHelp(mods []modules.Module, req *wire.Request) (string, error) {
	m, err := findModule(mods, req.Module)
	if err != nil {
		return "", err
	}
	if _, ok := m.Lookup(req.HelpCommand); !ok {
		return "", wire.Errorf(wire.CodeNotFound, "module %s %s on %%HOST%% has no command %s; the module changed since it was imported: import it again",
			m.Name, m.Version, req.HelpCommand)
	}
	text, err := m.Help(req.HelpCommand)
	if errors.Is(err, modules.ErrNoHelp) {
		return "", wire.Errorf(wire.CodeNotFound, "no help on %%HOST%% for %s; update the module there (add %s)",
			req.HelpCommand, filepath.Join(m.Dir, "help", req.HelpCommand+".txt"))
	}
	if err != nil {
		return "", wire.Errorf(wire.CodeInternal, "help for %s on %%HOST%%: %v", req.HelpCommand, err)
	}
	return text, nil
}

// findModule is the usable module called name, or a refusal saying why
// there is none.
func findModule(mods []modules.Module, name string) (*modules.Module, error) {
	m := modules.Find(mods, name)
	if m == nil {
		return nil, wire.Errorf(wire.CodeNotFound, "no module %s on %%HOST%% (tether module list %%HOST%% shows them)", name)
	}
	if err := m.Err(); err != nil {
		return nil, wire.Errorf(wire.CodeNotFound, "module %s on %%HOST%% is broken: %v", name, err)
	}
	return m, nil
}

// prepareModuleRun turns a run of req.Argv in module req.Module into a
// command for the session host.
func (a *Agent) prepareModuleRun(id identity, req *wire.Request) error {
	argv, err := modules.DecodeArgv(req.Argv, req.ArgvEncoding)
	if err != nil {
		return wire.Errorf(wire.CodeBadRequest, "module run: %v", err)
	}
	if len(argv) == 0 {
		return wire.Errorf(wire.CodeBadRequest, "module run of %s without a command", req.Module)
	}
	mods, err := a.scanModules(id, nil)
	if err != nil {
		return err
	}
	m, err := findModule(mods, req.Module)
	if err != nil {
		return err
	}
	if _, ok := m.Lookup(argv[0]); !ok {
		return wire.Errorf(wire.CodeNotFound, "module %s %s on %%HOST%% has no command %s (it has %v); import it again",
			m.Name, m.Version, argv[0], m.CommandNames())
	}
	script, err := m.Script(argv)
	if err != nil {
		return wire.Errorf(wire.CodeBadRequest, "%v", err)
	}
	req.Command, req.Argv, req.ArgvEncoding = script, nil, ""
	return nil
}
