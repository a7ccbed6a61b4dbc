package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// tableOpts says how a table may be fitted to the terminal.
type tableOpts struct {
	// Width is the width to fit; 0 fits nothing (a pipe or a file gets
	// every column whole, except that Flex is capped at FlexMax).
	Width int
	// Wide (-o wide) shows every column whole, whatever the width.
	Wide bool
	// Flex is the column cut first ("…") when a row is too wide, down to
	// FlexMin characters; FlexMax caps it when not Wide.
	Flex             string
	FlexMin, FlexMax int
	// Drop lists the columns left out, in this order, while rows are still
	// too wide after Flex was cut (-o wide shows them).
	Drop []string
}

// termWidth is the width of the terminal w writes to, else $COLUMNS, else
// 0 (not a terminal: nothing to fit).
func termWidth(env *Env, w io.Writer) int {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	if n, err := strconv.Atoi(env.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 0
}

// writeTable prints header and rows in aligned columns, two spaces apart,
// fitted as o says.
func writeTable(w io.Writer, o tableOpts, header []string, rows [][]string) error {
	show := make([]bool, len(header))
	for i := range show {
		show[i] = true
	}
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i := range header {
			if i < len(r) {
				widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
			}
		}
	}
	flex := -1
	for i, h := range header {
		if h == o.Flex {
			flex = i
		}
	}
	total := func() int {
		n, cols := 0, 0
		for i, wd := range widths {
			if show[i] {
				n += wd
				cols++
			}
		}
		return n + 2*max(cols-1, 0)
	}
	if !o.Wide && flex >= 0 {
		if o.FlexMax > 0 && widths[flex] > o.FlexMax {
			widths[flex] = max(o.FlexMax, utf8.RuneCountInString(header[flex]))
		}
		if o.Width > 0 && total() > o.Width {
			widths[flex] = max(o.FlexMin, utf8.RuneCountInString(header[flex]), widths[flex]-(total()-o.Width))
		}
	}
	if !o.Wide && o.Width > 0 {
		for _, d := range o.Drop {
			if total() <= o.Width {
				break
			}
			for i, h := range header {
				if h == d {
					show[i] = false
				}
			}
		}
		if flex >= 0 && total() < o.Width {
			// Give back to Flex what dropping columns freed.
			full := 0
			for _, r := range rows {
				if flex < len(r) {
					full = max(full, utf8.RuneCountInString(r[flex]))
				}
			}
			if o.FlexMax > 0 {
				full = min(full, o.FlexMax)
			}
			widths[flex] = max(widths[flex], min(full, widths[flex]+o.Width-total()))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.Reset()
		last := -1
		for i := range header {
			if show[i] {
				last = i
			}
		}
		first := true
		for i := range header {
			if !show[i] {
				continue
			}
			cell := ""
			if i < len(cells) {
				cell = cells[i]
			}
			if !o.Wide {
				cell = cut(cell, widths[i])
			}
			if !first {
				b.WriteString("  ")
			}
			first = false
			b.WriteString(cell)
			if i != last {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)))
			}
		}
		b.WriteByte('\n')
	}
	line(header)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	for _, r := range rows {
		line(r)
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// cut shortens s to n characters, the last one "…" when something was cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// parseOutput checks -o: "" or "wide".
func parseOutput(o string) (wide bool, err error) {
	switch o {
	case "":
		return false, nil
	case "wide":
		return true, nil
	}
	return false, fmt.Errorf("bad -o %q: the only output format is wide (every column, nothing cut)", o)
}
