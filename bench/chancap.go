package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/wire"
)

// figChanCap (figure 12) measures what issue #11's channel cap costs a fan-out: the
// same `invoke --throttle 256 true` over 1,000 sessions on 4 agents with
// MaxSessionsPerConnection at its default (10, OpenSSH's MaxSessions) and
// at 1,000, in turns, so the two share the machine's load. With one channel
// per run the cap made the client open ~7 connections per agent instead of
// one; with mux channels (16 runs each) it opens one under either cap.
// CPU per target is reported beside wall time: a handshake costs CPU, and
// CPU swings less than wall time on a shared machine.
func (b *bench) figChanCap(r *results, cfg config) error {
	const fig = "12. channel cap: fan-out with MaxSessionsPerConnection 10 vs 1000"
	fmt.Fprintln(os.Stderr, "figure 12: channel cap")
	n, rounds := 1000, 5
	if cfg.quick {
		n, rounds = 100, 2
	}
	const throttle = 256
	agents := make([]*agentProc, cfg.fanAgents)
	for i := range agents {
		a, err := b.startAgent(fmt.Sprintf("cap%d", i), n/cfg.fanAgents+50)
		if err != nil {
			return err
		}
		agents[i] = a
	}
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	lists := make([][]string, len(agents))
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[i], errs[i] = b.newSessions(a, n/len(agents))
		}()
	}
	wg.Wait()
	var all []string
	for i, l := range lists {
		if errs[i] != nil {
			return errs[i]
		}
		all = append(all, l...)
	}
	targets := strings.Join(all, ",")
	var agentPIDs []int
	for _, a := range agents {
		agentPIDs = append(agentPIDs, a.pid())
	}
	setCap := func(v int) error {
		for _, a := range agents {
			if out, err := b.tether(nil, "config", "set", a.addr, "MaxSessionsPerConnection", strconv.Itoa(v)); err != nil {
				return fmt.Errorf("config set MaxSessionsPerConnection %d: %v: %s", v, err, out)
			}
		}
		return nil
	}
	type side struct {
		cap                  int
		wall                 []time.Duration
		cpuClient, cpuAgents time.Duration
		runs                 int
	}
	sides := []*side{{cap: 10}, {cap: 1000}}
	if hold := os.Getenv("CHANCAP_HOLD"); hold != "" {
		holdForProfiling(hold, b, agents, agentPIDs, targets)
	}
	settle()
	for round := 0; round < rounds; round++ {
		for _, s := range sides {
			if err := setCap(s.cap); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			cmd := b.tetherCmd(ctx, "invoke", "--throttle", strconv.Itoa(throttle), targets, "true")
			var errb bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, &errb
			a0 := procsCPU(agentPIDs)
			t0 := time.Now()
			err := cmd.Run()
			el := time.Since(t0)
			cancel()
			if err != nil {
				r.problem("channel cap %d: %v: %.300s", s.cap, err, errb.String())
				continue
			}
			s.wall = append(s.wall, el)
			s.cpuAgents += procsCPU(agentPIDs) - a0
			s.cpuClient += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			s.runs++
		}
	}
	if err := setCap(10); err != nil {
		return err
	}
	name := func(c int) string {
		return fmt.Sprintf("invoke --throttle %d true, N=%d on %d agents, MaxSessionsPerConnection %d", throttle, len(all), len(agents), c)
	}
	for _, s := range sides {
		x := r.add(newRow(fig, name(s.cap), "s", durs(s.wall, "s")))
		if s.cap == 10 {
			defer r.ratio(x, name(1000))
		}
		if s.runs > 0 {
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(s.runs*len(all)) }
			r.add(newRow(fig, fmt.Sprintf("  CPU per target, cap %d: client (the CLI)", s.cap), "us", []float64{per(s.cpuClient)}))
			r.add(newRow(fig, fmt.Sprintf("  CPU per target, cap %d: agents", s.cap), "us", []float64{per(s.cpuAgents)}))
		}
	}
	r.note("channel cap: %d rounds in turns (cap 10, cap 1000, …); with mux channels (%d runs each) the client opens one connection per agent for --throttle %d under either cap (with a channel per run, cap 10 took about %d)", rounds, wire.MaxMuxStreams, throttle, (throttle/len(agents)+9)/10)
	return nil
}

// holdForProfiling (CHANCAP_HOLD=FILE) writes what a shell needs to run the
// figure's fan-out by hand (binary, key, environment, agent pids and
// addresses, targets) to FILE and waits until FILE is removed, with the
// agents and sessions up: for perf/strace of the CLI and the agents, and for
// two builds in turns on the same agents.
func holdForProfiling(file string, b *bench, agents []*agentProc, pids []int, targets string) {
	var addrs []string
	for _, a := range agents {
		addrs = append(addrs, a.addr)
	}
	env := b.tetherCmd(context.Background()).Env
	fmt.Fprintf(os.Stderr, "figure 12: holding the agents until %s is removed\n", file)
	os.WriteFile(file, fmt.Appendf(nil, "BIN=%s\nKEY=%s\nENV=%q\nPIDS=%q\nADDRS=%q\nTARGETS=%s\n",
		b.bin, b.key, strings.Join(env, " "), fmt.Sprint(pids), strings.Join(addrs, " "), targets), 0o644)
	for {
		if _, err := os.Stat(file); err != nil {
			return
		}
		time.Sleep(time.Second)
	}
}
