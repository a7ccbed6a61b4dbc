package targets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parseInventoryINI reads Ansible's INI inventory: host lines with
// key=value variables, [group], [group:vars] and [group:children].
func parseInventoryINI(data []byte) (*invModel, error) {
	m := newModel()
	section, kind := "ungrouped", "hosts"
	for n, line := range strings.Split(string(data), "\n") {
		lineNo := n + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if name, k, ok := iniSection(line); ok {
			kind = "hosts"
			if k != "" {
				kind = k
			}
			switch kind {
			case "hosts", "vars", "children":
			default:
				return nil, fmt.Errorf("line %d: section [%s:%s]: only :vars and :children may follow a group name", lineNo, name, k)
			}
			if _, err := m.group(name); err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			section = name
			continue
		}
		fields, err := shellFields(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if len(fields) == 0 {
			continue // only a comment
		}
		switch kind {
		case "children":
			if len(fields) != 1 {
				return nil, fmt.Errorf("line %d: [%s:children] lists one group name a line", lineNo, section)
			}
			if err := m.addChild(section, fields[0]); err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
		case "vars":
			// "key=value" or "key = value"; the value is the rest of the line.
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: [%s:vars] lines are KEY=VALUE", lineNo, section)
			}
			m.groups[section].vars[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
		default:
			vars := map[string]string{}
			for _, f := range fields[1:] {
				k, v, ok := strings.Cut(f, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("line %d: %q: host variables are KEY=VALUE", lineNo, f)
				}
				vars[k] = v
			}
			if err := m.addHostPattern(section, fields[0], vars); err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
		}
	}
	return m, nil
}

// iniSection recognises a section header as Ansible does: [NAME] or
// [NAME:KIND], then only blanks or a comment. Any other line that starts
// with '[' is a host line ([2001:db8::5]:2200).
func iniSection(line string) (name, kind string, ok bool) {
	end := strings.IndexByte(line, ']')
	if line[0] != '[' || end < 0 {
		return "", "", false
	}
	if rest := strings.TrimSpace(line[end+1:]); rest != "" && rest[0] != '#' {
		return "", "", false
	}
	name, kind, _ = strings.Cut(line[1:end], ":")
	if name == "" || strings.ContainsAny(name, " \t") || strings.ContainsAny(kind, ":") {
		return "", "", false
	}
	for _, c := range kind {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", "", false
		}
	}
	return name, kind, true
}

// shellFields splits a host line as Ansible does (shlex with comments):
// words separated by blanks, quotes group, '#' outside quotes ends the line.
func shellFields(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '#':
			i = len(line)
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, line)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// maxYAMLNodes bounds the walk of a YAML inventory, aliases included, so
// that a file of nested aliases cannot make it take forever.
const maxYAMLNodes = 4 * DefaultMax

// parseInventoryYAML reads Ansible's YAML inventory: groups with hosts,
// vars and children, nested to any depth.
func parseInventoryYAML(data []byte) (*invModel, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	m := newModel()
	if doc.Kind == 0 {
		return m, nil // an empty file
	}
	w := &yamlWalker{m: m}
	root := w.deref(doc.Content[0])
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("a YAML inventory is a mapping of group names, like all: {hosts: ..., children: ...}")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if err := w.group(root.Content[i].Value, root.Content[i+1], 0); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type yamlWalker struct {
	m     *invModel
	nodes int
}

func (w *yamlWalker) deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (w *yamlWalker) count() error {
	w.nodes++
	if w.nodes > maxYAMLNodes {
		return fmt.Errorf("the YAML is too large once its aliases are expanded (more than %d entries)", maxYAMLNodes)
	}
	return nil
}

func (w *yamlWalker) group(name string, n *yaml.Node, depth int) error {
	if err := w.count(); err != nil {
		return err
	}
	if depth > 100 {
		return fmt.Errorf("group %q: children nested more than 100 deep", name)
	}
	if _, err := w.m.group(name); err != nil {
		return err
	}
	n = w.deref(n)
	if n == nil || n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "") {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("group %q (line %d): expected hosts:, vars: or children:", name, n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, w.deref(n.Content[i+1])
		if isNull(val) {
			continue
		}
		switch key {
		case "hosts":
			if val.Kind != yaml.MappingNode {
				return fmt.Errorf("group %q (line %d): hosts: is a mapping of host names", name, val.Line)
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				if err := w.count(); err != nil {
					return err
				}
				vars, err := w.vars(val.Content[j+1], "host "+val.Content[j].Value)
				if err != nil {
					return err
				}
				if err := w.m.addHostPattern(name, val.Content[j].Value, vars); err != nil {
					return err
				}
			}
		case "vars":
			vars, err := w.vars(val, "group "+name)
			if err != nil {
				return err
			}
			g := w.m.groups[name]
			for k, v := range vars {
				g.vars[k] = v
			}
		case "children":
			if val.Kind != yaml.MappingNode {
				return fmt.Errorf("group %q (line %d): children: is a mapping of group names", name, val.Line)
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				child := val.Content[j].Value
				if err := w.m.addChild(name, child); err != nil {
					return err
				}
				if err := w.group(child, val.Content[j+1], depth+1); err != nil {
					return err
				}
			}
		default:
			// Ansible warns and skips other keys; so do we, silently.
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// vars reads a mapping of variables; only scalar values are kept (Tether
// reads connection variables, which are scalars).
func (w *yamlWalker) vars(n *yaml.Node, what string) (map[string]string, error) {
	n = w.deref(n)
	out := map[string]string{}
	if isNull(n) || n.Kind == yaml.ScalarNode && n.Value == "" {
		return out, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s (line %d): variables are a mapping of names to values", what, n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := w.count(); err != nil {
			return nil, err
		}
		if v := w.deref(n.Content[i+1]); v != nil && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			out[n.Content[i].Value] = v.Value
		}
	}
	return out, nil
}

// parseInventoryJSON reads the JSON of `ansible-inventory --list` (and of
// dynamic inventory scripts): groups with hosts, children and vars, and
// _meta.hostvars.
func parseInventoryJSON(data []byte) (*invModel, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("inventory JSON: %w", err)
	}
	m := newModel()
	hostVars := map[string]map[string]any{}
	if meta, ok := top["_meta"]; ok {
		var mv struct {
			Hostvars map[string]map[string]any `json:"hostvars"`
		}
		if err := decodeNumber(meta, &mv); err != nil {
			return nil, fmt.Errorf("_meta: %w", err)
		}
		hostVars = mv.Hostvars
	}
	names := make([]string, 0, len(top))
	for n := range top {
		if n != "_meta" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		raw := top[name]
		var g struct {
			Hosts    []string       `json:"hosts"`
			Children []string       `json:"children"`
			Vars     map[string]any `json:"vars"`
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
			// The old dynamic-inventory form: a group is a list of hosts.
			if err := json.Unmarshal(raw, &g.Hosts); err != nil {
				return nil, fmt.Errorf("group %q: %w", name, err)
			}
		} else if err := decodeNumber(raw, &g); err != nil {
			return nil, fmt.Errorf("group %q: %w", name, err)
		}
		grp, err := m.group(name)
		if err != nil {
			return nil, err
		}
		for k, v := range g.Vars {
			if s, ok := scalarString(v); ok {
				grp.vars[k] = s
			}
		}
		for _, h := range g.Hosts {
			vars := map[string]string{}
			for k, v := range hostVars[h] {
				if s, ok := scalarString(v); ok {
					vars[k] = s
				}
			}
			if err := m.addHost(name, h, vars); err != nil {
				return nil, err
			}
		}
		for _, c := range g.Children {
			if err := m.addChild(name, c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func decodeNumber(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return fmt.Sprint(v), true
	}
	return "", false
}
