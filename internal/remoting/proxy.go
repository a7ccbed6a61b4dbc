package remoting

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/shquote"
	"github.com/tether-sh/tether/internal/wire"
)

// ProxyMarker is in every proxy file, so that tether never overwrites or
// deletes a file it did not make.
const ProxyMarker = "# tether proxy:"

// MaxCommands bounds the proxies one import makes: a host cannot fill the
// client's disk with them.
const MaxCommands = 1024

var validPrefix = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._+]{0,32}$`) })

// CheckPrefix checks an import --prefix.
func CheckPrefix(prefix string) error {
	if !validPrefix().MatchString(prefix) {
		return fmt.Errorf("bad --prefix %q: use up to 32 letters, digits, '.', '_' or '+'", prefix)
	}
	return nil
}

// CheckModuleInfo holds what a host says about a module to the host's own
// rules (internal/modules): the names become file names and the text is
// shown on the terminal, and the host is not trusted to keep its rules.
func CheckModuleInfo(mi wire.ModuleInfo) error {
	if !modules.ValidModuleName(mi.Name) {
		return fmt.Errorf("the host sent the module name %q, which breaks the module rules (1-64 letters, digits, '.', '_' or '-')", mi.Name)
	}
	if !modules.ValidVersion(mi.Version) {
		return fmt.Errorf("the host sent the version %q for module %s, which breaks the module rules (one word of 1-64 printable characters)", mi.Version, mi.Name)
	}
	if len(mi.Commands) > MaxCommands {
		return fmt.Errorf("module %s has %d commands, more than the %d one import makes", mi.Name, len(mi.Commands), MaxCommands)
	}
	seen := map[string]bool{}
	for _, c := range mi.Commands {
		if !modules.ValidCommandName(c) {
			return fmt.Errorf("the host sent the command name %q in module %s, which cannot be a command (1-128 letters, digits, '.', '_', '+' or '-', not starting with a punctuation mark)", c, mi.Name)
		}
		if seen[c] {
			return fmt.Errorf("the host sent the command %s of module %s twice", c, mi.Name)
		}
		seen[c] = true
	}
	return nil
}

// Source is what an import records besides the module: where the proxies
// go and how they reach the host.
type Source struct {
	Host       string // full address, with the login name
	Prefix     string
	Dir        string // absolute
	Identity   string // absolute, or ""
	KnownHosts string // absolute, or ""
}

// Plan makes the entries for the commands of mi (checked with
// CheckModuleInfo first), without touching the disk.
func Plan(mi wire.ModuleInfo, src Source, now time.Time) ([]Entry, error) {
	if err := CheckModuleInfo(mi); err != nil {
		return nil, err
	}
	var made []Entry
	for _, c := range mi.Commands {
		name := modules.ProxyName(c, src.Prefix)
		if !modules.ValidCommandName(name) {
			return nil, fmt.Errorf("%s with --prefix %q gives the name %q, which cannot be a command", c, src.Prefix, name)
		}
		made = append(made, Entry{
			Name: name, Path: filepath.Join(src.Dir, name), Host: src.Host, Module: mi.Name, Version: mi.Version,
			Command: c, Prefix: src.Prefix, Identity: src.Identity, KnownHosts: src.KnownHosts, Imported: now.UTC(),
		})
	}
	return made, nil
}

// ProxyScript is the file of a proxy. It holds nothing the host sent but
// the proxy's own name (checked by Plan); where the command comes from is
// in the manifest, which the proxy reads as data when it runs.
func ProxyScript(exe, manifest string, e Entry) string {
	var b strings.Builder
	b.WriteString(proxyShebang(exe) + "\n")
	fmt.Fprintf(&b, "%s %s (made by tether import; tether import --list shows where it comes from)\n", ProxyMarker, e.Name)
	fmt.Fprintf(&b, "# help: %s --tether-help; remove: tether import --remove %s\n", e.Name, e.Name)
	fmt.Fprintf(&b, "exec %s proxy --imports %s --path %s -- \"$@\"\n", shquote.Quote(exe), shquote.Quote(manifest), shquote.Quote(e.Path))
	return b.String()
}

// ScriptCommand is the tether subcommand a proxy's first line names: the
// kernel runs `EXE proxy-script PROXY ARGS...`, and tether reads the
// manifest and the proxy's key from the exec line, without starting sh
// (its start was a fifth of a proxy call, #18).
const ScriptCommand = "proxy-script"

// proxyShebang starts the tether binary exe directly where a #! line can
// name it (an absolute path without blanks, within the kernel's 127
// bytes); elsewhere sh runs the script's exec line.
func proxyShebang(exe string) string {
	l := "#!" + exe + " " + ScriptCommand
	if !filepath.IsAbs(exe) || strings.ContainsAny(exe, " \t\n\r\x00") || len(l) > 127 {
		return "#!/bin/sh"
	}
	return l
}

// IsProxy reports whether the file at p was made by tether import.
func IsProxy(p string) bool {
	b, err := os.ReadFile(p)
	return err == nil && len(b) < 64<<10 && strings.Contains(string(b), "\n"+ProxyMarker+" ")
}

// OldProxy reports whether the proxy file at p is of the first format,
// which named host, module and command in the script itself.
func OldProxy(p string) bool {
	b, err := os.ReadFile(p)
	return err == nil && len(b) < 64<<10 && strings.Contains(string(b), " proxy --host ")
}

// SafeText is s as it is when it is all printable, else quoted, so that
// text from a host cannot drive the terminal.
func SafeText(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// Plural is "1 command" or "2 commands".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// OnPath reports whether dir is one of the directories of the PATH list.
func OnPath(pathList, dir string) bool {
	for _, d := range filepath.SplitList(pathList) {
		if filepath.Clean(d) == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

// LookPath is the executable name that the PATH list would run.
func LookPath(pathList, name string) (string, error) {
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// ImplicitName is the session this client keeps on each host for implicit
// remoting.
func ImplicitName(clientID string) string {
	return "implicit-" + clientID[:min(8, len(clientID))]
}

var unsafeFileChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._@-]+`) })

// LockImplicit takes this client's lock (a file in dir) on its implicit
// session key, so that two proxies running at once (xargs -P) do not both
// use it: the session runs one command at a time. ok is false when another
// proxy holds it.
func LockImplicit(dir, key string) (unlock func(), ok bool) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}, true // no lock to be had: the host refuses a busy session anyway
	}
	f, err := os.OpenFile(filepath.Join(dir, unsafeFileChars().ReplaceAllString(key, "_")+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}, true
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}
