package targets

import (
	"sort"
	"strconv"
	"strings"
)

// Fold returns a short pdsh-style form of list: names that differ only in
// numbers share brackets ("web01/deploy,web02/deploy,web03/deploy,
// web07/deploy" is "web[01-03,07]/deploy"), zero padding is kept, and
// several numbers fold at once (rack[1-2]-n[01-04]). Duplicates fold once.
// Expand(Fold(list)) gives back exactly the set of list for every list that
// Expand can produce; Fold never writes steps.
func Fold(list []string) string {
	if len(list) == 0 {
		return ""
	}
	// Group the names by shape: the same text around the same number of
	// numeric fields.
	type shape struct {
		lits  []string
		items []foldItem
	}
	shapes := map[string]*shape{}
	var order []string
	seen := make(map[string]struct{}, len(list))
	for _, s := range list {
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		lits, nums := tokenize(s)
		key := strings.Join(lits, "\x00")
		sh, ok := shapes[key]
		if !ok {
			sh = &shape{lits: lits}
			shapes[key] = sh
			order = append(order, key)
		}
		it := foldItem{sets: make([]valSet, len(nums))}
		for i, n := range nums {
			it.sets[i] = valSet{vals: []num{n}}
		}
		sh.items = append(sh.items, it)
	}
	var parts []string
	for _, key := range order {
		sh := shapes[key]
		parts = append(parts, foldShape(sh.lits, sh.items)...)
	}
	sort.SliceStable(parts, func(i, j int) bool { return natLess(parts[i], parts[j]) })
	return strings.Join(parts, ",")
}

// num is one numeric field: its value and its text ("007").
type num struct {
	n uint64
	s string
}

type valSet struct {
	vals     []num // sorted by value, then width
	rendered string
}

type foldItem struct {
	sets []valSet
}

// tokenize cuts s into the text around its numbers. Bracketed IPv6
// addresses and over-long digit runs stay text.
func tokenize(s string) (lits []string, nums []num) {
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				end = len(s) - i - 1
			}
			lit.WriteString(s[i : i+end+1])
			i += end + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j-i > maxDigits {
				lit.WriteString(s[i:j])
			} else {
				v, _ := strconv.ParseUint(s[i:j], 10, 64)
				lits = append(lits, lit.String())
				lit.Reset()
				nums = append(nums, num{v, s[i:j]})
			}
			i = j
		default:
			lit.WriteByte(c)
			i++
		}
	}
	lits = append(lits, lit.String())
	return lits, nums
}

// foldShape folds items of one shape, trying every order of folding the
// numeric fields (up to three; beyond that, last field first) and keeping
// the shortest result.
func foldShape(lits []string, items []foldItem) []string {
	k := len(lits) - 1
	if k == 0 {
		return []string{lits[0]}
	}
	for i := range items {
		for d := range items[i].sets {
			items[i].sets[d].rendered = items[i].sets[d].vals[0].s
		}
	}
	var orders [][]int
	if k <= 3 {
		orders = permutations(k)
	} else {
		o := make([]int, k)
		for i := range o {
			o[i] = k - 1 - i
		}
		orders = [][]int{o}
	}
	var best []string
	bestLen := -1
	for _, ord := range orders {
		cur := items
		for _, d := range ord {
			cur = foldDim(cur, d)
		}
		out := make([]string, len(cur))
		total := 0
		for i, it := range cur {
			var b strings.Builder
			b.WriteString(lits[0])
			for d, vs := range it.sets {
				b.WriteString(vs.rendered)
				b.WriteString(lits[d+1])
			}
			out[i] = b.String()
			total += len(out[i]) + 1
		}
		if bestLen < 0 || total < bestLen {
			best, bestLen = out, total
		}
	}
	return best
}

// foldDim merges items that agree on every field but d.
func foldDim(items []foldItem, d int) []foldItem {
	idx := make(map[string]int, len(items))
	var out []foldItem
	var key strings.Builder
	for _, it := range items {
		key.Reset()
		for j, vs := range it.sets {
			if j != d {
				key.WriteString(vs.rendered)
			}
			key.WriteByte(0)
		}
		k := key.String()
		if i, ok := idx[k]; ok {
			m := &out[i].sets[d]
			m.vals = append(m.vals, it.sets[d].vals...)
			continue
		}
		idx[k] = len(out)
		sets := make([]valSet, len(it.sets))
		copy(sets, it.sets)
		sets[d].vals = append([]num(nil), it.sets[d].vals...)
		out = append(out, foldItem{sets: sets})
	}
	for i := range out {
		vs := &out[i].sets[d]
		if len(vs.vals) > 1 {
			vs.vals = sortUnique(vs.vals)
			vs.rendered = renderSet(vs.vals)
		}
	}
	return out
}

func sortUnique(v []num) []num {
	sort.Slice(v, func(i, j int) bool {
		if v[i].n != v[j].n {
			return v[i].n < v[j].n
		}
		return len(v[i].s) < len(v[j].s)
	})
	out := v[:1]
	for _, x := range v[1:] {
		if x.s != out[len(out)-1].s {
			out = append(out, x)
		}
	}
	return out
}

// renderSet writes sorted values as a bracket of runs. A run holds
// consecutive values that one zero-padding width prints exactly as they
// were written: "08","09","10" is 08-10, but "9","10" and "09" cannot share
// a run with each other's widths.
func renderSet(vals []num) string {
	if len(vals) == 1 {
		return vals[0].s
	}
	var b strings.Builder
	b.WriteByte('[')
	i := 0
	for i < len(vals) {
		lo, hi := widths(vals[i].s)
		j := i + 1
		for j < len(vals) && vals[j].n == vals[j-1].n+1 {
			l, h := widths(vals[j].s)
			if max(lo, l) > min(hi, h) {
				break
			}
			lo, hi = max(lo, l), min(hi, h)
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		if j-i == 1 {
			b.WriteString(vals[i].s)
		} else {
			w := hi
			b.Write(appendPadded(nil, vals[i].n, w))
			b.WriteByte('-')
			b.Write(appendPadded(nil, vals[j-1].n, w))
		}
		i = j
	}
	b.WriteByte(']')
	return b.String()
}

// widths is the range of padding widths that print a value as s.
func widths(s string) (lo, hi int) {
	if padded(s) {
		return len(s), len(s)
	}
	return 1, len(s)
}

func permutations(k int) [][]int {
	base := make([]int, k)
	for i := range base {
		base[i] = k - 1 - i // last field first, as ClusterShell does
	}
	var out [][]int
	var rec func(p []int, rest []int)
	rec = func(p []int, rest []int) {
		if len(rest) == 0 {
			out = append(out, append([]int(nil), p...))
			return
		}
		for i := range rest {
			r := append(append([]int(nil), rest[:i]...), rest[i+1:]...)
			rec(append(p, rest[i]), r)
		}
	}
	rec(nil, base)
	return out
}

// natLess orders strings with their digit runs compared as numbers, so
// web2 comes before web10.
func natLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			i, j := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			if i != j {
				return i < j
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
