package sessionhost

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
	"github.com/tether-sh/tether/internal/wire"
)

// readEnd reads the next frame, which must be the host's TEnd (EndMark).
func (hc *hostConn) readEnd() {
	hc.t.Helper()
	hc.nc.SetReadDeadline(time.Now().Add(waitLong))
	defer hc.nc.SetReadDeadline(time.Time{})
	typ, p, err := hc.c.Read()
	if err != nil || typ != wire.TEnd || len(p) != 0 {
		hc.t.Fatalf("after the final ack: frame %s (%d bytes), %v; want the host's TEnd", typ, len(p), err)
	}
}

// TestEndMarkKeepsTheConnection: a run with EndMark (the agent's, for a
// client that does not keep its channel) ends with the host's TEnd once
// the exit record is acknowledged; after the agent's TEnd the host serves
// the next run on the same connection, without a Hello, and the session is
// free in between (from the agent's TEnd on). A connection closed after the host's TEnd, without the
// agent's, is not served again and leaves the session Available.
func TestEndMarkKeepsTheConnection(t *testing.T) {
	th := startHost(t, nil)
	hc, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "echo one; exit 3", EndMark: true})
	outs := hc.untilExit()
	if got := text(outs); got != "o:one\n" {
		t.Fatalf("first run: output %q, want %q", got, "o:one\n")
	}
	if code := exitCodeOf(t, outs[len(outs)-1]); code != 3 {
		t.Fatalf("first run: exit code %d, want 3", code)
	}
	hc.readEnd()
	if err := hc.c.Write(wire.TEnd); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, waitLong, "session Available between the runs", func() bool {
		si := th.status()
		return si.Availability == wire.AvailAvailable
	})
	if err := hc.c.WriteJSON(wire.TRequest, wire.Request{Op: opRun, Client: desk, Command: "echo two", EndMark: true}); err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := hc.c.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("second run on the kept connection: %+v, %v", resp, err)
	}
	if got := text(hc.untilExit()); got != "o:two\n" {
		t.Fatalf("second run: output %q, want %q", got, "o:two\n")
	}
	hc.readEnd()
	hc.nc.Close() // no TEnd from the agent: the connection is done

	tstest.WaitFor(t, waitLong, "session Available after the second run", func() bool {
		si := th.status()
		return si.State == wire.StateOpened && si.Availability == wire.AvailAvailable
	})
	// Without EndMark the host closes after the final ack and says
	// nothing more: a host's TEnd is only ever an answer to EndMark.
	hc2, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "echo three"})
	hc2.untilExit()
	hc2.nc.SetReadDeadline(time.Now().Add(waitLong))
	typ, _, err := hc2.c.Read()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a run without EndMark: frame %s (%v) after the final ack; want the connection closed", typ, err)
	}
}

// TestEndMarkIgnoredWithStdin: a run with stdin does not keep its
// connection (its stdin frames would follow the end), whatever the request
// says.
func TestEndMarkIgnoredWithStdin(t *testing.T) {
	th := startHost(t, nil)
	hc, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "cat", Stdin: true, EndMark: true})
	hc.endStdin("in\n")
	outs := hc.untilExit()
	if got := text(outs); !strings.Contains(got, "in") {
		t.Fatalf("output %q, want the stdin echoed", got)
	}
	hc.waitClosedByHost()
}

// TestQuickRunWaitsForTheFinalAck: a command whose exit record goes out
// with the response is delivered only once the client acknowledges it.
// Before, the host counted the response's records as delivered (they
// preceded the stream's wait), freed the session and closed without
// reading the ack: the journal kept them as unacknowledged (the session's
// Pending), and with EndMark its End overtook the client's ack, which the
// agent then dropped.
func TestQuickRunWaitsForTheFinalAck(t *testing.T) {
	th := startHost(t, nil)
	for _, endMark := range []bool{false, true} {
		hc, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "true", EndMark: endMark})
		var exit wire.Output
		for {
			o, err := hc.next()
			if err != nil {
				t.Fatalf("end mark %v: %v", endMark, err)
			}
			if isExit(o) {
				exit = o
				break
			}
		}
		// Not acknowledged yet: the host must neither close nor say End.
		hc.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if typ, _, err := hc.c.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("end mark %v: before the final ack the host sent %s / %v; want it waiting", endMark, typ, err)
		}
		hc.nc.SetReadDeadline(time.Time{})
		if si := th.status(); si.Availability == wire.AvailAvailable {
			t.Fatalf("end mark %v: session %s before the final ack, want still held", endMark, si.Availability)
		}
		if err := hc.c.WriteU64(wire.TAck, exit.Seq, nil); err != nil {
			t.Fatal(err)
		}
		if endMark {
			hc.readEnd()
			hc.c.Write(wire.TEnd)
		} else {
			hc.waitClosedByHost()
		}
		tstest.WaitFor(t, waitLong, "the session free, nothing pending", func() bool {
			si := th.status()
			return si.Availability == wire.AvailAvailable && si.Pending == 0
		})
	}
}
