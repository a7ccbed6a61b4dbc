package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type fixture struct {
	dir, local, policy string
	log                *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	return &fixture{
		dir:    dir,
		local:  filepath.Join(dir, "etc", "tether.toml"),
		policy: filepath.Join(dir, "policy.toml"),
		log:    &syncBuffer{},
	}
}

func (f *fixture) open(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(StoreOptions{
		LocalPath:    f.local,
		PolicyPath:   f.policy,
		Logger:       slog.New(slog.NewTextHandler(f.log, nil)),
		PollInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, s *Store, key string) Entry {
	t.Helper()
	e, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreMissingFilesGiveDefaults(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	if got := s.Effective(); got != Defaults() {
		t.Fatalf("Effective() = %+v, want defaults", got)
	}
	list := s.List()
	if len(list) != len(Keys()) {
		t.Fatalf("List() has %d entries", len(list))
	}
	for i, e := range list {
		k := Keys()[i]
		want := Entry{Key: k.Name, Value: k.Default, Default: k.Default, Source: SourceDefault}
		if e != want {
			t.Errorf("entry %d = %+v, want %+v", i, e, want)
		}
	}
	if s.PolicyPath() != f.policy || s.LocalPath() != f.local {
		t.Error("paths not reported")
	}
	if _, err := os.Stat(f.local); !errors.Is(err, os.ErrNotExist) {
		t.Error("opening the store created the local file")
	}
	if _, err := s.Get("Nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Get(unknown) error = %v", err)
	}
}

func TestStoreSetPersists(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	e, err := s.Set("idletimeout", "90m")
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Key: "IdleTimeout", Value: "1h30m", Default: "2h", Source: SourceLocal, SetBy: f.local}
	if e != want {
		t.Fatalf("Set = %+v, want %+v", e, want)
	}
	if _, err := s.Set("MaxShellsPerUser", "unlimited"); err != nil {
		t.Fatal(err)
	}
	if got := s.Effective(); got.IdleTimeout != 90*time.Minute || got.MaxShellsPerUser != 0 {
		t.Fatalf("Effective() = %+v", got)
	}
	fi, err := os.Stat(f.local)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("local file mode %v, want 0600", fi.Mode().Perm())
	}

	// A bad value is refused and changes nothing.
	if _, err := s.Set("MaxShellsPerUser", "-2"); err == nil {
		t.Fatal("Set accepted -2")
	}

	s2 := f.open(t)
	if s2.Effective() != s.Effective() {
		t.Fatalf("reopened store: %+v, want %+v", s2.Effective(), s.Effective())
	}
	if e := mustGet(t, s2, "MaxShellsPerUser"); e.Value != "unlimited" || e.Source != SourceLocal {
		t.Fatalf("reopened entry %+v", e)
	}
}

func TestStoreSetKeepsHandEdits(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	if _, err := s.Set("MaxConnections", "50"); err != nil {
		t.Fatal(err)
	}
	write(t, f.local, "MaxConnections = 50\nMaxShellsPerUser = 4\n")
	if _, err := s.Set("IdleTimeout", "1h"); err != nil {
		t.Fatal(err)
	}
	got := s.Effective()
	if got.MaxShellsPerUser != 4 || got.IdleTimeout != time.Hour || got.MaxConnections != 50 {
		t.Fatalf("Effective() = %+v", got)
	}
	// A broken hand edit is not overwritten.
	write(t, f.local, "MaxConnections = \"many\"\n")
	_, err := s.Set("IdleTimeout", "3h")
	if err == nil || !strings.Contains(err.Error(), f.local+`: line 1: MaxConnections: "many" is not a whole number`) {
		t.Fatalf("Set over a broken file: %v", err)
	}
	if data, _ := os.ReadFile(f.local); string(data) != "MaxConnections = \"many\"\n" {
		t.Fatalf("broken file was overwritten: %q", data)
	}
}

func TestStoreReset(t *testing.T) {
	f := newFixture(t)
	write(t, f.local, "IdleTimeout = \"10m\"\nMaxConnections = 7\n")
	s := f.open(t)
	if got := s.Effective().IdleTimeout; got != 10*time.Minute {
		t.Fatalf("IdleTimeout = %v", got)
	}
	e, err := s.Reset("IdleTimeout")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Entry{Key: "IdleTimeout", Value: "2h", Default: "2h", Source: SourceDefault}); e != want {
		t.Fatalf("Reset = %+v, want %+v", e, want)
	}
	// Resetting again is a no-op, and other keys survive.
	if _, err := s.Reset("IdleTimeout"); err != nil {
		t.Fatal(err)
	}
	s2 := f.open(t)
	if got := s2.Effective(); got.IdleTimeout != 2*time.Hour || got.MaxConnections != 7 {
		t.Fatalf("reopened: %+v", got)
	}
	if _, err := s.Reset("Bogus"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Reset(Bogus) = %v", err)
	}
}

func TestStoreBrokenLocalFileAtStartup(t *testing.T) {
	f := newFixture(t)
	write(t, f.local, "# settings\nIdleTimeout = \"2x\"\n")
	_, err := OpenStore(StoreOptions{LocalPath: f.local})
	want := "local settings: " + f.local + `: line 2: IdleTimeout: "2x" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`
	if err == nil || err.Error() != want {
		t.Fatalf("OpenStore error\n got: %v\nwant: %s", err, want)
	}
}

func TestStorePolicyOverridesAndLocks(t *testing.T) {
	f := newFixture(t)
	write(t, f.local, "IdleTimeout = \"10m\"\nMaxConnections = 7\n")
	write(t, f.policy, "IdleTimeout = \"30m\"\nAllowRemoteShellAccess = false\n")
	s := f.open(t)

	got := s.Effective()
	if got.IdleTimeout != 30*time.Minute || got.AllowRemoteShellAccess || got.MaxConnections != 7 {
		t.Fatalf("Effective() = %+v", got)
	}
	e := mustGet(t, s, "IdleTimeout")
	want := Entry{Key: "IdleTimeout", Value: "30m", Default: "2h", Source: SourcePolicy, Locked: true, SetBy: f.policy, LocalValue: "10m"}
	if e != want {
		t.Fatalf("Get = %+v, want %+v", e, want)
	}

	for _, op := range []struct {
		name string
		do   func() (Entry, error)
	}{
		{"Set", func() (Entry, error) { return s.Set("idleTimeout", "1h") }},
		{"Reset", func() (Entry, error) { return s.Reset("IdleTimeout") }},
		{"Set bool", func() (Entry, error) { return s.Set("AllowRemoteShellAccess", "true") }},
	} {
		_, err := op.do()
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: error %v, want ErrLocked", op.name, err)
		}
		var le *LockedError
		if !errors.As(err, &le) || le.Policy != f.policy {
			t.Fatalf("%s: error %#v", op.name, err)
		}
		if !strings.HasSuffix(err.Error(), " is set by policy "+f.policy) {
			t.Fatalf("%s: message %q", op.name, err)
		}
	}
	if _, err := s.Set("IdleTimeout", "1h"); err.Error() != "IdleTimeout is set by policy "+f.policy {
		t.Fatalf("message %q", err)
	}
	// The local file still holds its own value, untouched.
	if data, _ := os.ReadFile(f.local); !strings.Contains(string(data), `IdleTimeout = "10m"`) {
		t.Fatalf("local file changed: %q", data)
	}
	// Unlocked keys can still be set.
	if _, err := s.Set("MaxConnections", "8"); err != nil {
		t.Fatal(err)
	}
}

func TestStoreWatchAppliesPolicyEdits(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "MaxShellsPerUser = 3\n")
	s := f.open(t)

	var mu sync.Mutex
	var seen []Settings
	cancelSub := s.Subscribe(func(st Settings) {
		mu.Lock()
		seen = append(seen, st)
		mu.Unlock()
	})
	defer cancelSub()
	last := func() (Settings, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return Settings{}, 0
		}
		return seen[len(seen)-1], len(seen)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// An edit of the same size, within the same mtime tick, is still seen.
	write(t, f.policy, "MaxShellsPerUser = 4\n")
	tstest.WaitFor(t, 10*time.Second, "policy edit applied", func() bool { return s.Effective().MaxShellsPerUser == 4 })
	tstest.WaitFor(t, 10*time.Second, "subscriber called", func() bool { st, _ := last(); return st.MaxShellsPerUser == 4 })
	if e := mustGet(t, s, "MaxShellsPerUser"); !e.Locked || e.SetBy != f.policy {
		t.Fatalf("entry %+v", e)
	}

	write(t, f.policy, "MaxShellsPerUser = 4\nOutputBufferingMode = \"drop\"\n")
	tstest.WaitFor(t, 10*time.Second, "second edit applied", func() bool {
		st, _ := last()
		return st.OutputBufferingMode == BufferDrop && st.MaxShellsPerUser == 4
	})

	// Removing the policy file unlocks everything.
	if err := os.Remove(f.policy); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "policy removal applied", func() bool { st, _ := last(); return st == Defaults() })
	if e := mustGet(t, s, "MaxShellsPerUser"); e.Locked || e.Source != SourceDefault {
		t.Fatalf("entry after removal %+v", e)
	}
	if _, err := s.Set("MaxShellsPerUser", "9"); err != nil {
		t.Fatalf("Set after policy removal: %v", err)
	}
	tstest.WaitFor(t, 10*time.Second, "Set delivered", func() bool { st, _ := last(); return st.MaxShellsPerUser == 9 })

	// After cancel, no more calls.
	cancelSub()
	_, n := last()
	if _, err := s.Set("MaxShellsPerUser", "10"); err != nil {
		t.Fatal(err)
	}
	if _, n2 := last(); n2 != n {
		t.Fatal("cancelled subscriber was called")
	}
}

func TestStoreBrokenPolicyKeepsLastGood(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "IdleTimeout = \"30m\"\n")
	s := f.open(t)
	calls := 0
	s.Subscribe(func(Settings) { calls++ })

	write(t, f.policy, "IdleTimeout = \"5m\"\nMaxShellsPerUser = \"lots\"\n")
	err := s.ReloadPolicy()
	wantErr := f.policy + `: line 2: MaxShellsPerUser: "lots" is not a whole number (use e.g. 30, or 0 or "unlimited" for no limit)`
	if err == nil || err.Error() != wantErr {
		t.Fatalf("ReloadPolicy error\n got: %v\nwant: %s", err, wantErr)
	}
	// Rejected as a whole: the valid IdleTimeout line is not applied either.
	if got := s.Effective().IdleTimeout; got != 30*time.Minute {
		t.Fatalf("IdleTimeout = %v, want the last good 30m", got)
	}
	if e := mustGet(t, s, "IdleTimeout"); !e.Locked {
		t.Fatal("last good policy no longer locks")
	}
	if calls != 0 {
		t.Fatalf("subscriber called %d times for a rejected policy", calls)
	}
	logs := f.log.String()
	for _, want := range []string{"level=ERROR", "policy file rejected", "file=" + f.policy, `MaxShellsPerUser: \"lots\" is not a whole number`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// An unknown key rejects the whole file too.
	write(t, f.policy, "IdleTimeout = \"5m\"\nColour = \"red\"\n")
	if err := s.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), `unknown setting "Colour"`) {
		t.Fatalf("ReloadPolicy = %v", err)
	}
	if got := s.Effective().IdleTimeout; got != 30*time.Minute {
		t.Fatalf("IdleTimeout = %v after unknown key", got)
	}

	// Fixing it applies.
	write(t, f.policy, "IdleTimeout = \"5m\"\n")
	if err := s.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	if got := s.Effective().IdleTimeout; got != 5*time.Minute || calls != 1 {
		t.Fatalf("IdleTimeout = %v, calls %d", got, calls)
	}
}

func TestStoreBrokenPolicyAtStartup(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "IdleTimeout = \"30m\"\n[oops\n")
	s := f.open(t)
	if s.Effective() != Defaults() {
		t.Fatal("broken policy applied at startup")
	}
	if logs := f.log.String(); !strings.Contains(logs, "running without policy") || !strings.Contains(logs, f.policy) {
		t.Fatalf("log: %s", logs)
	}

	// Watch logs a broken file once per change, not once per poll, and picks
	// up the fix.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	write(t, f.policy, "IdleTimeout = \"bad\"\n")
	tstest.WaitFor(t, 10*time.Second, "second rejection logged", func() bool { return strings.Count(f.log.String(), "policy file rejected") == 2 })
	write(t, f.policy, "IdleTimeout = \"30m\"\n")
	tstest.WaitFor(t, 10*time.Second, "fixed policy applied", func() bool { return s.Effective().IdleTimeout == 30*time.Minute })
	if n := strings.Count(f.log.String(), "policy file rejected"); n != 2 {
		t.Fatalf("%d rejections logged, want 2:\n%s", n, f.log.String())
	}
}

func TestStoreInMemory(t *testing.T) {
	s, err := OpenStore(StoreOptions{Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set("MaxConnections", "5"); err != nil {
		t.Fatal(err)
	}
	if e := mustGet(t, s, "MaxConnections"); e.Value != "5" || e.Source != SourceLocal || e.SetBy != "" {
		t.Fatalf("entry %+v", e)
	}
	if err := s.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Watch(ctx) // returns at once without a policy file
}

func TestSubscriberMaySetReentrantly(t *testing.T) {
	s, err := OpenStore(StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	s.Subscribe(func(st Settings) {
		got = append(got, st.MaxConnections)
		if st.MaxConnections == 1 {
			if _, err := s.Set("MaxConnections", "2"); err != nil {
				t.Error(err)
			}
		}
	})
	if _, err := s.Set("MaxConnections", "1"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("deliveries %v, want [1 2]", got)
	}
}

func TestStoreConcurrent(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "MaxProcessesPerShell = 5\n")
	s := f.open(t)
	var deliveries sync.Map
	s.Subscribe(func(st Settings) { deliveries.Store(st.MaxConnections, true) })

	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { s.Watch(ctx); close(watchDone) }()

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := s.Set("MaxConnections", fmt.Sprint(100*w+i+1)); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Set("MaxProcessesPerShell", "3"); !errors.Is(err, ErrLocked) {
					t.Errorf("locked Set: %v", err)
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				st := s.Effective()
				if st.MaxProcessesPerShell != 5 {
					t.Errorf("policy value lost: %+v", st)
					return
				}
				_ = s.List()
				_ = s.ReloadPolicy()
			}
		}()
	}
	wg.Wait()
	cancel()
	<-watchDone

	// The file holds the last value written, and a new store agrees.
	s2 := f.open(t)
	if s2.Effective() != s.Effective() {
		t.Fatalf("reopened %+v, want %+v", s2.Effective(), s.Effective())
	}
	final := s.Effective().MaxConnections
	if _, ok := deliveries.Load(final); !ok {
		t.Fatalf("final value %d never delivered to the subscriber", final)
	}
}

// TestStoreWatchSeesAnotherAgentsSet: two stores on one local file, as a
// user's two stdio agents (one per ssh connection or master): a Set
// through one is in force in the other once its Watch polls, a later Set
// through the other keeps it, and a local file broken by hand is logged
// and leaves the settings in force.
func TestStoreWatchSeesAnotherAgentsSet(t *testing.T) {
	f := newFixture(t)
	a, b := f.open(t), f.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if _, err := a.Set("MaxShellsPerUser", "200"); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "the other agent to see the Set", func() bool { return b.Effective().MaxShellsPerUser == 200 })
	if _, err := b.Set("MaxConnections", "8"); err != nil {
		t.Fatal(err)
	}
	if got := b.Effective(); got.MaxShellsPerUser != 200 || got.MaxConnections != 8 {
		t.Fatalf("after a Set through the other agent: %+v", got)
	}

	// Replaced whole, as Set and most editors do: a reader of a file
	// truncated in place could see it empty (defaults) for a moment.
	if err := writeFileAtomic(f.local, []byte("MaxShellsPerUser = \n")); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "the broken file to be logged", func() bool {
		return strings.Contains(f.log.String(), "local settings file rejected")
	})
	if got := b.Effective().MaxShellsPerUser; got != 200 {
		t.Fatalf("a broken local file changed the settings in force: MaxShellsPerUser %d", got)
	}
	if err := writeFileAtomic(f.local, []byte("MaxShellsPerUser = 7\n")); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "the fixed file to apply", func() bool { return b.Effective().MaxShellsPerUser == 7 })
}

// TestStoreWatchWaitsForAStableFile: Watch applies a changed file only when
// two polls in a row read the same content, so a policy or local file
// caught empty while rewritten in place (`echo ... >`, an editor that
// truncates first) never lifts the policy's locks or resets the settings
// to their defaults for a poll.
func TestStoreWatchWaitsForAStableFile(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "MaxShellsPerUser = 3\n")
	write(t, f.local, "MaxConnections = 8\n")
	s := f.open(t)
	var w watchState
	check := func(step string, shells, conns int) {
		t.Helper()
		if got := s.Effective(); got.MaxShellsPerUser != shells || got.MaxConnections != conns {
			t.Fatalf("%s: MaxShellsPerUser %d, MaxConnections %d; want %d, %d", step, got.MaxShellsPerUser, got.MaxConnections, shells, conns)
		}
	}

	write(t, f.policy, "") // caught mid-rewrite
	write(t, f.local, "")
	s.pollOnce(&w)
	check("a poll that reads both files empty", 3, 8)
	write(t, f.policy, "MaxShellsPerUser = 4\n")
	write(t, f.local, "MaxConnections = 9\n")
	s.pollOnce(&w)
	check("the first poll of the new content", 3, 8)
	s.pollOnce(&w)
	check("the second poll of the same content", 4, 9)
	if e := mustGet(t, s, "MaxShellsPerUser"); !e.Locked {
		t.Fatalf("the policy's key is no longer locked: %+v", e)
	}

	// A file really emptied (kept empty) applies after its second poll.
	write(t, f.policy, "")
	s.pollOnce(&w)
	check("the emptied policy, first poll", 4, 9)
	s.pollOnce(&w)
	check("the emptied policy, second poll", 30, 9)
}

// TestStoreRefreshSeesAnotherAgentsSetAtOnce: a Set through one agent is in
// force in another sharing the local file as soon as that one refreshes
// (before refusing on a limit), not two polls later; nothing changed, a
// file that does not parse and the policy file leave its settings as they
// are.
func TestStoreRefreshSeesAnotherAgentsSetAtOnce(t *testing.T) {
	f := newFixture(t)
	write(t, f.policy, "MaxConnections = 50\n")
	a, b := f.open(t), f.open(t) // b runs no Watch: only Refresh can move it
	heard := make(chan int, 10)
	defer b.Subscribe(func(s Settings) { heard <- s.MaxShellsPerUser })()
	if b.Refresh() {
		t.Fatal("Refresh of unchanged files reported a change")
	}
	if _, err := a.Set("MaxShellsPerUser", "200"); err != nil {
		t.Fatal(err)
	}
	if !b.Refresh() {
		t.Fatal("Refresh after another agent's Set reported no change")
	}
	if got := b.Effective().MaxShellsPerUser; got != 200 {
		t.Fatalf("after Refresh: MaxShellsPerUser %d, want 200", got)
	}
	select {
	case got := <-heard:
		if got != 200 {
			t.Fatalf("the subscriber heard MaxShellsPerUser %d, want 200", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber never heard of the refreshed settings")
	}

	// Unreadable for now (not absent): left to Watch, settings unchanged.
	if err := os.Rename(f.local, f.local+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.local, 0o700); err != nil {
		t.Fatal(err)
	}
	if b.Refresh() || b.Effective().MaxShellsPerUser != 200 {
		t.Fatalf("an unreadable local file changed the settings in force: MaxShellsPerUser %d", b.Effective().MaxShellsPerUser)
	}
	if err := os.Remove(f.local); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.local+".away", f.local); err != nil {
		t.Fatal(err)
	}

	if err := writeFileAtomic(f.local, []byte("MaxShellsPerUser = \n")); err != nil {
		t.Fatal(err)
	}
	if b.Refresh() || b.Effective().MaxShellsPerUser != 200 {
		t.Fatalf("a broken local file changed the settings in force: MaxShellsPerUser %d", b.Effective().MaxShellsPerUser)
	}

	write(t, f.policy, "MaxConnections = 60\n")
	if b.Refresh() || b.Effective().MaxConnections != 50 {
		t.Fatalf("Refresh applied the policy file (MaxConnections %d): that is Watch's and SIGHUP's", b.Effective().MaxConnections)
	}

	if err := writeFileAtomic(f.local, []byte("MaxShellsPerUser = 7\n")); err != nil {
		t.Fatal(err)
	}
	if !b.Refresh() || b.Effective().MaxShellsPerUser != 7 {
		t.Fatalf("after the fixed file: MaxShellsPerUser %d, want 7", b.Effective().MaxShellsPerUser)
	}
}

// TestStoreRefreshWaitsForAStableFile: a local file that changes again
// while Refresh waits (rewritten in place, caught half-written) is left to
// Watch's polls.
func TestStoreRefreshWaitsForAStableFile(t *testing.T) {
	f := newFixture(t)
	write(t, f.local, "MaxShellsPerUser = 3\n")
	s := f.open(t)
	defer func(w func()) { settleWait = w }(settleWait)
	settleWait = func() { write(t, f.local, "MaxShellsPerUser = 40\n") }
	write(t, f.local, "MaxShellsPerUser = 4") // the first read sees this
	if s.Refresh() || s.Effective().MaxShellsPerUser != 3 {
		t.Fatalf("a file that changed during Refresh's wait was applied: MaxShellsPerUser %d", s.Effective().MaxShellsPerUser)
	}
	settleWait = func() {}
	if !s.Refresh() || s.Effective().MaxShellsPerUser != 40 {
		t.Fatalf("the settled file: MaxShellsPerUser %d, want 40", s.Effective().MaxShellsPerUser)
	}
}
