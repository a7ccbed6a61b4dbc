package cli

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/config"
)

// addCompletions makes shell completion offer what the arguments are: the
// session and host addresses of the local registry, and the names of the
// settings for config get/set/reset. It is set from here, by command path,
// so that each subcommand's file stays about its command; a command that
// has its own ValidArgsFunction keeps it.
func addCompletions(root *cobra.Command, env *Env, g *globals) {
	targets := addressCompleter(env, g, true, true)   // sessions and hosts
	sessions := addressCompleter(env, g, true, false) // sessions only
	hosts := addressCompleter(env, g, false, true)
	settings := func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, k := range config.Keys() {
			if strings.HasPrefix(strings.ToLower(k.Name), strings.ToLower(toComplete)) {
				out = append(out, cobra.CompletionWithDesc(k.Name, k.Help))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	// per position: the completer of each argument; the last one repeats
	// only when repeat is set. nil is "nothing to offer".
	type spec struct {
		pos    []cobra.CompletionFunc
		repeat bool
	}
	specs := map[string]spec{
		"invoke":             {pos: []cobra.CompletionFunc{targets}},
		"enter":              {pos: []cobra.CompletionFunc{targets}},
		"connect":            {pos: []cobra.CompletionFunc{sessions}},
		"disconnect":         {pos: []cobra.CompletionFunc{sessions}},
		"receive":            {pos: []cobra.CompletionFunc{sessions}},
		"remove":             {pos: []cobra.CompletionFunc{sessions}},
		"list":               {pos: []cobra.CompletionFunc{hosts}},
		"new":                {pos: []cobra.CompletionFunc{hosts}},
		"import":             {pos: []cobra.CompletionFunc{hosts}},
		"module list":        {pos: []cobra.CompletionFunc{hosts}},
		"config list":        {pos: []cobra.CompletionFunc{hosts}},
		"config get":         {pos: []cobra.CompletionFunc{hosts, settings}},
		"config set":         {pos: []cobra.CompletionFunc{hosts, settings}},
		"config reset":       {pos: []cobra.CompletionFunc{hosts, settings}},
		"mux status":         {pos: []cobra.CompletionFunc{hosts}},
		"mux stop":           {pos: []cobra.CompletionFunc{hosts}},
		"known-hosts remove": {pos: []cobra.CompletionFunc{hosts}, repeat: true},
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), root.Name()), " ")
		if sp, ok := specs[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				i := len(args)
				if i >= len(sp.pos) && sp.repeat {
					i = len(sp.pos) - 1
				}
				if i >= len(sp.pos) || sp.pos[i] == nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return sp.pos[i](cmd, args, toComplete)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// addressCompleter offers the addresses of the local registry: its
// sessions, their hosts, or both.
// An address list is comma-separated: the word after the last comma is
// completed, keeping what comes before it.
func addressCompleter(env *Env, g *globals, withSessions, withHosts bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		done, word := "", toComplete
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			done, word = toComplete[:i+1], toComplete[i+1:]
		}
		reg := &client.Registry{Path: registryPath(env)}
		entries, err := reg.List()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		login := g.login(env)
		seen := map[string]bool{}
		var out []cobra.Completion
		add := func(s string) {
			if !seen[s] && strings.HasPrefix(s, word) {
				seen[s] = true
				out = append(out, done+s)
			}
		}
		for _, e := range entries {
			t, err := client.ParseTarget(e.Address)
			if err != nil {
				continue
			}
			if t.User == login {
				t.User = ""
			}
			if withSessions {
				add(t.String())
			}
			if withHosts {
				add(t.WithSession("").String())
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// registryPath is the local session registry, sessions.json.
func registryPath(env *Env) string { return filepath.Join(configDir(env), "sessions.json") }
