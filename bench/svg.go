package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

type xy struct{ x, y float64 }

// writeFanoutSVG plots seconds against N, both on log scales, one line per
// series: a hand-written SVG, no plotting dependency.
func writeFanoutSVG(path string, order []string, series map[string][]xy) error {
	if path == "" || len(order) == 0 {
		return nil
	}
	const w, h, ml, mr, mt, mb = 760.0, 460.0, 70.0, 230.0, 40.0, 50.0
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s {
			minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
			minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
		}
	}
	lx0, lx1 := math.Floor(math.Log10(minX)), math.Ceil(math.Log10(maxX))
	ly0, ly1 := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	if lx1 == lx0 {
		lx1++
	}
	if ly1 == ly0 {
		ly1++
	}
	px := func(x float64) float64 { return ml + (math.Log10(x)-lx0)/(lx1-lx0)*(w-ml-mr) }
	py := func(y float64) float64 { return h - mb - (math.Log10(y)-ly0)/(ly1-ly0)*(h-mt-mb) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15">Fan-out: wall time to run true on N targets (log-log)</text>`+"\n", ml)
	for e := lx0; e <= lx1; e++ {
		x := px(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", x, mt, x, h-mb, x, h-mb+16, math.Pow(10, e))
	}
	for e := ly0; e <= ly1; e++ {
		y := py(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%g s</text>`+"\n", ml, y, w-mr, y, ml-6, y+4, math.Pow(10, e))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">N (sessions or hosts)</text>`+"\n", ml+(w-ml-mr)/2, h-12)
	colors := []string{"#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd"}
	for i, name := range order {
		c := colors[i%len(colors)]
		var pts []string
		for _, p := range series[name] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		for _, p := range series[name] {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s N=%g: %.3f s</title></circle>`+"\n", px(p.x), py(p.y), c, name, p.x, p.y)
		}
		ly := mt + 20 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/><text x="%.1f" y="%.1f">%s</text>`+"\n", w-mr+15, ly, w-mr+40, ly, c, w-mr+46, ly+4, name)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
