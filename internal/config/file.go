package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/tether-sh/tether/internal/atomicfile"
)

// LineError is an error about one line of a settings file. It wraps the
// *ValueError or *UnknownKeyError, if any.
type LineError struct {
	Line int // 1-based; 0 when unknown
	Err  error
}

func (e *LineError) Error() string {
	if e.Line <= 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// ParseFile parses a settings or policy file: flat TOML, `Key = value`, where
// the value is a string, integer or boolean. Names are matched
// case-insensitively and values validated as by [Validate]. It returns
// canonical name → normalized value. Any unknown key, bad value, duplicate,
// table or other TOML type is an error (the first one found, with its line).
func ParseFile(data []byte) (map[string]string, error) {
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &LineError{Line: pe.Position.Line, Err: errors.New(pe.Message)}
		}
		return nil, err
	}
	lines := topLevelKeyLines(data)
	out := make(map[string]string, len(raw))
	// md.Keys() is in file order, which makes the first error reported the
	// first one in the file.
	seen := make(map[string]bool)
	for _, mk := range md.Keys() {
		name := mk[0] // a table (or dotted key) is reported by its top-level name
		if seen[name] {
			continue
		}
		seen[name] = true
		line := lines[name]
		v := raw[name]
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case int64:
			s = strconv.FormatInt(v, 10)
		case bool:
			s = strconv.FormatBool(v)
		case float64:
			s = strconv.FormatFloat(v, 'g', -1, 64)
		case map[string]any:
			if line == 0 {
				line = lines["["]
			}
			return nil, &LineError{Line: line, Err: fmt.Errorf("%q is a table; settings files are flat: one Key = value per line", name)}
		default:
			k, ok := Lookup(name)
			if !ok {
				return nil, &LineError{Line: line, Err: unknownKey(name)}
			}
			return nil, &LineError{Line: line, Err: fmt.Errorf("%s: value must be a string, integer or boolean, not %s", k.Name, md.Type(name))}
		}
		canon, norm, err := Validate(name, s)
		if err != nil {
			var ue *UnknownKeyError
			if errors.As(err, &ue) {
				ue.Name = name
			}
			return nil, &LineError{Line: line, Err: err}
		}
		if _, dup := out[canon]; dup {
			return nil, &LineError{Line: line, Err: fmt.Errorf("%s is set twice (names are case-insensitive)", canon)}
		}
		out[canon] = norm
	}
	return out, nil
}

// topLevelKeyLines maps each bare or quoted key at the start of a line, before
// any table header, to the first line it appears on. It is only used to point
// at a line in error messages; the TOML decoder does the real parsing.
func topLevelKeyLines(data []byte) map[string]int {
	m := make(map[string]int)
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			if _, ok := m["["]; !ok {
				m["["] = i + 1
			}
			continue
		}
		eq := strings.IndexByte(l, '=')
		if eq <= 0 {
			continue
		}
		k := strings.TrimSpace(l[:eq])
		if dot := strings.IndexByte(k, '.'); dot > 0 && k[0] != '"' && k[0] != '\'' {
			if top := strings.TrimSpace(k[:dot]); m[top] == 0 {
				m[top] = i + 1 // dotted key: a.b = 1 defines table a
			}
		}
		if uq, err := strconv.Unquote(k); err == nil {
			k = uq
		} else if len(k) >= 2 && k[0] == '\'' && k[len(k)-1] == '\'' {
			k = k[1 : len(k)-1]
		}
		if _, ok := m[k]; !ok {
			m[k] = i + 1
		}
	}
	return m
}

// readFile reads and parses a settings file. A missing file is (nil, nil).
// Errors name the file.
func readFile(path string) (map[string]string, []byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err // *fs.PathError names the file
	}
	m, err := ParseFile(data)
	if err != nil {
		return nil, data, fmt.Errorf("%s: %w", path, err)
	}
	return m, data, nil
}

// FormatFile renders values (canonical name → normalized value) as a settings
// file, in the table's order, with each key's help as a comment.
func FormatFile(values map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("# Tether agent settings, written by the agent (tether config set/reset).\n")
	b.WriteString("# Keys missing here use their defaults; the policy file overrides this one.\n")
	for _, k := range keys {
		v, ok := values[k.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "\n# %s (default %s)\n", k.Help, k.Default)
		switch {
		case k.Kind == KindBool:
			fmt.Fprintf(&b, "%s = %s\n", k.Name, v)
		case k.Kind == KindInt && v != Unlimited:
			fmt.Fprintf(&b, "%s = %s\n", k.Name, v)
		default:
			fmt.Fprintf(&b, "%s = %s\n", k.Name, strconv.Quote(v))
		}
	}
	return b.Bytes()
}

// writeFileAtomic replaces path with data (mode 0600), creating its
// directory (0700) first; a crash leaves either the old or the new file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}
