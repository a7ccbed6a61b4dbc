package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"
)

// Source says where a setting's effective value comes from.
type Source string

// Sources of a value.
const (
	SourceDefault Source = "default"
	SourceLocal   Source = "local"
	SourcePolicy  Source = "policy"
)

// Entry is one setting as listed to an administrator.
type Entry struct {
	Key     string // canonical name
	Value   string // effective value, normalized
	Default string // built-in default, normalized
	Source  Source
	Locked  bool   // set by policy: Set and Reset refuse it
	SetBy   string // the file the value comes from (local or policy); "" for a default
	// LocalValue is the local override that policy hides, if any.
	LocalValue string
}

// ErrLocked is wrapped by the errors Set and Reset return for a key that the
// policy file sets.
var ErrLocked = errors.New("setting is locked by policy")

// LockedError is returned by Set and Reset for a policy-locked key.
type LockedError struct {
	Key    string // canonical name
	Policy string // policy file path
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s is set by policy %s", e.Key, e.Policy)
}

// Unwrap lets errors.Is(err, ErrLocked) match.
func (e *LockedError) Unwrap() error { return ErrLocked }

// StoreOptions configures OpenStore.
type StoreOptions struct {
	// LocalPath is the local settings file, written by Set and Reset.
	// "" keeps local changes in memory only (for tests and embedding).
	LocalPath string
	// PolicyPath is the policy file, read-only to the agent. "" means no
	// policy.
	PolicyPath string
	// Logger receives policy load and rejection messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// PollInterval is how often Watch checks the policy file and the local
	// file; 0 means 1s.
	PollInterval time.Duration
}

// Store holds a host's settings: defaults, the local file and the policy
// file, and the effective values they combine to. It is safe for concurrent
// use.
type Store struct {
	localPath  string
	policyPath string
	log        *slog.Logger
	poll       time.Duration

	reloadMu sync.Mutex // serializes ReloadPolicy and reloadLocal

	refreshMu sync.Mutex // serializes Refresh

	mu         sync.RWMutex
	local      map[string]string // canonical name → normalized value
	policy     map[string]string // nil when no policy is in force
	policySeen string            // fingerprint of the policy file last read, good or bad
	localSeen  string            // fingerprint of the local file last read or written
	eff        Settings

	subMu     sync.Mutex
	subs      map[int]func(Settings)
	nextSub   int
	notifying bool     // a goroutine is delivering to subscribers
	dirty     bool     // effective values may have changed since it started
	delivered Settings // last value delivered; owned by the notifying goroutine
}

// OpenStore loads the local settings file and the policy file. Missing files
// are fine (defaults apply). A local file that cannot be read or parsed is an
// error naming the file and line. A policy file that cannot be read or parsed
// is logged and the store runs without policy; Watch and ReloadPolicy pick it
// up once it is fixed.
func OpenStore(o StoreOptions) (*Store, error) {
	s := &Store{
		localPath:  o.LocalPath,
		policyPath: o.PolicyPath,
		log:        o.Logger,
		poll:       o.PollInterval,
		subs:       make(map[int]func(Settings)),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.poll <= 0 {
		s.poll = time.Second
	}
	if s.localPath != "" {
		m, data, err := readFile(s.localPath)
		if err != nil {
			return nil, fmt.Errorf("local settings: %w", err)
		}
		s.local = m
		s.localSeen = localFingerprint(data)
	}
	if s.local == nil {
		s.local = map[string]string{}
	}
	if s.policyPath != "" {
		fp, m, err := readPolicy(s.policyPath)
		s.policySeen = fp
		if err != nil {
			s.log.Error("policy file rejected; running without policy until it is fixed",
				"file", s.policyPath, "err", err)
		} else {
			s.policy = m
			if m != nil {
				s.log.Info("policy loaded", "file", s.policyPath, "settings", len(m))
			}
		}
	}
	s.eff = s.compute()
	s.delivered = s.eff
	return s, nil
}

// PolicyPath returns the policy file's path ("" if none).
func (s *Store) PolicyPath() string { return s.policyPath }

// LocalPath returns the local settings file's path ("" if in memory only).
func (s *Store) LocalPath() string { return s.localPath }

// Effective returns the values in force.
func (s *Store) Effective() Settings {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eff
}

// List returns every setting, in the table's order.
func (s *Store) List() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, len(keys))
	for i := range keys {
		out[i] = s.entryLocked(&keys[i])
	}
	return out
}

// Get returns one setting; the name is matched case-insensitively. An unknown
// name is an *UnknownKeyError.
func (s *Store) Get(key string) (Entry, error) {
	k, err := lookup(key)
	if err != nil {
		return Entry{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entryLocked(k), nil
}

// Set validates value, writes it to the local file and applies it at once.
// A key the policy sets is refused with a *LockedError (wrapping ErrLocked).
// The local file is re-read first, so edits made to it by hand since are
// kept; if it no longer parses, Set refuses to overwrite it.
func (s *Store) Set(key, value string) (Entry, error) {
	canon, norm, err := Validate(key, value)
	if err != nil {
		return Entry{}, err
	}
	return s.update(canon, func(m map[string]string) bool {
		if old, ok := m[canon]; ok && old == norm {
			return false
		}
		m[canon] = norm
		return true
	})
}

// Reset removes the local override of key, so the default applies. Resetting
// a key without a local override is not an error. A key the policy sets is
// refused with a *LockedError (wrapping ErrLocked).
func (s *Store) Reset(key string) (Entry, error) {
	k, err := lookup(key)
	if err != nil {
		return Entry{}, err
	}
	return s.update(k.Name, func(m map[string]string) bool {
		if _, ok := m[k.Name]; !ok {
			return false
		}
		delete(m, k.Name)
		return true
	})
}

// update applies change to a fresh copy of the local values and saves them if
// change reports a modification.
func (s *Store) update(canon string, change func(map[string]string) bool) (Entry, error) {
	s.mu.Lock()
	if _, ok := s.policy[canon]; ok {
		s.mu.Unlock()
		return Entry{}, &LockedError{Key: canon, Policy: s.policyPath}
	}
	next := maps.Clone(s.local)
	if s.localPath != "" {
		m, _, err := readFile(s.localPath)
		if err != nil {
			s.mu.Unlock()
			return Entry{}, fmt.Errorf("local settings (not overwritten; fix or remove it): %w", err)
		}
		next = m
		if next == nil {
			next = map[string]string{}
		}
	}
	if change(next) && s.localPath != "" {
		data := FormatFile(next)
		if err := writeFileAtomic(s.localPath, data); err != nil {
			s.mu.Unlock()
			return Entry{}, fmt.Errorf("saving local settings: %w", err)
		}
		s.localSeen = localFingerprint(data)
	}
	s.local = next
	s.eff = s.compute()
	e := s.entryLocked(&keys[byLower[lower(canon)]])
	s.mu.Unlock()
	s.notify()
	return e, nil
}

// ReloadPolicy re-reads the policy file. A file that cannot be read or parsed
// is rejected as a whole: the error is logged with the file and the reason,
// returned, and the last good policy stays in force. A missing file means no
// policy. The agent calls it on SIGHUP; Watch calls it when the file changes.
func (s *Store) ReloadPolicy() error { return s.reloadPolicy("") }

// reloadPolicy is ReloadPolicy; with want set, only if the file still has
// that fingerprint (else it changed again, and the next polls decide).
func (s *Store) reloadPolicy(want string) error {
	if s.policyPath == "" {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	fp, m, err := readPolicy(s.policyPath)
	if want != "" && fp != want {
		return nil
	}
	s.mu.Lock()
	s.policySeen = fp
	if err != nil {
		s.mu.Unlock()
		s.log.Error("policy file rejected; the last good policy stays in force",
			"file", s.policyPath, "err", err)
		return err
	}
	had := s.policy != nil
	s.policy = m
	s.eff = s.compute()
	s.mu.Unlock()
	switch {
	case m != nil:
		s.log.Info("policy loaded", "file", s.policyPath, "settings", len(m))
	case had:
		s.log.Info("policy file removed; no policy in force", "file", s.policyPath)
	}
	s.notify()
	return nil
}

// Watch polls the policy file and the local file every PollInterval until
// ctx is done, and reloads one when its content changes (appears, disappears,
// or differs by content hash from what was last read, whether that was
// accepted or not, so a broken file is logged once per change rather than
// once per poll) and two polls in a row read the same (pollOnce). The files are small, so each poll reads them rather than
// trusting mtime and size, which miss quick same-size edits. The local file
// is watched because several agents can share it: a user's stdio agents (one
// per ssh connection or master) each keep the settings in memory, and a
// `tether config set` reaches only the one that served it.
func (s *Store) Watch(ctx context.Context) {
	if s.policyPath == "" && s.localPath == "" {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.poll)
	defer t.Stop()
	var w watchState
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.pollOnce(&w)
	}
}

// refreshSettle is how long a changed local file must read the same before
// Refresh applies it. Watch asks the same of two polls a second apart; this
// shorter wait catches fewer in-place rewrites (`cat >`, an editor that
// truncates first) mid-way, so one caught empty could apply the defaults
// until the next polls. Only the file's owner writes it (the agent's user,
// or root for a root agent), and every `tether config set` replaces it
// whole.
const refreshSettle = 50 * time.Millisecond

// settleWait waits refreshSettle (tests change what happens meanwhile).
var settleWait = func() { time.Sleep(refreshSettle) }

// Refresh reads the local settings file now, instead of at Watch's next
// polls, applies it if it changed and read the same refreshSettle later,
// and reports whether it applied it. A caller about to refuse on a limit
// calls it first: `tether config set` reaches only the agent that served
// it, and a user's other agents (one per ssh connection or master, sharing
// the file) would otherwise refuse with the old value for up to two polls.
// Subscribers hear of the change from another goroutine: Refresh returns
// without waiting for them (the agent's subscriber pushes the limits to
// every session host). A file that cannot be read (not absent: unreadable)
// is left to Watch. The policy file keeps Watch's polls and SIGHUP: it is an admin's,
// and is never applied sooner than before.
func (s *Store) Refresh() bool {
	if s.localPath == "" {
		return false
	}
	// One at a time: refusals that arrive together wait for the first's
	// read, and most find the file applied.
	s.refreshMu.Lock()
	applied := s.refreshLocked()
	s.refreshMu.Unlock()
	if applied {
		go s.notify()
	}
	return applied
}

func (s *Store) refreshLocked() bool {
	read := func() string { return localFileFingerprint(readFile(s.localPath)) }
	fp := read()
	if strings.HasPrefix(fp, fingerprintErrorPrefix) {
		return false // unreadable for now (EMFILE in a flood, say)
	}
	s.mu.RLock()
	changed := fp != s.localSeen
	s.mu.RUnlock()
	if !changed {
		return false
	}
	settleWait()
	if read() != fp {
		return false // still being written: Watch's polls decide
	}
	return s.applyLocal(fp)
}

// watchState is what Watch carries from one poll to the next: a changed
// file's fingerprint seen once, to be applied when the next poll reads the
// same.
type watchState struct{ policy, local string }

// pollOnce is one of Watch's polls. A changed file is applied only when two
// polls in a row read the same content: a file rewritten in place (an
// editor that truncates first, `echo ... >`) could otherwise be read empty
// for a moment and applied as no policy, or as the defaults.
func (s *Store) pollOnce(w *watchState) {
	if s.policyPath != "" {
		fp := fingerprint(os.ReadFile(s.policyPath))
		if s.settled(&w.policy, fp, &s.policySeen) {
			_ = s.reloadPolicy(fp) // logged there
		}
	}
	if s.localPath != "" {
		fp := localFileFingerprint(readFile(s.localPath))
		if s.settled(&w.local, fp, &s.localSeen) {
			s.reloadLocal(fp)
		}
	}
}

// settled reports whether a file read as fp differs from what was last
// applied (*seen, read under the store's lock) and read the same on the
// previous poll too; pending holds the fingerprint awaiting that second read.
func (s *Store) settled(pending *string, fp string, seen *string) bool {
	s.mu.RLock()
	changed := fp != *seen
	s.mu.RUnlock()
	switch {
	case !changed:
		*pending = ""
		return false
	case fp != *pending:
		*pending = fp
		return false
	default:
		*pending = ""
		return true
	}
}

// reloadLocal applies the local file if it still has fingerprint want and
// that differs from what was last read or written, and tells subscribers.
// A file that no longer parses is logged once per change and the settings
// in force stay (Set refuses to overwrite it).
func (s *Store) reloadLocal(want string) {
	if s.applyLocal(want) {
		s.notify()
	}
}

// applyLocal is reloadLocal without telling subscribers; it reports
// whether it applied the file.
func (s *Store) applyLocal(want string) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// Read under the lock: a Set's write cannot then come between this
	// read and applying it (and be undone by the older content).
	s.mu.Lock()
	m, data, err := readFile(s.localPath)
	fp := localFileFingerprint(m, data, err)
	if fp != want || fp == s.localSeen {
		s.mu.Unlock()
		return false
	}
	s.localSeen = fp
	if err != nil {
		s.mu.Unlock()
		s.log.Error("local settings file rejected; the settings in force stay", "file", s.localPath, "err", err)
		return false
	}
	if m == nil {
		m = map[string]string{}
	}
	s.local = m
	s.eff = s.compute()
	s.mu.Unlock()
	s.log.Info("local settings reloaded", "file", s.localPath, "settings", len(m))
	return true
}

// localFileFingerprint is localFingerprint for what readFile returned; a
// file that cannot be read is told apart by its error.
func localFileFingerprint(_ map[string]string, data []byte, err error) string {
	if err != nil && data == nil {
		return fingerprint(nil, err)
	}
	return localFingerprint(data)
}

// localFingerprint is fingerprint for what readFile returned: nil data is
// a missing file (or an empty one: both mean defaults).
func localFingerprint(data []byte) string {
	if len(data) == 0 {
		return "absent"
	}
	return fingerprint(data, nil)
}

// Subscribe registers fn to be called with the new effective values after
// they change. Calls are serialized, in order, and always carry the latest
// values (quick successive changes may be coalesced into one call). A change
// made by another goroutine may be delivered by that goroutine, so Set can
// return before fn has seen its change. fn may call the Store, including Set.
// cancel unregisters fn.
func (s *Store) Subscribe(fn func(Settings)) (cancel func()) {
	s.subMu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	s.subMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, id)
			s.subMu.Unlock()
		})
	}
}

// notify delivers the effective values to subscribers if they changed. Only
// one goroutine delivers at a time; others (and re-entrant calls from a
// subscriber) mark the state dirty for it to deliver again.
func (s *Store) notify() {
	s.subMu.Lock()
	if s.notifying {
		s.dirty = true
		s.subMu.Unlock()
		return
	}
	s.notifying = true
	defer func() {
		if r := recover(); r != nil {
			s.subMu.Lock()
			s.notifying = false
			s.subMu.Unlock()
			panic(r)
		}
	}()
	for {
		s.dirty = false
		fns := make([]func(Settings), 0, len(s.subs))
		for id := 0; id < s.nextSub; id++ {
			if fn, ok := s.subs[id]; ok {
				fns = append(fns, fn)
			}
		}
		s.subMu.Unlock()

		cur := s.Effective()
		if cur != s.delivered {
			s.delivered = cur
			for _, fn := range fns {
				fn(cur)
			}
		}

		s.subMu.Lock()
		if !s.dirty {
			s.notifying = false
			s.subMu.Unlock()
			return
		}
	}
}

// compute combines defaults, local and policy values. Callers hold mu.
func (s *Store) compute() Settings {
	e := Defaults()
	for i := range keys {
		k := &keys[i]
		if v, ok := s.policy[k.Name]; ok {
			k.set(&e, v)
		} else if v, ok := s.local[k.Name]; ok {
			k.set(&e, v)
		}
	}
	return e
}

// entryLocked describes k. Callers hold mu.
func (s *Store) entryLocked(k *Key) Entry {
	e := Entry{Key: k.Name, Value: k.Default, Default: k.Default, Source: SourceDefault}
	lv, hasLocal := s.local[k.Name]
	if pv, ok := s.policy[k.Name]; ok {
		e.Value, e.Source, e.Locked, e.SetBy = pv, SourcePolicy, true, s.policyPath
		if hasLocal {
			e.LocalValue = lv
		}
	} else if hasLocal {
		e.Value, e.Source, e.SetBy = lv, SourceLocal, s.localPath
	}
	return e
}

// readPolicy reads the policy file and returns its fingerprint and contents;
// a missing file is (fingerprint, nil, nil).
func readPolicy(path string) (fp string, m map[string]string, err error) {
	data, err := os.ReadFile(path)
	fp = fingerprint(data, err)
	if errors.Is(err, fs.ErrNotExist) {
		return fp, nil, nil
	}
	if err != nil {
		return fp, nil, err
	}
	m, err = ParseFile(data)
	if err != nil {
		return fp, nil, fmt.Errorf("%s: %w", path, err)
	}
	return fp, m, nil
}

// fingerprintErrorPrefix starts the fingerprint of a file that could not
// be read.
const fingerprintErrorPrefix = "error: "

// fingerprint identifies a policy file's state: absent, unreadable (by
// error), or its content's hash.
func fingerprint(data []byte, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "absent"
	case err != nil:
		return fingerprintErrorPrefix + err.Error()
	}
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])
}

func lookup(name string) (*Key, error) {
	i, ok := byLower[lower(name)]
	if !ok {
		return nil, unknownKey(name)
	}
	return &keys[i], nil
}
