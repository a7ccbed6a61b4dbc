package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// row is one measured figure: samples summarised.
type row struct {
	Figure string  `json:"figure"`
	Name   string  `json:"name"`
	Unit   string  `json:"unit"` // "ms", "us", "MiB/s", "s", "KiB", "hosts/s"
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	// Ratio is median(this)/median(reference) when a reference is named;
	// for latencies >1 means slower than the reference.
	RefName string  `json:"ref,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	Errors  int     `json:"errors,omitempty"`
	Note    string  `json:"note,omitempty"`
	// Extra holds figure-specific values (N, throttle, PSS parts...).
	Extra map[string]any `json:"extra,omitempty"`
}

// MarshalJSON writes NaN (no successful sample) as null.
func (x *row) MarshalJSON() ([]byte, error) {
	type plain row
	c := *x
	return json.Marshal(struct {
		*plain
		Min    any `json:"min"`
		Median any `json:"median"`
		P99    any `json:"p99"`
		Max    any `json:"max"`
		Mean   any `json:"mean"`
		Ratio  any `json:"ratio,omitempty"`
	}{(*plain)(&c), sample(c.Min, c.N), sample(c.Median, c.N), sample(c.P99, c.N), sample(c.Max, c.N), sample(c.Mean, c.N), num(c.Ratio)})
}

// sample writes a summary value: a measured 0 (idle CPU) is 0, not null.
func sample(f float64, n int) any {
	if n == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

func num(f float64) any {
	if f == 0 {
		return nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

func summarize(samples []float64) (n int, mn, med, p99, mx, mean float64) {
	if len(samples) == 0 {
		return 0, math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	q := func(p float64) float64 {
		if len(s) == 1 {
			return s[0]
		}
		x := p * float64(len(s)-1)
		i := int(math.Floor(x))
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (x-float64(i))*(s[i+1]-s[i])
	}
	return len(s), s[0], q(0.5), q(0.99), s[len(s)-1], sum / float64(len(s))
}

func newRow(fig, name, unit string, samples []float64) *row {
	r := &row{Figure: fig, Name: name, Unit: unit}
	r.N, r.Min, r.Median, r.P99, r.Max, r.Mean = summarize(samples)
	return r
}

// durs converts durations to the unit.
func durs(ds []time.Duration, unit string) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		switch unit {
		case "us":
			out[i] = float64(d) / float64(time.Microsecond)
		case "ms":
			out[i] = float64(d) / float64(time.Millisecond)
		default:
			out[i] = d.Seconds()
		}
	}
	return out
}

// target is one goal from the issue, judged against measured values.
type target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
	Skipped  bool   `json:"skipped,omitempty"`
}

type results struct {
	Machine  map[string]any `json:"machine"`
	Started  time.Time      `json:"started"`
	Seconds  float64        `json:"seconds"`
	Quick    bool           `json:"quick"`
	Command  string         `json:"command"`
	Rows     []*row         `json:"rows"`
	Targets  []target       `json:"targets"`
	Notes    []string       `json:"notes"`
	Problems []string       `json:"problems"` // errors, limits, crashes seen under load
}

func (r *results) add(x *row) *row {
	r.Rows = append(r.Rows, x)
	fmt.Fprintf(os.Stderr, "  %-58s %s\n", x.Name, x.short())
	return x
}

func (r *results) find(name string) *row {
	for _, x := range r.Rows {
		if x.Name == name {
			return x
		}
	}
	return nil
}

func (r *results) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, s)
	fmt.Fprintln(os.Stderr, "  note:", s)
}

func (r *results) problem(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.Problems = append(r.Problems, s)
	fmt.Fprintln(os.Stderr, "  PROBLEM:", s)
}

// ratio sets x's ratio against the row named ref.
func (r *results) ratio(x *row, ref string) {
	if x == nil {
		return
	}
	if y := r.find(ref); y != nil && y.Median != 0 && !math.IsNaN(y.Median) {
		x.RefName = ref
		x.Ratio = x.Median / y.Median
	}
}

func fnum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	case v >= 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func (x *row) short() string {
	s := fmt.Sprintf("n=%d min %s med %s p99 %s max %s %s", x.N, fnum(x.Min), fnum(x.Median), fnum(x.P99), fnum(x.Max), x.Unit)
	if x.Errors > 0 {
		s += fmt.Sprintf(" ERRORS=%d", x.Errors)
	}
	return s
}

// table renders the rows, grouped by figure, as Markdown.
func (r *results) table() string {
	var b strings.Builder
	fig := ""
	for _, x := range r.Rows {
		if x.Figure != fig {
			fig = x.Figure
			fmt.Fprintf(&b, "\n### %s\n\n| what | unit | n | min | median | p99 | max | ratio (median vs ref) |\n|---|---|---|---|---|---|---|---|\n", fig)
		}
		ratio := ""
		if x.RefName != "" {
			ratio = fmt.Sprintf("%.2f× %s", x.Ratio, x.RefName)
		}
		name := x.Name
		if x.Errors > 0 {
			name += fmt.Sprintf(" (**%d errors**)", x.Errors)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", name, x.Unit, x.N, fnum(x.Min), fnum(x.Median), fnum(x.P99), fnum(x.Max), ratio)
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n### Targets\n\n| target | goal | measured | result |\n|---|---|---|---|\n")
		for _, t := range r.Targets {
			res := "FAIL"
			switch {
			case t.Skipped:
				res = "not measured"
			case t.Pass:
				res = "pass"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, res)
		}
	}
	return b.String()
}
