// Package targets turns target expressions into lists of target strings:
// pdsh/clush ranges (web[01-20], n[1-10/2], rack[1-2]-n[01-04]), ranges
// inside session addresses (web[01-03]/deploy), groups (@web) from a
// groups.toml file or an Ansible inventory, host files, and the set
// operations union (,), difference (!) and intersection (&). Fold is the
// inverse: the short pdsh-style form of a list. The syntax is described for
// users in docs/targets.md.
//
// The package only rewrites strings: it does not parse the addresses it
// produces (internal/client does that) and it runs nothing.
package targets

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultMax is the cap on how many targets one expression may expand to,
// and on each range, set and group in it (docs/targets.md, "Caps").
const DefaultMax = 100_000

// Sentinel kinds of Error, for errors.Is.
var (
	ErrSyntax       = errors.New("malformed target expression")
	ErrEmpty        = errors.New("expression matches no targets")
	ErrTooMany      = errors.New("expression expands to too many targets")
	ErrUnknownGroup = errors.New("unknown group")
	ErrGroupCycle   = errors.New("cycle between groups")
)

// Error is a target expression that cannot be expanded. Part is the piece
// of Expr that is wrong.
type Error struct {
	Expr string
	Part string
	Msg  string
	Kind error // one of the Err* sentinels
}

func (e *Error) Error() string {
	switch {
	case e.Expr == "" || e.Part == e.Expr:
		return fmt.Sprintf("targets %q: %s", e.Part, e.Msg)
	case strings.Contains(e.Msg, strconv.Quote(e.Part)):
		return fmt.Sprintf("targets %q: %s", e.Expr, e.Msg) // the message names the part
	}
	return fmt.Sprintf("targets %q: %q: %s", e.Expr, e.Part, e.Msg)
}

func (e *Error) Unwrap() error { return e.Kind }

// Options are the sources and limits an expansion uses.
type Options struct {
	// Groups resolves @NAME; nil means no groups are defined.
	Groups *Groups
	// Exclude lists expressions whose targets are removed from the result
	// (pdsh -x). Excluding a host also excludes the sessions on it.
	Exclude []string
	// Max caps the expansion; 0 means DefaultMax.
	Max int
}

func (o Options) max() int {
	if o.Max > 0 {
		return o.Max
	}
	return DefaultMax
}

// Expand returns the targets expr names, each once, in the order the
// expression first names them. It fails, before anything runs, when the
// expression is malformed, names an unknown group, has a cycle between
// groups, expands to more than the cap, or expands to nothing.
func Expand(expr string, opts Options) ([]string, error) {
	return ExpandAll([]string{expr}, opts)
}

// ExpandAll is Expand of the union of several expressions (command-line
// arguments, the lines of a host file).
func ExpandAll(exprs []string, opts Options) ([]string, error) {
	ev := &evaluator{opts: opts, max: opts.max(), memo: map[string][]string{}}
	var all orderedSet
	for _, e := range exprs {
		s, err := ev.eval(e)
		if err != nil {
			return nil, err
		}
		if err := all.union(s, ev.max, e); err != nil {
			return nil, err
		}
	}
	if len(opts.Exclude) > 0 {
		var ex orderedSet
		for _, e := range opts.Exclude {
			s, err := ev.eval(e)
			if err != nil {
				return nil, fmt.Errorf("excluded targets: %w", err)
			}
			if err := ex.union(s, ev.max, e); err != nil {
				return nil, fmt.Errorf("excluded targets: %w", err)
			}
		}
		all.exclude(&ex)
	}
	if len(all.list) == 0 {
		what := strings.Join(exprs, " ")
		msg := "matches no targets"
		if len(opts.Exclude) > 0 {
			msg += " (after excluding " + strings.Join(opts.Exclude, ",") + ")"
		}
		return nil, &Error{Part: what, Msg: msg, Kind: ErrEmpty}
	}
	return all.list, nil
}

// evaluator expands expressions left to right, as ClusterShell's extended
// patterns do: "a,b!c" is (a ∪ b) \ c.
type evaluator struct {
	opts  Options
	max   int
	memo  map[string][]string // group name → its targets
	stack []string            // groups being expanded, for cycle reports
}

func (ev *evaluator) eval(expr string) ([]string, error) {
	terms, err := splitTerms(expr)
	if err != nil {
		return nil, err
	}
	var acc orderedSet
	seen := false // a term has been read: '!' and '&' need one on their left
	for _, t := range terms {
		if t.text == "" {
			if t.op == ',' {
				continue // "a,,b" and a trailing comma are harmless
			}
			return nil, &Error{Expr: expr, Part: string(t.op), Msg: fmt.Sprintf("nothing after %q; write A%cB", t.op, t.op), Kind: ErrSyntax}
		}
		if !seen && t.op != ',' {
			return nil, &Error{Expr: expr, Part: string(t.op) + t.text, Msg: fmt.Sprintf("%q needs a set on its left, as in web[1-9]%c%s (or use -x to exclude)", t.op, t.op, t.text), Kind: ErrSyntax}
		}
		items, err := ev.term(expr, t.text)
		if err != nil {
			return nil, err
		}
		seen = true
		switch t.op {
		case ',':
			err = acc.union(items, ev.max, expr)
		case '!':
			var ex orderedSet
			err = ex.union(items, ev.max, expr)
			acc.exclude(&ex)
		case '&':
			acc.intersect(items)
		}
		if err != nil {
			return nil, err
		}
	}
	return acc.list, nil
}

// term expands one operand: a pattern, or a group @NAME[/SESSION].
func (ev *evaluator) term(expr, text string) ([]string, error) {
	if strings.HasPrefix(text, "@") {
		return ev.groupTerm(expr, text)
	}
	return expandPattern(expr, text, ev.max)
}

func (ev *evaluator) groupTerm(expr, text string) ([]string, error) {
	namePat, suffix, hasSuffix := strings.Cut(text[1:], "/")
	if namePat == "" {
		return nil, &Error{Expr: expr, Part: text, Msg: "no group name after '@'; write @NAME", Kind: ErrSyntax}
	}
	names, err := expandPattern(expr, namePat, ev.max)
	if err != nil {
		return nil, err
	}
	var sessions []string
	if hasSuffix {
		if suffix == "" {
			return nil, &Error{Expr: expr, Part: text, Msg: "nothing after '/'; write @GROUP/SESSION or @GROUP", Kind: ErrSyntax}
		}
		if sessions, err = expandPattern(expr, suffix, ev.max); err != nil {
			return nil, err
		}
	}
	var out orderedSet
	for _, name := range names {
		if !validGroupName(name) {
			return nil, &Error{Expr: expr, Part: "@" + name, Msg: "a group name is letters, digits, '_', '-' and '.'", Kind: ErrSyntax}
		}
		members, err := ev.group(name)
		if err != nil {
			return nil, err
		}
		if !hasSuffix {
			if err := out.union(members, ev.max, expr); err != nil {
				return nil, err
			}
			continue
		}
		withSess := make([]string, 0, len(members)*len(sessions))
		for _, m := range members {
			if _, _, ok := splitSession(m); ok {
				return nil, &Error{Expr: expr, Part: text, Msg: fmt.Sprintf("member %q of @%s already names a session", m, name), Kind: ErrSyntax}
			}
			for _, s := range sessions {
				withSess = append(withSess, m+"/"+s)
			}
			if len(withSess) > ev.max {
				return nil, tooMany(expr, text, len(withSess), ev.max)
			}
		}
		if err := out.union(withSess, ev.max, expr); err != nil {
			return nil, err
		}
	}
	return out.list, nil
}

// group expands one group, once per Expand call.
func (ev *evaluator) group(name string) ([]string, error) {
	if m, ok := ev.memo[name]; ok {
		return m, nil
	}
	for i, s := range ev.stack {
		if s == name {
			cycle := append(append([]string{}, ev.stack[i:]...), name)
			return nil, &Error{Part: "@" + name, Msg: "groups refer to each other in a cycle: @" + strings.Join(cycle, " -> @"), Kind: ErrGroupCycle}
		}
	}
	g, err := ev.opts.Groups.lookup(name)
	if err != nil {
		return nil, err
	}
	var members []string
	if g.literal {
		members = g.members
	} else {
		ev.stack = append(ev.stack, name)
		var set orderedSet
		for _, m := range g.members {
			s, err := ev.eval(m)
			if err != nil {
				ev.stack = ev.stack[:len(ev.stack)-1]
				var te *Error
				if errors.As(err, &te) && te.Kind == ErrGroupCycle {
					return nil, err // already says where
				}
				return nil, fmt.Errorf("in group @%s (%s): %w", name, g.origin, err)
			}
			if err := set.union(s, ev.max, "@"+name); err != nil {
				ev.stack = ev.stack[:len(ev.stack)-1]
				return nil, err
			}
		}
		ev.stack = ev.stack[:len(ev.stack)-1]
		members = set.list
	}
	if len(members) > ev.max {
		return nil, tooMany("", "@"+name, len(members), ev.max)
	}
	ev.memo[name] = members
	return members, nil
}

type term struct {
	op   byte // ',' for the first term and unions, '!', '&'
	text string
}

// splitTerms cuts an expression at the operators outside brackets and
// checks that brackets balance and do not nest.
func splitTerms(expr string) ([]term, error) {
	var out []term
	depth, start, open := 0, 0, -1
	op := byte(',')
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch c {
		case '[':
			if depth > 0 {
				return nil, &Error{Expr: expr, Part: expr[open:min(len(expr), i+1)], Msg: "brackets cannot nest; write a[1-2]b[3-4] for two ranges", Kind: ErrSyntax}
			}
			depth, open = 1, i
		case ']':
			if depth == 0 {
				return nil, &Error{Expr: expr, Part: expr[start : i+1], Msg: "']' without a '['", Kind: ErrSyntax}
			}
			depth = 0
		case ',', '!', '&':
			if depth == 0 {
				out = append(out, term{op, strings.TrimSpace(expr[start:i])})
				op, start = c, i+1
			}
		}
	}
	if depth > 0 {
		return nil, &Error{Expr: expr, Part: expr[open:], Msg: "'[' without a closing ']'", Kind: ErrSyntax}
	}
	out = append(out, term{op, strings.TrimSpace(expr[start:])})
	for _, t := range out {
		if i := strings.IndexFunc(t.text, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
			return nil, &Error{Expr: expr, Part: t.text, Msg: "a target cannot contain spaces or control characters; separate targets with ','", Kind: ErrSyntax}
		}
	}
	return out, nil
}

// splitSession splits "ADDR/NAME" (an optional scheme:// prefix is part of
// ADDR) and reports whether there is a session part.
func splitSession(t string) (addr, session string, ok bool) {
	skip := 0
	if i := strings.Index(t, "://"); i >= 0 {
		skip = i + 3
	}
	if j := strings.IndexByte(t[skip:], '/'); j >= 0 {
		return t[:skip+j], t[skip+j+1:], true
	}
	return t, "", false
}

func tooMany(expr, part string, n, max int) error {
	return &Error{Expr: expr, Part: part, Msg: fmt.Sprintf("expands to %d targets, more than the cap of %d (see docs/targets.md, \"Caps\")", n, max), Kind: ErrTooMany}
}

// orderedSet is a set of strings that remembers insertion order.
type orderedSet struct {
	list []string
	has  map[string]struct{}
}

func (s *orderedSet) union(items []string, max int, expr string) error {
	if s.has == nil {
		s.has = make(map[string]struct{}, len(items))
	}
	for _, it := range items {
		if _, ok := s.has[it]; ok {
			continue
		}
		if len(s.list) >= max {
			return &Error{Expr: expr, Part: expr, Msg: fmt.Sprintf("expands to more than the cap of %d targets (see docs/targets.md, \"Caps\")", max), Kind: ErrTooMany}
		}
		s.has[it] = struct{}{}
		s.list = append(s.list, it)
	}
	return nil
}

// exclude removes every member of ex, and every session on a host in ex.
func (s *orderedSet) exclude(ex *orderedSet) {
	if len(ex.list) == 0 || len(s.list) == 0 {
		return
	}
	kept := s.list[:0]
	for _, t := range s.list {
		_, gone := ex.has[t]
		if !gone {
			if addr, _, ok := splitSession(t); ok {
				_, gone = ex.has[addr]
			}
		}
		if gone {
			delete(s.has, t)
			continue
		}
		kept = append(kept, t)
	}
	s.list = kept
}

func (s *orderedSet) intersect(items []string) {
	keep := make(map[string]struct{}, len(items))
	for _, it := range items {
		keep[it] = struct{}{}
	}
	kept := s.list[:0]
	for _, t := range s.list {
		if _, ok := keep[t]; ok {
			kept = append(kept, t)
		} else {
			delete(s.has, t)
		}
	}
	s.list = kept
}
