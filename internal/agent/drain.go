package agent

import "time"

// Stopping (SIGTERM, `tether serve --stop`): the agent stops accepting and
// closes every authenticated connection that runs nothing — a connection
// master's, whose spare channel only waits for a request, would otherwise
// hold the stop open for as long as the master lives. A connection with a
// running channel (a command's output, an upload, a stock ssh session) is
// closed when its last one ends, or at Options.DrainTimeout: sessions
// outlive the agent, and a client whose connection closes under a running
// command reconnects and resumes it, exactly once.

// DefaultDrainTimeout bounds how long a stopping agent waits for running
// channels: below `tether serve --stop`'s 30 s, systemd's 90 s.
const DefaultDrainTimeout = 5 * time.Second

// connDrain is one authenticated connection, as the drain sees it. Its
// fields are guarded by Agent.drainMu.
type connDrain struct {
	close func() error
	busy  int // channels whose request was read and that are not done
}

// trackConn registers an authenticated connection; untrack it when it ends.
// A connection that completes its handshake while the agent is stopping is
// closed at once.
func (a *Agent) trackConn(close func() error) *connDrain {
	d := &connDrain{close: close}
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	if a.draining {
		close()
		return d
	}
	a.drainConns[d] = struct{}{}
	return d
}

func (a *Agent) untrackConn(d *connDrain) {
	a.drainMu.Lock()
	delete(a.drainConns, d)
	a.drainMu.Unlock()
}

// beginWork counts a channel of d (nil: not tracked) as running until
// endWork, for the drain and for the scaler of Ps (procs.go). Work begun
// while the agent stops (a request already on its way) runs until the
// drain's deadline.
func (a *Agent) beginWork(d *connDrain) {
	if d == nil {
		return
	}
	a.drainMu.Lock()
	d.busy++
	a.drainMu.Unlock()
	a.procs.begin()
}

// endWork ends what beginWork began; a stopping agent closes the
// connection once nothing of it runs.
func (a *Agent) endWork(d *connDrain) {
	if d == nil {
		return
	}
	a.procs.end()
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	d.busy--
	if a.draining && d.busy == 0 {
		d.close()
	}
}

// drain closes the idle connections now and the busy ones as they become
// idle, or all that are left at timeout.
func (a *Agent) drain(timeout time.Duration) {
	a.drainMu.Lock()
	a.draining = true
	busy := 0
	for d := range a.drainConns {
		if d.busy == 0 {
			d.close()
		} else {
			busy++
		}
	}
	a.drainMu.Unlock()
	if busy > 0 {
		a.log.Info("stopping: waiting for running channels", "connections", busy, "at most", timeout)
	}
	time.AfterFunc(timeout, func() {
		a.drainMu.Lock()
		defer a.drainMu.Unlock()
		for d := range a.drainConns {
			d.close()
		}
	})
}
