package main

import "testing"

// The judge checks #18's targets on the rows the figures make: a missing
// row is skipped, not passed; a ratio is judged in its own direction.
func TestJudgePerf18Targets(t *testing.T) {
	rows := map[string]float64{
		"loopback TCP 64 B round trip (floor)":                                 10,
		"tether Go client, long-lived conn: Run `true` (builtin)":              150, // 15× RTT
		"ssh host true (ControlMaster up)":                                     12,
		"tether invoke H/S true (fresh CLI, TETHER_CONTROL_PERSIST master up)": 5.9, // 2.03×
		"tether invoke H/S head -c 1024 MiB >/dev/null (fresh CLI)":            580,
		"ssh host head -c 1024 MiB >/dev/null, aes128-gcm@openssh.com":         700, // 0.83×
		"tether invoke H/S 'cat >/dev/null' < 1024 MiB of stdin (fresh CLI)":   300,
		"ssh -c aes128-gcm host 'cat >/dev/null' < 1024 MiB of stdin":          400, // 0.75×
		"imported proxy command (module command `true`, fresh CLI)":            18,
		"tether invoke H/S true (fresh CLI, in turns with the proxy)":          13, // 1.38×
	}
	r := &results{}
	for name, median := range rows {
		r.Rows = append(r.Rows, &row{Name: name, N: 10, Median: median})
	}
	judge(r, config{throttles: []int{64}, fanNs: []int{1000}}, "bash")
	want := map[string]struct{ pass, skipped bool }{
		"`true` in an existing bash session, long-lived client":              {false, false},
		"`tether invoke H/S true`, fresh CLI, both with a master up":         {true, false},
		"`tether invoke H/S true`, fresh CLI, tether without a master":       {false, true},
		"output (tether invoke vs ssh -c aes128-gcm)":                        {true, false},
		"input (stdin → cat, tether invoke vs ssh -c aes128-gcm)":            {false, false},
		"Go client (long-lived, this process's settings) vs the CLI, output": {false, true},
		"imported proxy command vs a fresh `invoke H/S true`":                {true, false},
	}
	seen := map[string]bool{}
	for _, tg := range r.Targets {
		w, ok := want[tg.Name]
		if !ok {
			continue
		}
		seen[tg.Name] = true
		if tg.Pass != w.pass || tg.Skipped != w.skipped {
			t.Errorf("%s (%s): pass %v skipped %v (%s), want pass %v skipped %v", tg.Name, tg.Goal, tg.Pass, tg.Skipped, tg.Measured, w.pass, w.skipped)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no target %q", name)
		}
	}
}
