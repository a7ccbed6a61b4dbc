package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

// figShellPair is #14's latency ratio measured in one run: a bash session
// and a builtin session, each on its own agent (an agent's DefaultShell is
// locked by the bench's policy), each through its own long-lived
// connection, `true` run in turns so that both see the same machine load.
func (b *bench) figShellPair(r *results, cfg config) error {
	const fig = "10. bash vs builtin session, `true` in turns"
	fmt.Fprintln(os.Stderr, "figure 10: bash vs builtin in turns")
	saved := b.shell
	defer func() { b.shell = saved }()
	ctx := context.Background()
	d := b.dialer()
	type side struct {
		conn *client.Conn
		t    client.Target
		ds   []time.Duration
	}
	var sides []*side
	for _, sh := range []string{"bash", "builtin"} {
		b.shell = sh
		a, err := b.startAgent("pair-"+sh, 10)
		if err != nil {
			return err
		}
		sess, err := b.newSessions(a, 1)
		if err != nil {
			return err
		}
		t := mustTarget(sess[0])
		conn, err := d.Dial(ctx, t)
		if err != nil {
			return err
		}
		defer conn.Close()
		sides = append(sides, &side{conn: conn, t: t})
	}
	run := func(s *side) (time.Duration, error) {
		start := time.Now()
		res, err := d.Run(ctx, s.conn, client.RunSpec{Target: s.t, Request: wire.Request{Command: "true"}, Stdout: io.Discard, Stderr: io.Discard, KeepChannel: true})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("exit %d", res.ExitCode)
		}
		return time.Since(start), err
	}
	errs := 0
	for i := 0; i < 20+cfg.goN; i++ {
		for _, s := range sides {
			dur, err := run(s)
			if err != nil {
				errs++
				if errs <= 3 {
					r.problem("shell pair: %v", err)
				}
				continue
			}
			if i >= 20 { // the first 20 of each warm up
				s.ds = append(s.ds, dur)
			}
		}
	}
	builtin := "tether Go client, long-lived conn: Run `true` in a builtin session (in turns)"
	r.add(newRow(fig, builtin, "us", durs(sides[1].ds, "us")))
	x := r.add(newRow(fig, "tether Go client, long-lived conn: Run `true` in a bash session (in turns)", "us", durs(sides[0].ds, "us")))
	x.Errors = errs
	r.ratio(x, builtin)
	r.note("figure 10: each shell on its own agent and connection, one `true` in each in turns; load average %s", loadavg())
	return nil
}
