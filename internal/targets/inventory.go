package targets

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Inventory is an Ansible inventory reduced to what Tether needs: each
// group's hosts, every host resolved to the address Tether dials.
type Inventory struct {
	Origin string
	// Groups maps a group name ("all" and "ungrouped" included) to its hosts
	// and its children's hosts, each as [USER@]ADDRESS[:PORT].
	Groups map[string][]string
	// Hosts maps an inventory host name to its resolved address.
	Hosts map[string]string
}

// LoadInventory reads an Ansible inventory file in INI or YAML form, or the
// JSON that `ansible-inventory --list` prints (see ParseInventory).
func LoadInventory(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("targets: inventory: %w", err)
	}
	return ParseInventory(data, path)
}

// ParseInventory parses an inventory, choosing the format by origin's
// extension (.ini, .yml/.yaml, .json) or else by its content: JSON starts
// with '{', INI with a [section] or a host line, YAML with "group:".
//
// Each host resolves to [USER@]ADDRESS[:PORT] from its variables, group
// variables included with Ansible's precedence (deeper groups over their
// parents, then by name; host variables over all): ADDRESS is tether_host,
// ansible_host or the inventory name; USER is tether_user or ansible_user;
// PORT is tether_port or ansible_port (ansible_port is the port Ansible
// uses, usually sshd's: set tether_port where the agents listen elsewhere).
func ParseInventory(data []byte, origin string) (*Inventory, error) {
	var m *invModel
	var err error
	switch inventoryFormat(data, origin) {
	case "json":
		m, err = parseInventoryJSON(data)
	case "yaml":
		m, err = parseInventoryYAML(data)
	default:
		m, err = parseInventoryINI(data)
	}
	if err != nil {
		return nil, fmt.Errorf("targets: inventory %s: %w", origin, err)
	}
	inv, err := m.resolve(origin)
	if err != nil {
		return nil, fmt.Errorf("targets: inventory %s: %w", origin, err)
	}
	return inv, nil
}

func inventoryFormat(data []byte, origin string) string {
	if t := strings.TrimSpace(string(data)); strings.HasPrefix(t, "{") {
		return "json"
	}
	switch strings.ToLower(filepath.Ext(origin)) {
	case ".json":
		return "json"
	case ".yml", ".yaml":
		return "yaml"
	case ".ini", ".cfg":
		return "ini"
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line == "---" {
			continue
		}
		// "all:" or "web:" ends a YAML key; an INI host line never ends in ':'.
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, "[") {
			return "yaml"
		}
		return "ini"
	}
	return "ini"
}

// invModel is the inventory as written, before resolution.
type invModel struct {
	groups    map[string]*invGroup
	order     []string // group names in the order first seen
	hostVars  map[string]map[string]string
	hostOrder []string
	nhosts    int
}

type invGroup struct {
	name     string
	hosts    []string
	hostSet  map[string]bool
	children []string
	childSet map[string]bool
	vars     map[string]string
}

func newModel() *invModel {
	return &invModel{groups: map[string]*invGroup{}, hostVars: map[string]map[string]string{}}
}

func (m *invModel) group(name string) (*invGroup, error) {
	if g, ok := m.groups[name]; ok {
		return g, nil
	}
	if !validGroupName(name) {
		return nil, fmt.Errorf("group name %q: use letters, digits, '_', '-' and '.'", name)
	}
	if len(m.groups) >= DefaultMax {
		return nil, fmt.Errorf("more than %d groups", DefaultMax)
	}
	g := &invGroup{name: name, hostSet: map[string]bool{}, childSet: map[string]bool{}, vars: map[string]string{}}
	m.groups[name] = g
	m.order = append(m.order, name)
	return g, nil
}

// addHost puts host in group, with its own variables (merged over any it
// already has).
func (m *invModel) addHost(group, host string, vars map[string]string) error {
	g, err := m.group(group)
	if err != nil {
		return err
	}
	hv, ok := m.hostVars[host]
	if !ok {
		if m.nhosts >= DefaultMax {
			return fmt.Errorf("more than %d hosts (see docs/targets.md, \"Caps\")", DefaultMax)
		}
		m.nhosts++
		hv = map[string]string{}
		m.hostVars[host] = hv
		m.hostOrder = append(m.hostOrder, host)
	}
	for k, v := range vars {
		hv[k] = v
	}
	if !g.hostSet[host] {
		g.hostSet[host] = true
		g.hosts = append(g.hosts, host)
	}
	return nil
}

func (m *invModel) addChild(parent, child string) error {
	p, err := m.group(parent)
	if err != nil {
		return err
	}
	if _, err := m.group(child); err != nil {
		return err
	}
	if !p.childSet[child] {
		p.childSet[child] = true
		p.children = append(p.children, child)
	}
	return nil
}

// resolve adds the implicit groups, checks for cycles, and resolves every
// host and group to addresses.
func (m *invModel) resolve(origin string) (*Inventory, error) {
	all, _ := m.group("all")
	if _, err := m.group("ungrouped"); err != nil {
		return nil, err
	}
	// A cycle would make Ansible fail too; say where it is.
	state := map[string]int{} // 1 visiting, 2 done
	var path []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			i := indexOf(path, n)
			return fmt.Errorf("groups are children of each other in a cycle: %s", strings.Join(append(append([]string{}, path[i:]...), n), " -> "))
		case 2:
			return nil
		}
		state[n] = 1
		path = append(path, n)
		for _, c := range m.groups[n].children {
			if err := visit(c); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[n] = 2
		return nil
	}
	for _, n := range m.order {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	parents := map[string][]string{}
	for _, n := range m.order {
		for _, c := range m.groups[n].children {
			parents[c] = append(parents[c], n)
		}
	}
	// Every group but all that has no parent is a child of all.
	for _, n := range m.order {
		if n != "all" && len(parents[n]) == 0 {
			all.children = append(all.children, n)
			all.childSet[n] = true
			parents[n] = []string{"all"}
		}
	}
	// Hosts only in all (or in no named group) are ungrouped, as in Ansible.
	inGroup := map[string]bool{}
	for _, n := range m.order {
		if n == "all" {
			continue
		}
		for _, h := range m.groups[n].hosts {
			inGroup[h] = true
		}
	}
	ung := m.groups["ungrouped"]
	for _, h := range m.hostOrder {
		if !inGroup[h] {
			ung.hosts = append(ung.hosts, h)
			ung.hostSet[h] = true
		}
	}
	all.hosts, all.hostSet = nil, map[string]bool{}

	depth := map[string]int{}
	var depthOf func(n string) int
	depthOf = func(n string) int {
		if d, ok := depth[n]; ok {
			return d
		}
		d := 0
		for _, p := range parents[n] {
			d = max(d, depthOf(p)+1)
		}
		depth[n] = d
		return d
	}

	// Each host's groups: those that list it and all their ancestors.
	hostGroups := map[string]map[string]bool{}
	var addAncestors func(set map[string]bool, n string)
	addAncestors = func(set map[string]bool, n string) {
		if set[n] {
			return
		}
		set[n] = true
		for _, p := range parents[n] {
			addAncestors(set, p)
		}
	}
	for _, n := range m.order {
		for _, h := range m.groups[n].hosts {
			if hostGroups[h] == nil {
				hostGroups[h] = map[string]bool{}
			}
			addAncestors(hostGroups[h], n)
		}
	}

	inv := &Inventory{Origin: origin, Groups: map[string][]string{}, Hosts: map[string]string{}}
	for _, h := range m.hostOrder {
		var gs []string
		for n := range hostGroups[h] {
			gs = append(gs, n)
		}
		sort.Slice(gs, func(i, j int) bool {
			if depthOf(gs[i]) != depthOf(gs[j]) {
				return depthOf(gs[i]) < depthOf(gs[j])
			}
			return gs[i] < gs[j]
		})
		vars := map[string]string{}
		for _, n := range gs {
			for k, v := range m.groups[n].vars {
				vars[k] = v
			}
		}
		for k, v := range m.hostVars[h] {
			vars[k] = v
		}
		t, err := hostTarget(h, vars)
		if err != nil {
			return nil, err
		}
		inv.Hosts[h] = t
	}

	// A group's targets: its own hosts, then its children's, depth first.
	memo := map[string][]string{}
	var members func(n string) []string
	members = func(n string) []string {
		if l, ok := memo[n]; ok {
			return l
		}
		var set orderedSet
		g := m.groups[n]
		own := make([]string, 0, len(g.hosts))
		for _, h := range g.hosts {
			own = append(own, inv.Hosts[h])
		}
		set.union(own, 1<<62, "")
		for _, c := range g.children {
			set.union(members(c), 1<<62, "")
		}
		memo[n] = set.list
		return set.list
	}
	for _, n := range m.order {
		inv.Groups[n] = members(n)
	}
	return inv, nil
}

func indexOf(list []string, s string) int {
	for i, e := range list {
		if e == s {
			return i
		}
	}
	return 0
}

// hostTarget is the [USER@]ADDRESS[:PORT] of an inventory host.
func hostTarget(name string, vars map[string]string) (string, error) {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := strings.TrimSpace(vars[k]); v != "" {
				return v
			}
		}
		return ""
	}
	addr := first("tether_host", "ansible_host", "ansible_ssh_host")
	if addr == "" {
		addr = name
	}
	user := first("tether_user", "ansible_user", "ansible_ssh_user")
	port := first("tether_port", "ansible_port", "ansible_ssh_port")
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if addr == "" || strings.ContainsFunc(addr, func(r rune) bool {
		// Unicode spaces too: an expression trims them (U+2009, found by
		// FuzzInventory), so such a host could never be named.
		return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune("[]@/,!&#\"'\\", r)
	}) {
		return "", fmt.Errorf("host %q: address %q is not a host name or IP address", name, addr)
	}
	if user != "" && strings.ContainsFunc(user, func(r rune) bool {
		return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune("[]@/,!&:#\"'\\", r)
	}) {
		return "", fmt.Errorf("host %q: user %q contains a character that cannot be in a login name", name, user)
	}
	var b strings.Builder
	if user != "" {
		b.WriteString(user + "@")
	}
	if strings.Contains(addr, ":") {
		b.WriteString("[" + addr + "]")
	} else {
		b.WriteString(addr)
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || !allDigits(port) {
			return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", name, port)
		}
		b.WriteString(":" + strconv.Itoa(p))
	}
	return b.String(), nil
}

// splitHostPort parses an inventory host pattern: "name", "name:port",
// "[v6]", "[v6]:port" or a bare IPv6 address.
func splitHostPort(p string) (host, port string, err error) {
	if strings.HasPrefix(p, "[") {
		end := strings.IndexByte(p, ']')
		if end > 0 && strings.Count(p[1:end], ":") >= 2 {
			host, rest := p[1:end], p[end+1:]
			if rest == "" {
				return host, "", nil
			}
			if strings.HasPrefix(rest, ":") && allDigits(rest[1:]) {
				return host, rest[1:], nil
			}
			return "", "", fmt.Errorf("host %q: expected :PORT after ']'", p)
		}
	}
	if !strings.Contains(p, "[") && strings.Count(p, ":") >= 2 {
		return p, "", nil // a bare IPv6 address
	}
	if i := strings.LastIndexByte(p, ':'); i >= 0 && !strings.Contains(p[i:], "]") {
		if !allDigits(p[i+1:]) {
			return "", "", fmt.Errorf("host %q: %q after ':' is not a port number", p, p[i+1:])
		}
		return p[:i], p[i+1:], nil
	}
	return p, "", nil
}

// expandAnsibleRange expands Ansible's host ranges: www[01:50].example.com,
// db-[a:f], n[1:10:2], several in one name.
func expandAnsibleRange(p string, max int) ([]string, error) {
	open := strings.IndexByte(p, '[')
	if open < 0 {
		if strings.IndexByte(p, ']') >= 0 {
			return nil, fmt.Errorf("host %q: ']' without a '['", p)
		}
		return []string{p}, nil
	}
	end := strings.IndexByte(p[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("host %q: '[' without a closing ']'", p)
	}
	end += open
	parts := strings.Split(p[open+1:end], ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("host %q: a range is [BEGIN:END] or [BEGIN:END:STEP]", p)
	}
	beg, last := parts[0], parts[1]
	step := 1
	if len(parts) == 3 {
		s, err := strconv.Atoi(parts[2])
		if err != nil || s < 1 || s > max {
			return nil, fmt.Errorf("host %q: step %q is not a positive number", p, parts[2])
		}
		step = s
	}
	if beg == "" {
		beg = "0"
	}
	if last == "" {
		return nil, fmt.Errorf("host %q: the range has no end", p)
	}
	var seq []string
	switch {
	case allDigits(beg) && allDigits(last):
		if len(beg) > maxDigits || len(last) > maxDigits {
			return nil, fmt.Errorf("host %q: range bound has more than %d digits", p, maxDigits)
		}
		width := 0
		if padded(beg) {
			width = len(beg)
			if len(last) != width {
				return nil, fmt.Errorf("host %q: write both ends of a padded range with %d digits", p, width)
			}
		}
		lo, _ := strconv.Atoi(beg)
		hi, _ := strconv.Atoi(last)
		if lo > hi {
			return nil, fmt.Errorf("host %q: the range goes backwards", p)
		}
		if (hi-lo)/step+1 > max {
			return nil, fmt.Errorf("host %q: expands to more than %d hosts (see docs/targets.md, \"Caps\")", p, max)
		}
		for v := lo; v <= hi; v += step {
			seq = append(seq, string(appendPadded(nil, uint64(v), width)))
		}
	case len(beg) == 1 && len(last) == 1 && isLetter(beg[0]) && isLetter(last[0]):
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" // Python's ascii_letters order
		lo, hi := strings.IndexByte(letters, beg[0]), strings.IndexByte(letters, last[0])
		if lo > hi {
			return nil, fmt.Errorf("host %q: the range goes backwards", p)
		}
		for i := lo; i <= hi; i += step {
			seq = append(seq, letters[i:i+1])
		}
	default:
		return nil, fmt.Errorf("host %q: range [%s] is neither numbers nor single letters", p, p[open+1:end])
	}
	rest, err := expandAnsibleRange(p[end+1:], max)
	if err != nil {
		return nil, err
	}
	if len(seq)*len(rest) > max {
		return nil, fmt.Errorf("host %q: expands to more than %d hosts (see docs/targets.md, \"Caps\")", p, max)
	}
	out := make([]string, 0, len(seq)*len(rest))
	for _, s := range seq {
		for _, r := range rest {
			out = append(out, p[:open]+s+r)
		}
	}
	return out, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// addHostPattern adds the hosts a pattern names, in group, with vars.
func (m *invModel) addHostPattern(group, pattern string, vars map[string]string) error {
	host, port, err := splitHostPort(pattern)
	if err != nil {
		return err
	}
	names, err := expandAnsibleRange(host, DefaultMax)
	if err != nil {
		return err
	}
	if port != "" {
		v := make(map[string]string, len(vars)+1)
		for k, x := range vars {
			v[k] = x
		}
		if _, ok := v["ansible_port"]; !ok {
			v["ansible_port"] = port
		}
		vars = v
	}
	for _, n := range names {
		if err := m.addHost(group, n, vars); err != nil {
			return err
		}
	}
	return nil
}
