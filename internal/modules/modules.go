// Package modules is implicit remoting's host side: it scans a module path
// (directories of command modules), validates each module, reads command
// help, and builds the shell command that runs one command of a module with
// an exact argument list.
//
// A module is a directory NAME/ holding
//
//	NAME/module.toml     name, version, description
//	NAME/bin/CMD         the commands: executables in any language
//	NAME/functions.sh    optional: its top-level shell functions are commands too
//	NAME/help/CMD.txt    the help text of CMD
//
// Functions whose names start with '_' are helpers, not commands. A module
// that breaks a rule is still listed, with the file at fault and why, so that
// `tether module list` shows it instead of hiding it.
package modules

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/tether-sh/tether/internal/shquote"
	"mvdan.cc/sh/v3/syntax"
)

// MaxHelp bounds the help text served for one command.
const MaxHelp = 256 << 10

// maxManifest bounds module.toml.
const maxManifest = 64 << 10

// maxFunctions bounds functions.sh (it is parsed to find the functions).
const maxFunctions = 4 << 20

// The name rules are compiled on first use, not at start-up: every tether
// process links this package, and most never check a module name.
var (
	validModule  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })
	validCommand = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`) })
)

// ValidCommandName reports whether name can be a command of a module (and the
// file name of a proxy).
func ValidCommandName(name string) bool { return validCommand().MatchString(name) }

// ValidModuleName reports whether name can be a module's name. Clients check
// what a host sends them with it too: a host is not trusted to keep its rules.
func ValidModuleName(name string) bool { return validModule().MatchString(name) }

// ValidVersion reports whether v can be a module's version: one word of
// 1-64 printable characters (no spaces, no control characters).
func ValidVersion(v string) bool {
	if v == "" || len(v) > 64 || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// Dir is one directory of the module path.
type Dir struct {
	Path string
	// Owner, when >= 0, is the uid that must own every file and directory
	// read below Path. An agent running as root reads a user's own module
	// directory with this set, so that a symlink cannot make it reveal a
	// file the user could not read.
	Owner int
}

// Manifest is module.toml.
type Manifest struct {
	Name        string `toml:"name"`
	Version     string `toml:"version"`
	Description string `toml:"description"`
}

// ParseManifest parses and checks module.toml.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > maxManifest {
		return m, fmt.Errorf("%d bytes is larger than the %d allowed", len(b), maxManifest)
	}
	if !utf8.Valid(b) {
		return m, errors.New("not UTF-8 text")
	}
	md, err := toml.Decode(string(b), &m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return m, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return m, err
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = k.String()
		}
		return m, fmt.Errorf("unknown key %s (known: name, version, description)", strings.Join(keys, ", "))
	}
	switch {
	case m.Name == "":
		return m, errors.New(`no name = "..."`)
	case !validModule().MatchString(m.Name):
		return m, fmt.Errorf("bad name %q: use 1-64 letters, digits, '.', '_' or '-'", m.Name)
	case m.Version == "":
		return m, errors.New(`no version = "..."`)
	case !ValidVersion(m.Version):
		return m, fmt.Errorf("bad version %q: one word of at most 64 printable characters", m.Version)
	case len(m.Description) > 1024:
		return m, errors.New("description is longer than 1024 bytes")
	}
	return m, nil
}

// Command is one command of a module.
type Command struct {
	Name string
	Func bool // a function of functions.sh, not bin/NAME
}

// Module is one scanned module.
type Module struct {
	Name        string
	Version     string
	Description string
	Dir         string // the module's directory
	Commands    []Command
	Problems    []string // "FILE: reason"; a module with problems is not usable
	owner       int
	functions   bool // it has a functions.sh (Script sources it)
}

// OK reports whether the module is usable.
func (m *Module) OK() bool { return len(m.Problems) == 0 }

// Err describes the module's problems, or is nil.
func (m *Module) Err() error {
	if m.OK() {
		return nil
	}
	return errors.New(strings.Join(m.Problems, "; "))
}

// CommandNames lists the module's command names, sorted.
func (m *Module) CommandNames() []string {
	out := make([]string, len(m.Commands))
	for i, c := range m.Commands {
		out[i] = c.Name
	}
	return out
}

// Lookup finds a command by name.
func (m *Module) Lookup(name string) (Command, bool) {
	for _, c := range m.Commands {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

func (m *Module) problem(file, format string, args ...any) {
	m.Problems = append(m.Problems, file+": "+fmt.Sprintf(format, args...))
}

// Scan lists the modules of a module path in order. A directory of the path
// that does not exist is skipped; one that cannot be read is reported as a
// module with no name. A module whose name was already found earlier in the
// path is reported as shadowed: the first one is the one that runs.
func Scan(path []Dir) []Module {
	var out []Module
	seen := map[string]string{}
	for _, d := range path {
		entries, err := readDir(d.Path, d.Owner)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			out = append(out, Module{Dir: d.Path, Problems: []string{d.Path + ": " + errText(err)}})
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			m := scanModule(filepath.Join(d.Path, name), name, d.Owner)
			if m == nil {
				continue
			}
			if first, ok := seen[name]; ok && m.OK() {
				m.problem(m.Dir, "shadowed by %s, which comes first in the module path; this one is not used", first)
			} else if m.OK() {
				seen[name] = m.Dir
			}
			out = append(out, *m)
		}
	}
	return out
}

// Find returns the first usable module called name, or the first broken
// one when none is usable, or nil.
func Find(mods []Module, name string) *Module {
	var broken *Module
	for i := range mods {
		m := &mods[i]
		if m.Name != name && filepath.Base(m.Dir) != name {
			continue
		}
		if m.OK() {
			return m
		}
		if broken == nil {
			broken = m
		}
	}
	return broken
}

// scanModule reads one module directory; nil when dir is not a directory.
func scanModule(dir, name string, owner int) *Module {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	m := &Module{Name: name, Dir: dir, owner: owner}
	if !validModule().MatchString(name) {
		m.problem(dir, "bad module directory name: use 1-64 letters, digits, '.', '_' or '-'")
	}
	mf := filepath.Join(dir, "module.toml")
	b, err := readFile(mf, owner, maxManifest+1)
	if err != nil {
		m.problem(mf, "%s", errText(err))
	} else if man, err := ParseManifest(b); err != nil {
		m.problem(mf, "%v", err)
	} else {
		m.Version, m.Description = man.Version, man.Description
		if man.Name != name {
			m.problem(mf, "name %q does not match the directory name %q", man.Name, name)
		}
	}

	bin := filepath.Join(dir, "bin")
	names := map[string]bool{}
	entries, err := readDir(bin, owner)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.problem(bin, "%s", errText(err))
	}
	for _, e := range entries {
		cn := e.Name()
		if strings.HasPrefix(cn, ".") {
			continue
		}
		p := filepath.Join(bin, cn)
		if !validCommand().MatchString(cn) {
			m.problem(p, "bad command name: use letters, digits, '.', '_', '+' or '-', starting with a letter or digit")
			continue
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			m.problem(p, "%s", errText(err))
			continue
		case fi.IsDir():
			m.problem(p, "is a directory, not a command")
			continue
		case fi.Mode()&0o111 == 0:
			m.problem(p, "not executable (chmod +x it)")
			continue
		}
		names[cn] = true
		m.Commands = append(m.Commands, Command{Name: cn})
	}

	fsh := filepath.Join(dir, "functions.sh")
	b, err = readFile(fsh, owner, maxFunctions+1)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		m.problem(fsh, "%s", errText(err))
	default:
		m.functions = true
		funcs, err := ParseFunctions(b)
		if err != nil {
			m.problem(fsh, "%v", err)
		}
		for _, f := range funcs {
			if strings.HasPrefix(f, "_") {
				continue
			}
			if !validCommand().MatchString(f) {
				m.problem(fsh, "function %q cannot be a command: use letters, digits, '.', '_', '+' or '-' (start helpers with '_')", f)
				continue
			}
			if names[f] {
				m.problem(fsh, "function %s has the name of bin/%s; rename one of them", f, f)
				continue
			}
			names[f] = true
			m.Commands = append(m.Commands, Command{Name: f, Func: true})
		}
	}
	if len(m.Commands) == 0 && m.OK() {
		m.problem(dir, "no commands: put executables in bin/ or functions in functions.sh")
	}
	sort.Slice(m.Commands, func(i, j int) bool { return m.Commands[i].Name < m.Commands[j].Name })
	return m
}

// ParseFunctions parses a functions.sh and returns the names of the
// functions it defines at top level, in order.
func ParseFunctions(b []byte) ([]string, error) {
	if len(b) > maxFunctions {
		return nil, fmt.Errorf("larger than %d bytes", maxFunctions)
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(bytes.NewReader(b), "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, st := range f.Stmts {
		if fd, ok := st.Cmd.(*syntax.FuncDecl); ok && fd.Name != nil {
			if !slices.Contains(out, fd.Name.Value) {
				out = append(out, fd.Name.Value)
			}
		}
	}
	return out, nil
}

// ErrNoHelp is returned by Help when a command has no help file.
var ErrNoHelp = errors.New("no help file")

// Help returns the help text of cmd, from help/CMD.txt.
func (m *Module) Help(cmd string) (string, error) {
	if _, ok := m.Lookup(cmd); !ok {
		return "", fmt.Errorf("module %s has no command %s", m.Name, cmd)
	}
	p := filepath.Join(m.Dir, "help", cmd+".txt")
	b, err := readFile(p, m.owner, MaxHelp+1)
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoHelp
	}
	if err != nil {
		return "", fmt.Errorf("%s: %s", p, errText(err))
	}
	if len(b) > MaxHelp {
		b = append(b[:MaxHelp], "\n[help truncated]\n"...)
	}
	return string(b), nil
}

// Script builds the shell command that runs argv[0], a command of m, with
// the exact arguments argv[1:]. It runs in a subshell, so that the
// persistent session's own directory, PATH and functions stay as they were:
// in the module's directory, with functions.sh loaded and bin/ first in
// PATH. Every argument is quoted (for the session's shell: shquote.Bash), so
// nothing is parsed again.
func (m *Module) Script(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("no command to run")
	}
	c, ok := m.Lookup(argv[0])
	if !ok {
		return "", fmt.Errorf("module %s has no command %s", m.Name, argv[0])
	}
	dir := shquote.Bash(m.Dir)
	var b strings.Builder
	b.WriteString("( cd " + dir + " || exit 126; ")
	if hasFunctions(m) {
		b.WriteString(". ./functions.sh || exit 126; ")
	}
	b.WriteString("PATH=" + shquote.Bash(filepath.Join(m.Dir, "bin")) + `":$PATH" `)
	if c.Func {
		// Quoted, so that no alias of the session gets in the way.
		b.WriteString("'" + c.Name + "'")
	} else {
		// By path, so that no function or alias of the session does.
		b.WriteString(shquote.Bash(filepath.Join(m.Dir, "bin", c.Name)))
	}
	for _, a := range argv[1:] {
		b.WriteByte(' ')
		b.WriteString(shquote.Bash(a))
	}
	b.WriteString(" )")
	return b.String(), nil
}

// hasFunctions says whether Script must source functions.sh; it is known
// from the scan, so that building a script does no file work.
func hasFunctions(m *Module) bool {
	for _, c := range m.Commands {
		if c.Func {
			return true
		}
	}
	return m.functions
}

// ArgvBase64 marks (in Request.Key of a module run) that every element of
// Request.Argv is standard base64: JSON cannot carry bytes that are not
// UTF-8, and arguments may hold any bytes.
const ArgvBase64 = "argv:base64"

// EncodeArgv prepares argv for the wire: unchanged when it is all UTF-8,
// otherwise every element base64-encoded and key set to ArgvBase64.
func EncodeArgv(argv []string) (out []string, key string) {
	ok := true
	for _, a := range argv {
		if !utf8.ValidString(a) {
			ok = false
			break
		}
	}
	if ok {
		return argv, ""
	}
	out = make([]string, len(argv))
	for i, a := range argv {
		out[i] = base64.StdEncoding.EncodeToString([]byte(a))
	}
	return out, ArgvBase64
}

// DecodeArgv undoes EncodeArgv.
func DecodeArgv(argv []string, key string) ([]string, error) {
	switch key {
	case "":
		return argv, nil
	case ArgvBase64:
	default:
		return nil, fmt.Errorf("unknown argument encoding %q", key)
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		b, err := base64.StdEncoding.DecodeString(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %v", i, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// ProxyName is the local name of command cmd imported with prefix, placed
// as PowerShell's Import-PSSession -Prefix does: before the noun of a
// Verb-Noun name (get-route + ex2016 = get-ex2016route), in front of any
// other name (ping + ex2016 = ex2016ping).
func ProxyName(cmd, prefix string) string {
	if prefix == "" {
		return cmd
	}
	if i := strings.IndexByte(cmd, '-'); i > 0 && i < len(cmd)-1 {
		return cmd[:i+1] + prefix + cmd[i+1:]
	}
	return prefix + cmd
}

// errText is an error without the path that the caller already names.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// open opens path and, when owner >= 0, refuses it unless owner owns it.
// The check is on the opened file, so a swapped symlink cannot dodge it.
// The open never blocks: a FIFO (or a device) planted in a module opens at
// once and is then refused as not a regular file.
func open(path string, owner int, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, err
	}
	if owner >= 0 {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != owner {
			f.Close()
			return nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("not owned by uid %d, whose module directory this is; not read", owner)}
		}
	}
	return f, nil
}

func readFile(path string, owner int, limit int64) ([]byte, error) {
	f, err := open(path, owner, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

func readDir(path string, owner int) ([]os.DirEntry, error) {
	f, err := open(path, owner, syscall.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return entries, nil
}
