package remoting

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/wire"
)

func src(dir string) Source {
	return Source{Host: "alice@vm", Dir: dir}
}

func TestPlanRefusesWhatBreaksTheModuleRules(t *testing.T) {
	dir := t.TempDir()
	many := make([]string, MaxCommands+1)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i%100) + string(rune('a'+i%26)) + strings.Repeat("y", i/100)
	}
	for _, tc := range []struct {
		mi   wire.ModuleInfo
		want string
	}{
		{wire.ModuleInfo{Name: "../etc", Version: "1", Commands: []string{"a"}}, "module name"},
		{wire.ModuleInfo{Name: "m", Version: "1 2", Commands: []string{"a"}}, "version"},
		{wire.ModuleInfo{Name: "m", Version: "1", Commands: []string{"../../bin/sh"}}, "cannot be a command"},
		{wire.ModuleInfo{Name: "m", Version: "1", Commands: []string{"a\x1b]0;x\x07"}}, "cannot be a command"},
		{wire.ModuleInfo{Name: "m", Version: "1", Commands: []string{"a", "a"}}, "twice"},
		{wire.ModuleInfo{Name: "m", Version: "1", Commands: many}, "more than"},
	} {
		if _, err := Plan(tc.mi, src(dir), time.Now()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%q %q %d commands): %v, want an error about %s", tc.mi.Name, tc.mi.Version, len(tc.mi.Commands), err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Plan wrote files: %v", ents)
	}
}

func TestPlanNamesWithPrefix(t *testing.T) {
	dir := t.TempDir()
	s := src(dir)
	s.Prefix = "P"
	made, err := Plan(wire.ModuleInfo{Name: "net", Version: "1.0", Commands: []string{"get-route", "ping"}}, s, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 2 || made[0].Name != "get-Proute" || made[1].Name != "Pping" || made[0].Path != filepath.Join(dir, "get-Proute") {
		t.Fatalf("made %+v", made)
	}
	if err := CheckPrefix("a b"); err == nil {
		t.Fatal("a prefix with a space was accepted")
	}
}

// TestProxyScriptRunsUnderSh: the script is valid sh and execs the binary
// with the manifest and its own path as exact words, whatever they hold.
func TestProxyScriptRunsUnderSh(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "it's a $(dir)")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "fake tether")
	os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"), 0o755)
	e := Entry{Name: "cmd", Path: filepath.Join(dir, "cmd")}
	manifest := filepath.Join(dir, "imports `x`.json")
	os.WriteFile(e.Path, []byte(ProxyScript(fake, manifest, e)), 0o755)
	out, err := exec.Command(e.Path, "a b", "$HOME").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "[proxy][--imports][" + manifest + "][--path][" + e.Path + "][--][a b][$HOME]"
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	if !IsProxy(e.Path) || OldProxy(e.Path) {
		t.Fatalf("IsProxy %v OldProxy %v", IsProxy(e.Path), OldProxy(e.Path))
	}
}

func TestInstallClashesAndForce(t *testing.T) {
	dir := t.TempDir()
	m := &Manifest{Path: filepath.Join(dir, "cfg", "imports.json")}
	mi := wire.ModuleInfo{Name: "net", Version: "1.0", Commands: []string{"ping", "trace"}}
	made, _ := Plan(mi, src(dir), time.Now())
	os.WriteFile(filepath.Join(dir, "trace"), []byte("mine"), 0o755)
	err := m.Install("/bin/tether", made, false)
	if err == nil || !strings.Contains(err.Error(), "trace exists and was not made by tether import") {
		t.Fatalf("Install over a user's file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ping")); err == nil {
		t.Fatal("a refused import wrote a proxy")
	}
	os.Remove(filepath.Join(dir, "trace"))
	if err := m.Install("/bin/tether", made, false); err != nil {
		t.Fatal(err)
	}
	// The same source again is no clash; another host is.
	if err := m.Install("/bin/tether", made, false); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	other := src(dir)
	other.Host = "bob@other"
	made2, _ := Plan(mi, other, time.Now())
	if err := m.Install("/bin/tether", made2, false); err == nil || !strings.Contains(err.Error(), "2 names are taken") {
		t.Fatalf("import from another host: %v", err)
	}
	if err := m.Install("/bin/tether", made2, true); err != nil {
		t.Fatal(err)
	}
	ents, err := m.Entries()
	if err != nil || len(ents) != 2 || ents[0].Host != "bob@other" || ents[0].Name != "ping" {
		t.Fatalf("entries %+v %v", ents, err)
	}
	if e, err := m.Lookup(filepath.Join(dir, "trace")); err != nil || e.Command != "trace" {
		t.Fatalf("Lookup: %+v %v", e, err)
	}
	if _, err := m.Lookup(filepath.Join(dir, "gone")); err == nil || !strings.Contains(err.Error(), "import it again") {
		t.Fatalf("Lookup of a path not in the manifest: %v", err)
	}
}

// TestRemoveLeavesFilesItDidNotMake: a proxy replaced by the user's own
// file is dropped from the manifest but the file stays.
func TestRemoveLeavesFilesItDidNotMake(t *testing.T) {
	dir := t.TempDir()
	m := &Manifest{Path: filepath.Join(dir, "imports.json")}
	made, _ := Plan(wire.ModuleInfo{Name: "net", Version: "1.0", Commands: []string{"ping", "trace"}}, src(dir), time.Now())
	if err := m.Install("/bin/tether", made, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "trace"), []byte("#!/bin/sh\necho mine\n"), 0o755)
	removed, err := m.Remove(nil, "alice@vm", "net", "", false)
	if err != nil || len(removed) != 2 {
		t.Fatalf("removed %+v %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ping")); err == nil {
		t.Fatal("proxy ping not deleted")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "trace")); string(b) != "#!/bin/sh\necho mine\n" {
		t.Fatalf("the user's file was touched: %q", b)
	}
	if ents, _ := m.Entries(); len(ents) != 0 {
		t.Fatalf("left in the manifest: %+v", ents)
	}
}

func TestDamagedManifestSaysWhatToDo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "imports.json")
	os.WriteFile(p, []byte("{"), 0o600)
	if _, err := (&Manifest{Path: p}).Entries(); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("got %v", err)
	}
}

func TestLockImplicitIsExclusive(t *testing.T) {
	dir := t.TempDir()
	unlock, ok := LockImplicit(dir, "alice@vm:4022/implicit-1")
	if !ok {
		t.Fatal("first lock refused")
	}
	if _, ok := LockImplicit(dir, "alice@vm:4022/implicit-1"); ok {
		t.Fatal("second lock granted while the first is held")
	}
	unlock()
	if u, ok := LockImplicit(dir, "alice@vm:4022/implicit-1"); !ok {
		t.Fatal("lock refused after unlock")
	} else {
		u()
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || strings.ContainsAny(ents[0].Name(), "/:") {
		t.Fatalf("lock files %v", ents)
	}
}

func TestPathHelpers(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o755)
	list := "/nonexistent::" + dir + "/"
	if !OnPath(list, dir) || OnPath(list, "/tmp/other") {
		t.Fatal("OnPath")
	}
	if p, err := LookPath(list, "x"); err != nil || p != filepath.Join(dir, "x") {
		t.Fatalf("LookPath %q %v", p, err)
	}
	if SafeText("a\x1b[2J") == "a\x1b[2J" || SafeText("plain text") != "plain text" {
		t.Fatal("SafeText")
	}
}
