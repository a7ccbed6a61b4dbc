// Package remoting is implicit remoting's client side without the network:
// the import manifest (~/.config/tether/imports.json), the proxy files that
// tether import writes, and the checks that hold what a host says about a
// module to the module rules before any of it becomes a file name. The cli
// package dials the host and runs the commands; this package decides what
// is written where.
package remoting

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/atomicfile"
	"github.com/tether-sh/tether/internal/modules"
)

// Entry is one proxy in the manifest.
type Entry struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Host       string    `json:"host"` // full address, with the login name
	Module     string    `json:"module"`
	Version    string    `json:"version"`
	Command    string    `json:"command"`
	Prefix     string    `json:"prefix,omitempty"`
	Identity   string    `json:"identity,omitempty"`
	KnownHosts string    `json:"known_hosts,omitempty"`
	Imported   time.Time `json:"imported"`
}

// Origin says where a proxy comes from, for clashes and listings.
func (e Entry) Origin() string {
	return fmt.Sprintf("%s of module %s %s on %s", e.Command, e.Module, e.Version, e.Host)
}

// SameSource reports whether e and o run the same command of the same
// module version on the same host.
func (e Entry) SameSource(o Entry) bool {
	return e.Host == o.Host && e.Module == o.Module && e.Version == o.Version && e.Command == o.Command
}

// Manifest is the import manifest, flock'd (Path+".lock") and written
// atomically like the session registry.
type Manifest struct {
	Path string
}

// File is the manifest's content.
type File struct {
	Imports []Entry `json:"imports"`
}

// Locked runs fn on the manifest's content under an exclusive lock, and
// writes the result back (sorted by name, then path) when fn says it
// changed it and returns no error.
func (m *Manifest) Locked(fn func(*File) (changed bool, err error)) error {
	if err := os.MkdirAll(filepath.Dir(m.Path), 0o700); err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	lf, err := os.OpenFile(m.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("imports: lock: %w", err)
	}
	var f File
	b, err := os.ReadFile(m.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("imports: %w", err)
	default:
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s is damaged (%v); move it away to start a new one", m.Path, err)
		}
	}
	changed, err := fn(&f)
	if err != nil || !changed {
		return err
	}
	sort.Slice(f.Imports, func(i, j int) bool {
		if f.Imports[i].Name != f.Imports[j].Name {
			return f.Imports[i].Name < f.Imports[j].Name
		}
		return f.Imports[i].Path < f.Imports[j].Path
	})
	out, _ := json.MarshalIndent(f, "", "  ")
	return atomicfile.WriteFile(m.Path, append(out, '\n'), 0o600)
}

// Entries is the manifest's list of proxies.
func (m *Manifest) Entries() ([]Entry, error) {
	var out []Entry
	err := m.Locked(func(f *File) (bool, error) {
		out = f.Imports
		return false, nil
	})
	return out, err
}

// Lookup is the manifest's entry for the proxy at path, checked again
// against the module rules (the manifest is only as good as its writer).
func (m *Manifest) Lookup(path string) (Entry, error) {
	entries, err := m.Entries()
	if err != nil {
		return Entry{}, err
	}
	for _, e := range entries {
		if e.Path != path {
			continue
		}
		if !modules.ValidModuleName(e.Module) || !modules.ValidCommandName(e.Command) {
			return e, fmt.Errorf("%s: the entry for %s names the module %q and command %q, which break the module rules; import it again", m.Path, path, e.Module, e.Command)
		}
		return e, nil
	}
	return Entry{}, fmt.Errorf("%s is not in %s any more; import it again (tether import TARGET MODULE) or delete it", path, m.Path)
}

// Install writes a proxy (calling exe) for each of made and records them in
// the manifest, all under its lock. A name already taken by a proxy of
// another source, or by a file tether did not make, is refused for all of
// made unless force.
func (m *Manifest) Install(exe string, made []Entry, force bool) error {
	return m.Locked(func(f *File) (bool, error) {
		var clashes []string // one line each: the error lists them one per line
		for _, e := range made {
			i := slices.IndexFunc(f.Imports, func(o Entry) bool { return o.Path == e.Path })
			switch {
			case i >= 0 && !f.Imports[i].SameSource(e):
				clashes = append(clashes, fmt.Sprintf("%s is already imported: %s", e.Path, f.Imports[i].Origin()))
			case i < 0 && fileExists(e.Path):
				clashes = append(clashes, fmt.Sprintf("%s exists and was not made by tether import", e.Path))
			}
		}
		if len(clashes) > 0 && !force {
			return false, fmt.Errorf("nothing imported, %s taken:\n  %s\nuse --force to replace, or --prefix to choose other names",
				Plural(len(clashes), "name is", "names are"), strings.Join(clashes, "\n  "))
		}
		for _, e := range made {
			if err := atomicfile.WriteFile(e.Path, []byte(ProxyScript(exe, m.Path, e)), 0o755); err != nil {
				return true, fmt.Errorf("write proxy: %w", err)
			}
			f.Imports = slices.DeleteFunc(f.Imports, func(o Entry) bool { return o.Path == e.Path })
			f.Imports = append(f.Imports, e)
		}
		return true, nil
	})
}

// Remove deletes the proxies named (by name or path) in names, or, when
// host is set, every proxy of module on host (with prefix, when byPrefix),
// and drops them from the manifest. A file that is no longer a proxy is
// left on disk. It returns the entries removed.
func (m *Manifest) Remove(names []string, host, module, prefix string, byPrefix bool) ([]Entry, error) {
	var removed []Entry
	err := m.Locked(func(f *File) (bool, error) {
		keep := f.Imports[:0]
		for _, e := range f.Imports {
			match := slices.Contains(names, e.Name) || slices.Contains(names, e.Path)
			if host != "" && e.Host == host && e.Module == module && (!byPrefix || e.Prefix == prefix) {
				match = true
			}
			if !match {
				keep = append(keep, e)
				continue
			}
			if IsProxy(e.Path) {
				if err := os.Remove(e.Path); err != nil {
					return false, err
				}
			}
			removed = append(removed, e)
		}
		f.Imports = keep
		return len(removed) > 0, nil
	})
	return removed, err
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
