package agent

import (
	"errors"
	"strings"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/wire"
)

func (a *Agent) opConfig(id identity, req *wire.Request) wire.Response {
	var entries []config.Entry
	switch req.Op {
	case wire.OpConfigList:
		entries = a.store.List()
	case wire.OpConfigGet:
		e, err := a.store.Get(req.Key)
		if err != nil {
			return wire.Refuse(wire.Errorf(wire.CodeBadRequest, "%v", err))
		}
		entries = []config.Entry{e}
	case wire.OpConfigSet, wire.OpConfigReset:
		if !id.admin {
			who := "the agent's own user"
			if a.root {
				who = "root or a member of the agent's --admin-group"
			}
			return wire.Refuse(wire.Errorf(wire.CodeDenied, "changing settings needs admin rights on this host (%s); %s can only read them", who, id.user))
		}
		var e config.Entry
		var err error
		if req.Op == wire.OpConfigSet {
			e, err = a.store.Set(req.Key, req.Value)
		} else {
			e, err = a.store.Reset(req.Key)
		}
		if err != nil {
			code := wire.CodeBadRequest
			if errors.Is(err, config.ErrLocked) {
				code = wire.CodeDenied
			}
			return wire.Refuse(wire.Errorf(code, "%v", err))
		}
		a.log.Info("setting changed", "by", id.user, "key", e.Key, "value", e.Value, "op", strings.TrimPrefix(string(req.Op), "config."))
		entries = []config.Entry{e}
	}
	out := make([]wire.ConfigEntry, len(entries))
	for i, e := range entries {
		out[i] = wire.ConfigEntry{Key: e.Key, Value: e.Value, Default: e.Default, Source: string(e.Source), Locked: e.Locked, SetBy: e.SetBy}
	}
	return wire.Response{OK: true, Config: out}
}
