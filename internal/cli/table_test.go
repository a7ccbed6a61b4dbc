package cli

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWriteTable(t *testing.T) {
	header := []string{"SESSION", "STATE", "CREATED", "COMMAND"}
	rows := [][]string{
		{"vm/a", "Opened", "2026-01-01 00:00:00", strings.Repeat("x", 100)},
		{"vm/bb", "Broken", "-", "-"},
	}
	o := tableOpts{Flex: "COMMAND", FlexMin: 12, FlexMax: 60, Drop: []string{"CREATED"}}
	render := func(o tableOpts) []string {
		var b strings.Builder
		writeTable(&b, o, header, rows)
		return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	}
	for _, width := range []int{40, 60, 80, 200} {
		o.Width = width
		for _, l := range render(o) {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: a line of %d: %q", width, n, l)
			}
		}
	}
	o.Width = 60 // COMMAND cut to fit
	if got := render(o); !strings.Contains(got[0], "CREATED") || !strings.HasSuffix(got[1], "…") || utf8.RuneCountInString(got[1]) != 60 {
		t.Errorf("width 60:\n%s", strings.Join(got, "\n"))
	}
	o.Width = 40 // COMMAND at its minimum is not enough: CREATED goes
	if got := render(o); strings.Contains(got[0], "CREATED") || !strings.HasSuffix(got[1], "…") || !strings.HasPrefix(got[2], "vm/bb    Broken  -") {
		t.Errorf("width 40:\n%s", strings.Join(got, "\n"))
	}
	o.Width = 80
	if got := render(o); !strings.Contains(got[0], "CREATED") {
		t.Errorf("width 80 dropped CREATED:\n%s", strings.Join(got, "\n"))
	}
	// Not a terminal: whole columns, the command capped at 60.
	o.Width = 0
	if got := render(o); utf8.RuneCountInString(got[1]) != 7+2+6+2+19+2+60 {
		t.Errorf("no width:\n%s", strings.Join(got, "\n"))
	}
	o.Width, o.Wide = 40, true
	if got := render(o); !strings.Contains(got[1], strings.Repeat("x", 100)) || !strings.Contains(got[0], "CREATED") {
		t.Errorf("wide:\n%s", strings.Join(got, "\n"))
	}
	if got := render(o); got[2] != "vm/bb    Broken  -                    -" {
		t.Errorf("padding: %q", got[2])
	}
}
