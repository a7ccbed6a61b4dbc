package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/targets"
)

func hostsCmd(env *Env) *cobra.Command {
	var tf targetFlags
	var fold bool
	cmd := &cobra.Command{
		Use:   "hosts [--inventory FILE] [-f HOSTFILE] [-x EXPR] [--fold] [EXPR...]",
		Short: "Print the targets an expression names, to check it before running anything on them",
		Long: `Print the targets that target expressions name, one a line, or folded with
--fold. Expressions are what invoke, new, list and the other commands accept:

  web[01-20]            ranges, zero padding kept; db[1-3,7]; n[1-10/2] (a step)
  rack[1-2]-n[01-04]    several ranges: every combination
  web[01-03]/deploy     ranges inside session addresses
  @web                  a group from ~/.config/tether/groups.toml or --inventory
  @web/deploy           the session deploy on every host of @web
  a,b  a!b  a&b         union, difference, intersection (left to right)

See docs/targets.md for groups.toml, Ansible inventories, host files and caps.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := tf.expand(cmd.Context(), env, args)
			if errors.Is(err, errNoTargets) {
				return usageError(cmd, "%v", err)
			}
			if err != nil {
				return err
			}
			if fold {
				fmt.Fprintln(env.Stdout, targets.Fold(list))
				return nil
			}
			var b strings.Builder
			for _, t := range list {
				b.WriteString(t)
				b.WriteByte('\n')
			}
			_, err = io.WriteString(env.Stdout, b.String())
			return err
		},
	}
	tf.register(cmd)
	cmd.Flags().BoolVar(&fold, "fold", false, "print the targets folded (web[01-03,07]) instead of one a line")
	return cmd
}

// targetFlags are the flags of a command that takes target expressions;
// expand turns its arguments into targets with them. (-i is --identity for
// every command, so the inventory has only a long flag.)
type targetFlags struct {
	inventory string
	hostsFile string
	exclude   []string
	throttle  int
}

// registerThrottle adds --throttle, for the commands that fan out.
func (tf *targetFlags) registerThrottle(cmd *cobra.Command) {
	cmd.Flags().IntVar(&tf.throttle, "throttle", client.DefaultThrottle, "how many targets are worked on at once")
}

// addrKind says which addresses a command takes.
type addrKind int

const (
	anyAddr      addrKind = iota
	hostAddrs             // [USER@]HOST[:PORT]
	sessionAddrs          // HOST/NAME
)

// resolve expands exprs (with -f, -x and the groups) and parses every
// target as an address of the kind the command takes. Any error is
// reported before anything runs; an empty result is a usage error.
func (tf *targetFlags) resolve(cmd *cobra.Command, env *Env, exprs []string, kind addrKind) ([]client.Target, error) {
	if f := cmd.Flags().Lookup("throttle"); f != nil && tf.throttle < 1 {
		return nil, fmt.Errorf("bad --throttle %d: give how many targets may run at once, 1 or more (default %d)", tf.throttle, client.DefaultThrottle)
	}
	for _, e := range exprs {
		if err := checkCommaSeparated(e); err != nil {
			return nil, err
		}
	}
	list, err := tf.expand(cmd.Context(), env, exprs)
	if errors.Is(err, errNoTargets) {
		return nil, usageError(cmd, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]client.Target, 0, len(list))
	for _, s := range list {
		t, err := client.ParseTarget(s)
		if err != nil {
			return nil, err
		}
		switch {
		case kind == sessionAddrs && t.Session == "":
			return nil, fmt.Errorf("%s is a host, not a session: use HOST/NAME (tether list HOST shows the names)", t)
		case kind == hostAddrs && t.Session != "":
			return nil, fmt.Errorf("%s is a session address; this command takes hosts ([USER@]HOST[:PORT])", t)
		}
		out = append(out, t)
	}
	return out, nil
}

func (tf *targetFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.inventory, "inventory", "", "Ansible inventory (INI, YAML or ansible-inventory --list JSON) whose groups @NAME names (default $TETHER_INVENTORY)")
	f.StringVarP(&tf.hostsFile, "hostfile", "f", "", "file of target expressions, one a line, # comments (default $TETHER_HOSTS)")
	f.StringArrayVarP(&tf.exclude, "exclude", "x", nil, "targets to leave out, an expression (repeatable); excluding a host excludes its sessions")
}

// expand expands exprs and the host file's lines with the user's groups,
// minus the exclusions. It fails before anything runs when the result is
// empty or any part is wrong.
func (tf *targetFlags) expand(ctx context.Context, env *Env, exprs []string) ([]string, error) {
	opts, err := tf.options(ctx, env)
	if err != nil {
		return nil, err
	}
	// $TETHER_HOSTS is the default target list, as pdsh's WCOLL: used
	// only when the command line names no targets at all.
	file := tf.hostsFile
	if file == "" && len(exprs) == 0 {
		file = env.Getenv("TETHER_HOSTS")
	}
	all := append([]string(nil), exprs...)
	if file != "" {
		lines, err := targets.ReadHostsFile(file)
		if err != nil {
			return nil, err
		}
		all = append(all, lines...)
	}
	if len(all) == 0 {
		return nil, errNoTargets
	}
	return targets.ExpandAll(all, opts)
}

// errNoTargets is a command line that names no targets at all.
var errNoTargets = errors.New("no targets: give a target expression, -f FILE or $TETHER_HOSTS")

// maxInventoryCmdOutput bounds what TETHER_INVENTORY_CMD may print.
const maxInventoryCmdOutput = 64 << 20

// options loads the group sources: ~/.config/tether/groups.toml when it
// exists, the inventory file (--inventory or $TETHER_INVENTORY), and the
// output of $TETHER_INVENTORY_CMD (for instance "ansible-inventory -i
// SOURCE --list", for inventories Tether does not parse itself).
func (tf *targetFlags) options(ctx context.Context, env *Env) (targets.Options, error) {
	g := &targets.Groups{}
	if err := g.LoadFile(filepath.Join(configDir(env), "groups.toml")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return targets.Options{}, err
	}
	inv := tf.inventory
	if inv == "" {
		inv = env.Getenv("TETHER_INVENTORY")
	}
	if inv != "" {
		i, err := targets.LoadInventory(inv)
		if err != nil {
			return targets.Options{}, err
		}
		g.AddInventory(i)
	}
	if c := env.Getenv("TETHER_INVENTORY_CMD"); c != "" {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c)
		cmd.Stdout = &limitedBuffer{buf: &out, max: maxInventoryCmdOutput}
		cmd.Stderr = env.Stderr
		if err := cmd.Run(); err != nil {
			return targets.Options{}, fmt.Errorf("TETHER_INVENTORY_CMD %q: %w", c, err)
		}
		i, err := targets.ParseInventory(out.Bytes(), "TETHER_INVENTORY_CMD")
		if err != nil {
			return targets.Options{}, err
		}
		g.AddInventory(i)
	}
	return targets.Options{Groups: g, Exclude: tf.exclude}, nil
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > l.max {
		return 0, fmt.Errorf("more than %d bytes of inventory", l.max)
	}
	return l.buf.Write(p)
}
