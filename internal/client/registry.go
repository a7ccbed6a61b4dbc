package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tether-sh/tether/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Registry is the small local list of sessions this client created or
// connected to, so that `tether list` without a host works. A session's full
// address always works without it.
type Registry struct {
	Path string
}

// RegistryEntry is one remembered session.
type RegistryEntry struct {
	Address string    `json:"address"`
	Created time.Time `json:"created"`
}

type registryFile struct {
	Sessions []RegistryEntry `json:"sessions"`
}

// List returns the remembered sessions.
func (r *Registry) List() ([]RegistryEntry, error) {
	var out []RegistryEntry
	err := r.locked(func(f *registryFile) bool {
		out = append(out, f.Sessions...)
		return false
	})
	return out, err
}

// Add remembers addresses (idempotent: a file that already has them all is
// not written again).
func (r *Registry) Add(addrs ...string) error {
	return r.locked(func(f *registryFile) bool {
		changed := false
		for _, a := range addrs {
			found := false
			for _, e := range f.Sessions {
				if e.Address == a {
					found = true
				}
			}
			if !found {
				f.Sessions = append(f.Sessions, RegistryEntry{Address: a, Created: time.Now().UTC()})
				changed = true
			}
		}
		if changed {
			sort.Slice(f.Sessions, func(i, j int) bool { return f.Sessions[i].Address < f.Sessions[j].Address })
		}
		return changed
	})
}

// Remove forgets addresses.
func (r *Registry) Remove(addrs ...string) error {
	return r.locked(func(f *registryFile) bool {
		keep := f.Sessions[:0]
		for _, e := range f.Sessions {
			drop := false
			for _, a := range addrs {
				if e.Address == a {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, e)
			}
		}
		changed := len(keep) != len(f.Sessions)
		f.Sessions = keep
		return changed
	})
}

// RemoveFunc forgets the addresses drop matches and returns them.
func (r *Registry) RemoveFunc(drop func(addr string) bool) ([]string, error) {
	var gone []string
	err := r.locked(func(f *registryFile) bool {
		keep := f.Sessions[:0]
		for _, e := range f.Sessions {
			if drop(e.Address) {
				gone = append(gone, e.Address)
				continue
			}
			keep = append(keep, e)
		}
		f.Sessions = keep
		return len(gone) > 0
	})
	return gone, err
}

// locked runs fn on the file's content under an exclusive lock, and writes
// the result back atomically when fn says it changed it.
func (r *Registry) locked(fn func(*registryFile) bool) error {
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	lf, err := os.OpenFile(r.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("registry: lock: %w", err)
	}
	var f registryFile
	b, err := os.ReadFile(r.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("registry: %w", err)
	default:
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("registry %s is damaged (%v); move it away to start a new one", r.Path, err)
		}
	}
	if !fn(&f) {
		return nil
	}
	out, _ := json.MarshalIndent(f, "", "  ")
	// Still under the lock: readers see the old file or the new one.
	if err := atomicfile.WriteFile(r.Path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// ParseRegistry decodes a registry file (for fuzzing the parser).
func ParseRegistry(b []byte) ([]RegistryEntry, error) {
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return f.Sessions, nil
}
