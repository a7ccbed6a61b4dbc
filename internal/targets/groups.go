package targets

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Groups resolves @NAME from one or more sources: groups.toml files, whose
// members are target expressions (and may name other groups), and Ansible
// inventories, whose members are resolved addresses. A name defined by two
// sources is an error when it is used, not when the sources are loaded.
type Groups struct {
	sources []*groupSource
}

type groupSource struct {
	origin  string // file name, for messages
	literal bool   // members are final targets (an inventory)
	groups  map[string][]string
}

type groupDef struct {
	origin  string
	literal bool
	members []string
}

// AddExpressions adds groups whose members are target expressions, as a
// groups.toml file defines them. origin names the source in messages.
func (g *Groups) AddExpressions(origin string, groups map[string][]string) error {
	for name := range groups {
		if !validGroupName(name) {
			return fmt.Errorf("targets: %s: group name %q: use letters, digits, '_', '-' and '.'", origin, name)
		}
	}
	g.sources = append(g.sources, &groupSource{origin: origin, groups: groups})
	return nil
}

// AddInventory adds the groups of an Ansible inventory.
func (g *Groups) AddInventory(inv *Inventory) {
	g.sources = append(g.sources, &groupSource{origin: inv.Origin, literal: true, groups: inv.Groups})
}

// LoadFile reads a groups.toml file (docs/targets.md, "Groups"): a TOML
// table whose keys are group names and whose values are a list of target
// expressions, or one expression string:
//
//	web = ["web[01-20]", "@lb"]
//	db  = "db[1-3,7]"
//
// A missing file is an error wrapping os.ErrNotExist, so that the caller
// can ignore the default file when it is absent.
func (g *Groups) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("targets: groups file: %w", err)
	}
	m, err := ParseGroupsTOML(data, path)
	if err != nil {
		return err
	}
	return g.AddExpressions(path, m)
}

// ParseGroupsTOML parses the groups.toml format (see LoadFile).
func ParseGroupsTOML(data []byte, origin string) (map[string][]string, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, fmt.Errorf("targets: %s: %w", origin, err)
	}
	out := make(map[string][]string, len(raw))
	for name, v := range raw {
		switch v := v.(type) {
		case string:
			out[name] = []string{v}
		case []any:
			list := make([]string, 0, len(v))
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("targets: %s: group %q: every member must be a string, like %s = [\"web[1-3]\", \"@db\"]", origin, name, name)
				}
				list = append(list, s)
			}
			out[name] = list
		default:
			return nil, fmt.Errorf("targets: %s: group %q: write a list of target expressions, like %s = [\"web[1-3]\", \"@db\"]", origin, name, name)
		}
	}
	return out, nil
}

// Names lists every group name, sorted.
func (g *Groups) Names() []string {
	if g == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range g.sources {
		for n := range s.groups {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (g *Groups) lookup(name string) (groupDef, error) {
	var found []groupDef
	if g != nil {
		for _, s := range g.sources {
			if m, ok := s.groups[name]; ok {
				found = append(found, groupDef{origin: s.origin, literal: s.literal, members: m})
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return groupDef{}, g.unknown(name)
	}
	var origins []string
	for _, f := range found {
		origins = append(origins, f.origin)
	}
	return groupDef{}, &Error{Part: "@" + name, Msg: "the group is defined in more than one place (" + strings.Join(origins, ", ") + "); rename one", Kind: ErrUnknownGroup}
}

func (g *Groups) unknown(name string) error {
	names := g.Names()
	if len(names) == 0 {
		return &Error{Part: "@" + name, Msg: "unknown group: no groups are defined; write them in ~/.config/tether/groups.toml or name an Ansible inventory with --inventory (see docs/targets.md)", Kind: ErrUnknownGroup}
	}
	var origins []string
	for _, s := range g.sources {
		origins = append(origins, s.origin)
	}
	msg := "unknown group (groups come from " + strings.Join(origins, ", ") + ")"
	if close := closeNames(name, names, 3); len(close) > 0 {
		msg += "; did you mean @" + strings.Join(close, ", @") + "?"
	}
	return &Error{Part: "@" + name, Msg: msg, Kind: ErrUnknownGroup}
}

// closeNames is up to n names within a small edit distance of name, or
// sharing its prefix, nearest first.
func closeNames(name string, names []string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	limit := 1 + len(name)/4
	for _, c := range names {
		d := editDistance(strings.ToLower(name), strings.ToLower(c))
		if d <= limit || len(name) >= 2 && strings.HasPrefix(c, name) {
			cs = append(cs, cand{c, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours count 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20 // not worth it; long names are not typos of each other
	}
	pp := make([]int, len(b)+1) // row i-2
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(b)]
}
