package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

// forTargets runs op on every target, at most throttle at once
// (client.Each), over a few SSH connections per host (client.Pool). Each op
// may return a printer; printers and failures are written in the order of
// the targets, and any failure fails the command with 255.
func forTargets(cmd *cobra.Command, env *Env, g *globals, targets []client.Target, throttle int,
	op func(s *session, c *client.Conn, t client.Target) (print func(), err error)) error {
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	pool := client.NewPool(s.dialer)
	defer pool.Close()
	prints := make([]func(), len(targets))
	errs := make([]error, len(targets))
	client.Each(len(targets), throttle, func(i int) {
		t := targets[i]
		c, release, err := pool.Acquire(cmd.Context(), t)
		if err != nil {
			errs[i] = err
			return
		}
		defer release()
		prints[i], errs[i] = op(s, c, t)
	})
	failed := false
	for i, err := range errs {
		if err != nil {
			failed = true
			fmt.Fprintf(env.Stderr, "tether: %s\n", describeErr(s.display(targets[i]), err))
		} else if prints[i] != nil {
			prints[i]()
		}
	}
	if failed {
		return exitError{255}
	}
	return nil
}

// eachSession calls op on every session of exprs; see forTargets.
func eachSession(cmd *cobra.Command, env *Env, g *globals, tf *targetFlags, exprs []string, op func(s *session, c *client.Conn, t client.Target) error) error {
	targets, err := tf.resolve(cmd, env, exprs, sessionAddrs)
	if err != nil {
		return err
	}
	return forTargets(cmd, env, g, targets, tf.throttle, func(s *session, c *client.Conn, t client.Target) (func(), error) {
		return nil, op(s, c, t)
	})
}

func removeCmd(env *Env, g *globals) *cobra.Command {
	var owner string
	var all bool
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "remove [--all] [--owner USER] SESSIONS...",
		Short: "Close sessions (Remove-PSSession)",
		Long: `remove closes sessions: a running command is interrupted, the journal is
deleted, and later use of the name says it was closed, by whom and when.

remove --all HOSTS (or remove 'HOST/*') closes all of your sessions on
each host, printing one line per session.

SESSIONS are target expressions (web[01-20]/deploy, @web/deploy; see tether
hosts).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := tf.resolve(cmd, env, args, anyAddr)
			if err != nil {
				return err
			}
			wild := false
			for _, t := range targets {
				switch {
				case t.Session == "*":
					wild = true
				case t.Session == "" && all:
					wild = true
				case t.Session == "":
					return usageError(cmd, "%s is a host, not a session: use HOST/NAME, or remove --all %s to close all your sessions there", t, t)
				case all:
					return usageError(cmd, "--all takes hosts (or HOST/*), not the session %s", t)
				}
			}
			if wild {
				return removeAll(cmd, env, g, targets, tf.throttle, owner)
			}
			return forTargets(cmd, env, g, targets, tf.throttle, func(s *session, c *client.Conn, t client.Target) (func(), error) {
				err := removeOne(cmd.Context(), s, c, t, owner)
				if errors.Is(err, client.ErrConnect) {
					err = fmt.Errorf("%w (tether forget %s drops it from this client's list)", err, s.display(t))
				}
				return nil, err
			})
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	cmd.Flags().StringVar(&owner, "owner", "", "admins: remove another user's session (see list --all-users)")
	cmd.Flags().BoolVar(&all, "all", false, "close all of your sessions on the given hosts")
	return cmd
}

func removeOne(ctx context.Context, s *session, c *client.Conn, t client.Target, owner string) error {
	_, err := c.Call(ctx, wire.Request{Op: wire.OpRemove, Session: t.Session, Owner: owner, Client: s.dialer.Client})
	if err == nil || errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed) {
		s.registry.Remove(s.full(t))
	}
	return err
}

// removeAll closes every session of the user (or of --owner) on each host,
// one line per session; any failure makes the exit status 255, as for the
// other commands on several targets.
func removeAll(cmd *cobra.Command, env *Env, g *globals, targets []client.Target, throttle int, owner string) error {
	hosts := make([]client.Target, 0, len(targets))
	seen := map[string]bool{}
	for _, t := range targets {
		h := t.WithSession("")
		if !seen[h.String()] {
			seen[h.String()] = true
			hosts = append(hosts, h)
		}
	}
	var failedAny atomic.Bool // ops run concurrently
	err := forTargets(cmd, env, g, hosts, throttle, func(s *session, c *client.Conn, h client.Target) (func(), error) {
		resp, err := c.Call(cmd.Context(), wire.Request{Op: wire.OpList, AllUsers: owner != "", Client: s.dialer.Client})
		if err != nil {
			return nil, err
		}
		var names []string
		for _, si := range resp.Sessions {
			if si.State == wire.StateClosed {
				continue
			}
			if owner != "" && si.User != owner || owner == "" && si.User != "" && si.User != h.WithUser(s.dialer.DefaultUser).User && !h.SSH {
				continue
			}
			names = append(names, si.Name)
		}
		sort.Strings(names)
		var out, failed []string
		for _, name := range names {
			t := h.WithSession(name)
			if err := removeOne(cmd.Context(), s, c, t, owner); err != nil && !errors.Is(err, client.ErrNotFound) && !errors.Is(err, client.ErrClosed) {
				failed = append(failed, describeErr(s.display(t), err))
				continue
			}
			out = append(out, s.display(t).String()+": removed")
		}
		if len(failed) > 0 {
			failedAny.Store(true)
		}
		return func() {
			for _, l := range out {
				fmt.Fprintln(env.Stdout, l)
			}
			for _, f := range failed {
				fmt.Fprintf(env.Stderr, "tether: %s\n", f)
			}
			if len(names) == 0 {
				fmt.Fprintf(env.Stderr, "tether: %s: no sessions to remove\n", s.display(h))
			}
		}, nil
	})
	if err == nil && failedAny.Load() {
		return exitError{255}
	}
	return err
}

func disconnectCmd(env *Env, g *globals) *cobra.Command {
	var idle string
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "disconnect [--idle-timeout D] SESSIONS...",
		Short: "Detach from sessions; their commands go on (Disconnect-PSSession)",
		Long: `disconnect detaches from sessions. Running commands go on and their output
is journalled on the host until you connect and receive it, from this machine
or another. A disconnected session is closed after the host's IdleTimeout
(or --idle-timeout, up to MaxIdleTimeout).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachSession(cmd, env, g, &tf, args, func(s *session, c *client.Conn, t client.Target) error {
				_, err := c.Call(cmd.Context(), wire.Request{Op: "disconnect", Session: t.Session, IdleTimeout: idle, Client: s.dialer.Client})
				return err
			})
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	cmd.Flags().StringVar(&idle, "idle-timeout", "", "how long the host keeps the disconnected session while idle")
	return cmd
}

func connectCmd(env *Env, g *globals) *cobra.Command {
	var force bool
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "connect [--force] SESSIONS...",
		Short: "Reattach disconnected sessions (Connect-PSSession)",
		Long: `connect reattaches sessions, from any client machine with your key. A
session held by another client is Busy and refused, saying where and since
when; --force takes it over (the other client is told).
Then use tether receive to get the output produced meanwhile.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := tf.resolve(cmd, env, args, sessionAddrs)
			if err != nil {
				return err
			}
			return forTargets(cmd, env, g, targets, tf.throttle, func(s *session, c *client.Conn, t client.Target) (func(), error) {
				resp, err := c.Call(cmd.Context(), wire.Request{Op: "connect", Session: t.Session, Force: force, Client: s.dialer.Client})
				if err != nil {
					return nil, err
				}
				s.registry.Add(s.full(t))
				state := "Opened"
				if resp.Session != nil && resp.Session.Pending > 0 {
					state += fmt.Sprintf(", %d bytes of output waiting (tether receive %s)", resp.Session.Pending, s.display(t))
				}
				return func() { fmt.Fprintf(env.Stdout, "%s: %s\n", s.display(t), state) }, nil
			})
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "take the session over from another client")
	return cmd
}

func receiveCmd(env *Env, g *globals) *cobra.Command {
	var all, force bool
	var reconnect string
	cmd := &cobra.Command{
		Use:   "receive [--all] SESSION",
		Short: "Get output produced while disconnected (Receive-PSSession)",
		Long: `receive delivers the output of commands that ran while the session was
disconnected, stdout and stderr kept apart and in order, then streams a
still-running command live until it ends, and exits with its status. Output
already received is not delivered again; --all replays what the journal
still holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseTargets(args[0], true)
			if err != nil {
				return err
			}
			if len(targets) != 1 {
				return usageError(cmd, "receive takes one session")
			}
			rt, err := parseReconnect(reconnect)
			if err != nil {
				return err
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			t := s.display(targets[0])
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			res, err := s.dialer.Receive(ctx, client.ReceiveSpec{
				Target: t, All: all, Force: force,
				Stdout: env.Stdout, Stderr: env.Stderr, Notify: env.Stderr,
				ReconnectTimeout: rt, Signals: interrupts(env, cancel),
			})
			if err != nil {
				return fmt.Errorf("%s", describeErr(t, err))
			}
			s.registry.Add(s.full(t))
			if res.Dropped > 0 {
				fmt.Fprintf(env.Stderr, "tether: %s: %d bytes of output were dropped while disconnected (OutputBufferingMode drop)\n", t, res.Dropped)
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay everything the journal still holds")
	cmd.Flags().BoolVar(&force, "force", false, "take the session over from another client")
	cmd.Flags().StringVar(&reconnect, "reconnect-timeout", "4m", "how long to keep trying after the connection breaks")
	return cmd
}
