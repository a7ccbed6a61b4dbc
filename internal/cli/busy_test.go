package cli

import (
	"testing"

	"github.com/tether-sh/tether/internal/client"
)

func TestBusyHint(t *testing.T) {
	tg := client.Target{Host: "vm", Port: client.DefaultPort, Session: "s"}
	attached := "session s is Busy: attached to lap (client a4e79f) since 2026-01-01T00:00:00Z; use --force to take it over"
	connected := "session s is Busy: connected to lap (client a4e79f) since 2026-01-01T00:00:00Z; use tether connect --force to take it over"
	for _, tc := range []struct{ cmd, msg, want string }{
		{"enter", connected, "session s is Busy: connected to lap (client a4e79f) since 2026-01-01T00:00:00Z; use tether enter --force vm/s to take it over"},
		{"enter", attached, "session s is Busy: attached to lap (client a4e79f) since 2026-01-01T00:00:00Z; use tether enter --force vm/s to take it over"},
		{"receive", connected, "session s is Busy: connected to lap (client a4e79f) since 2026-01-01T00:00:00Z; use tether receive --force vm/s to take it over"},
		{"connect", attached, "session s is Busy: attached to lap (client a4e79f) since 2026-01-01T00:00:00Z; use tether connect --force vm/s to take it over"},
		{"invoke", connected, "session s is Busy: connected to lap (client a4e79f) since 2026-01-01T00:00:00Z; take it over with tether connect --force vm/s, then run tether invoke again"},
		{"invoke", "session s is Busy running sleep", "session s is Busy running sleep"},
	} {
		cmd := tc.cmd
		if got := busyHint(tc.msg, &cmd, tg); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.cmd, got, tc.want)
		}
	}
}
