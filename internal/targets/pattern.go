package targets

import (
	"fmt"
	"strconv"
	"strings"
)

// maxDigits bounds a range bound so that counts and values fit in uint64
// with room to multiply (a bound has at most 9 digits: 999,999,999).
const maxDigits = 9

// span is one element of a bracket: lo-hi/step, each value printed with at
// least width digits (zero padded when the bound was written padded).
type span struct {
	lo, hi, step uint64
	width        int
}

func (s span) count() uint64 { return (s.hi-s.lo)/s.step + 1 }

// segment is literal text, or (when spans is set) one bracket.
type segment struct {
	lit   string
	spans []span
}

// parsePattern cuts one operand into literal text and brackets. A bracket
// whose content has a ':' is an IPv6 literal ([::1]:4422) and stays text.
func parsePattern(expr, text string) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	for i := 0; i < len(text); {
		c := text[i]
		if c == ']' {
			return nil, &Error{Expr: expr, Part: text, Msg: "']' without a '['", Kind: ErrSyntax}
		}
		if c != '[' {
			lit.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(text[i:], ']')
		if end < 0 {
			return nil, &Error{Expr: expr, Part: text[i:], Msg: "'[' without a closing ']'", Kind: ErrSyntax}
		}
		body := text[i+1 : i+end]
		if strings.IndexByte(body, '[') >= 0 {
			return nil, &Error{Expr: expr, Part: text[i : i+end+1], Msg: "brackets cannot nest; write a[1-2]b[3-4] for two ranges", Kind: ErrSyntax}
		}
		if strings.IndexByte(body, ':') >= 0 {
			lit.WriteString(text[i : i+end+1]) // an IPv6 address
			i += end + 1
			continue
		}
		spans, err := parseBracket(expr, text, body)
		if err != nil {
			return nil, err
		}
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
		segs = append(segs, segment{spans: spans})
		i += end + 1
	}
	if lit.Len() > 0 {
		segs = append(segs, segment{lit: lit.String()})
	}
	return segs, nil
}

// parseBracket parses "01-03,7,10-20/2".
func parseBracket(expr, text, body string) ([]span, error) {
	bad := func(part, msg string) error {
		return &Error{Expr: expr, Part: part, Msg: msg, Kind: ErrSyntax}
	}
	if body == "" {
		return nil, bad(text, "empty range []; write a number or range inside, as in web[1-3]")
	}
	var spans []span
	for _, el := range strings.Split(body, ",") {
		if el == "" {
			return nil, bad(text, "empty element in ["+body+"]; write [1-3,7]")
		}
		rng, stepText, hasStep := strings.Cut(el, "/")
		loText, hiText, isRange := strings.Cut(rng, "-")
		if !isRange {
			hiText = loText
		}
		if hasStep && !isRange {
			return nil, bad(el, "a step needs a range, as in [1-10/2]")
		}
		if loText == "" {
			return nil, bad(el, fmt.Sprintf("range %q has no start; write N-%s", el, hiText))
		}
		if hiText == "" {
			return nil, bad(el, fmt.Sprintf("range %q has no end; write %s-N", el, loText))
		}
		for _, b := range []string{loText, hiText} {
			if !allDigits(b) {
				return nil, bad(el, fmt.Sprintf("%q is not a decimal number: ranges are numbers like [1-3] or [01-20] (not letters)", b))
			}
			if len(b) > maxDigits {
				return nil, &Error{Expr: expr, Part: el, Msg: fmt.Sprintf("%q has more than %d digits (see docs/targets.md, \"Caps\")", b, maxDigits), Kind: ErrTooMany}
			}
		}
		lo, _ := strconv.ParseUint(loText, 10, 64)
		hi, _ := strconv.ParseUint(hiText, 10, 64)
		step := uint64(1)
		if hasStep {
			if !allDigits(stepText) || len(stepText) > maxDigits {
				return nil, bad(el, fmt.Sprintf("step %q is not a number from 1 to 999999999", stepText))
			}
			step, _ = strconv.ParseUint(stepText, 10, 64)
			if step == 0 {
				return nil, bad(el, "a step of 0 never advances; write /1 or more")
			}
		}
		if lo > hi {
			return nil, bad(el, fmt.Sprintf("range %q goes backwards; write %s-%s", el, hiText, loText))
		}
		width := 0
		if padded(loText) {
			width = len(loText)
			if padded(hiText) && len(hiText) != width || !padded(hiText) && len(hiText) < width {
				return nil, bad(el, fmt.Sprintf("range %q mixes widths: write both ends with %d digits", el, width))
			}
		} else if padded(hiText) {
			return nil, bad(el, fmt.Sprintf("range %q pads only its end: write both ends with %d digits", el, len(hiText)))
		}
		spans = append(spans, span{lo: lo, hi: hi, step: step, width: width})
	}
	return spans, nil
}

// expandPattern expands one operand's brackets (cartesian, the first
// bracket outermost), after checking the count against max.
func expandPattern(expr, text string, max int) ([]string, error) {
	segs, err := parsePattern(expr, text)
	if err != nil {
		return nil, err
	}
	total := uint64(1)
	for _, sg := range segs {
		if sg.spans == nil {
			continue
		}
		var n uint64
		for _, sp := range sg.spans {
			n += sp.count()
			if n > uint64(max) {
				return nil, tooMany(expr, text, int(min(n, 1<<40)), max)
			}
		}
		total *= n
		if total > uint64(max) {
			return nil, tooMany(expr, text, int(min(total, 1<<40)), max)
		}
	}
	out := []string{""}
	for _, sg := range segs {
		if sg.spans == nil {
			for i := range out {
				out[i] += sg.lit
			}
			continue
		}
		vals := bracketValues(sg.spans)
		next := make([]string, 0, len(out)*len(vals))
		for _, p := range out {
			for _, v := range vals {
				next = append(next, p+v)
			}
		}
		out = next
	}
	return out, nil
}

func bracketValues(spans []span) []string {
	var vals []string
	buf := make([]byte, 0, 16)
	for _, sp := range spans {
		for v := sp.lo; ; v += sp.step {
			buf = appendPadded(buf[:0], v, sp.width)
			vals = append(vals, string(buf))
			if sp.hi-v < sp.step {
				break
			}
		}
	}
	return vals
}

func appendPadded(b []byte, v uint64, width int) []byte {
	var num [20]byte
	d := strconv.AppendUint(num[:0], v, 10)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// padded reports whether a number is written with leading zeros ("007").
func padded(s string) bool { return len(s) > 1 && s[0] == '0' }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validGroupName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
