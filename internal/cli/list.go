package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

// listed is one row of `tether list`.
type listed struct {
	Address string `json:"address"`
	wire.SessionInfo
}

func listCmd(env *Env, g *globals) *cobra.Command {
	var jsonOut, allUsers, strict bool
	var output string
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "list [--json] [--all-users] [--strict] [-o wide] [HOSTS...]",
		Short: "Show sessions (Get-PSSession)",
		Long: `list without hosts shows the sessions this client remembers (those it
created or connected to). With hosts it asks each host for all of your
sessions there, including those created from other machines. HOSTS are
target expressions (web[01-20], @web; see tether hosts); -f FILE reads them
from a file ($TETHER_HOSTS is not used: list without hosts has its own meaning).

Columns: SESSION, STATE (Opened, Disconnected, Closed, Broken, and without
hosts Unreachable), AVAILABILITY (Available, Busy, None), SHELL (bash or
builtin), HELD BY (the client attached to a Busy session), CREATED, IDLE (and
when idleness would close it), COMMAND (the running one). Rows fit the
terminal: COMMAND is cut, then CREATED, IDLE, HELD BY and SHELL are left out;
-o wide shows every column in full.

A session is Busy exactly while a client is attached to it: following a
command, in tether enter, or receiving. Available means tether invoke from
any of your clients runs at once; Busy and None mean it is refused.

Without hosts, a remembered session whose host cannot be reached is shown
as Unreachable and list still exits 0 (--strict: 255); tether forget drops
such entries. A remembered session the host no longer has is shown Closed
once and forgotten.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			wide, err := parseOutput(output)
			if err != nil {
				return err
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			var hosts []client.Target
			var remembered map[string]bool // full address -> true, when listing the registry
			if len(args) > 0 || tf.hostsFile != "" {
				if hosts, err = tf.resolve(cmd, env, args, hostAddrs); err != nil {
					return err
				}
			} else {
				entries, err := s.registry.List()
				if err != nil {
					return err
				}
				remembered = map[string]bool{}
				seen := map[string]bool{}
				for _, e := range entries {
					t, err := client.ParseTarget(e.Address)
					if err != nil {
						continue
					}
					remembered[e.Address] = true
					h := t.WithSession("")
					if !seen[h.String()] {
						seen[h.String()] = true
						hosts = append(hosts, h)
					}
				}
			}
			pool := client.NewPool(s.dialer)
			defer pool.Close()
			var mu sync.Mutex
			var rows []listed
			failed := false
			client.Each(len(hosts), tf.throttle, func(i int) {
				h := hosts[i]
				{
					add := func(r listed) {
						mu.Lock()
						rows = append(rows, r)
						mu.Unlock()
					}
					c, release, err := pool.Acquire(cmd.Context(), h)
					var resp wire.Response
					if err == nil {
						resp, err = c.Call(cmd.Context(), wire.Request{Op: "list", AllUsers: allUsers, Client: s.dialer.Client})
						release()
					}
					if err != nil {
						mu.Lock()
						// Without hosts an unreachable host is a row
						// state, not a failure of list (unless --strict).
						if remembered == nil || strict {
							failed = true
							fmt.Fprintf(env.Stderr, "tether: %s\n", describeErr(s.display(h), err))
						} else {
							fmt.Fprintf(env.Stderr, "tether: note: %s; its sessions are shown Unreachable (tether forget '%s/*' drops them from this list)\n",
								describeErr(s.display(h), err), s.display(h))
						}
						mu.Unlock()
						if remembered != nil {
							for addr := range remembered {
								t, _ := client.ParseTarget(addr)
								if t.WithSession("").String() == h.String() {
									add(listed{Address: s.display(t).String(), SessionInfo: wire.SessionInfo{Name: t.Session, State: wire.StateUnreachable, Availability: wire.AvailNone, Reason: describeErr(s.display(h), err)}})
								}
							}
						}
						return
					}
					found := map[string]bool{}
					for _, si := range resp.Sessions {
						t := h.WithUser(s.dialer.DefaultUser).WithSession(si.Name)
						if si.User != "" && si.User != t.User && !t.SSH { // ssh://: the login is ssh_config's
							t.User = si.User
						}
						full := t.String()
						found[full] = true
						if remembered != nil && !remembered[full] {
							continue
						}
						if si.Temporary && remembered == nil && si.Command == "" {
							continue
						}
						add(listed{Address: s.display(t).String(), SessionInfo: si})
					}
					var closed []string
					for addr := range remembered {
						t, _ := client.ParseTarget(addr)
						if t.WithSession("").String() == h.String() && !found[addr] {
							add(listed{Address: s.display(t).String(), SessionInfo: wire.SessionInfo{Name: t.Session, State: wire.StateClosed, Availability: wire.AvailNone}})
							closed = append(closed, addr)
						}
					}
					// Shown Closed this once, then forgotten: the host
					// keeps the tombstone saying who closed it and why.
					if len(closed) > 0 {
						s.registry.Remove(closed...)
					}
				}
			})
			sort.Slice(rows, func(i, j int) bool { return rows[i].Address < rows[j].Address })
			if jsonOut {
				for _, r := range rows {
					b, _ := json.Marshal(r)
					fmt.Fprintln(env.Stdout, string(b))
				}
			} else {
				printSessions(env, rows, wide)
			}
			if failed {
				return exitError{255}
			}
			return nil
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per session")
	cmd.Flags().BoolVar(&allUsers, "all-users", false, "all users' sessions (admins only)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "wide: every column in full (default: fit the terminal)")
	cmd.Flags().BoolVar(&strict, "strict", false, "without hosts: exit 255 when a remembered host cannot be reached")
	return cmd
}

func printSessions(env *Env, rows []listed, wide bool) {
	header := []string{"SESSION", "STATE", "AVAILABILITY", "SHELL", "HELD BY", "CREATED", "IDLE", "COMMAND"}
	var cells [][]string
	now := time.Now()
	for _, r := range rows {
		created := "-"
		if !r.Created.IsZero() {
			created = r.Created.Local().Format("2006-01-02 15:04:05")
		}
		idle := "-"
		if !r.IdleSince.IsZero() {
			idle = shortDur(now.Sub(r.IdleSince))
			if !r.ClosesAt.IsZero() {
				idle += " (closes in " + shortDur(r.ClosesAt.Sub(now)) + ")"
			}
		}
		command := r.Command
		if command == "" {
			command = "-"
		}
		command = strings.ReplaceAll(command, "\n", "; ")
		heldBy := r.HeldBy
		if heldBy == "" {
			heldBy = "-"
		}
		shell := r.Shell
		if shell == "" {
			shell = "-"
		}
		cells = append(cells, []string{r.Address, r.State, r.Availability, shell, heldBy, created, idle, command})
	}
	// Fit the terminal (-o wide: everything): COMMAND is cut first, then
	// CREATED, IDLE and HELD BY are left out.
	writeTable(env.Stdout, tableOpts{Width: termWidth(env, env.Stdout), Wide: wide, Flex: "COMMAND", FlexMin: 12, FlexMax: 60,
		Drop: []string{"CREATED", "IDLE", "HELD BY", "SHELL"}}, header, cells)
}

func shortDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
