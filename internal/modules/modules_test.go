package modules

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/shquote"
)

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func testModule(t *testing.T, root string) {
	t.Helper()
	m := filepath.Join(root, "net")
	write(t, filepath.Join(m, "module.toml"), "name = \"net\"\nversion = \"1.2\"\ndescription = \"network tools\"\n", 0o644)
	write(t, filepath.Join(m, "bin", "hexargs"), "#!/bin/sh\nfor a in \"$@\"; do printf '%s' \"$a\" | od -An -tx1 | tr -d ' \\n'; echo; done\n", 0o755)
	write(t, filepath.Join(m, "bin", "get-route"), "#!/bin/sh\necho route $PWD\n", 0o755)
	write(t, filepath.Join(m, "functions.sh"), "greet() { echo \"hello $1 from $(basename \"$PWD\")\"; _helper; }\n_helper() { echo helper; }\n", 0o644)
	write(t, filepath.Join(m, "help", "get-route.txt"), "get-route: shows routes\n", 0o644)
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	testModule(t, root)
	write(t, filepath.Join(root, "bad", "module.toml"), "name = \n", 0o644)
	write(t, filepath.Join(root, "bad", "bin", "x"), "", 0o755)
	write(t, filepath.Join(root, "noexec", "module.toml"), "name = \"noexec\"\nversion = \"1\"\n", 0o644)
	write(t, filepath.Join(root, "noexec", "bin", "x"), "", 0o644)
	write(t, filepath.Join(root, "wrongname", "module.toml"), "name = \"other\"\nversion = \"1\"\n", 0o644)
	write(t, filepath.Join(root, "wrongname", "bin", "x"), "", 0o755)
	second := t.TempDir()
	testModule(t, second)

	mods := Scan([]Dir{{Path: root, Owner: -1}, {Path: filepath.Join(root, "missing"), Owner: -1}, {Path: second, Owner: -1}})
	byDir := map[string]Module{}
	for _, m := range mods {
		byDir[m.Dir] = m
	}
	net := byDir[filepath.Join(root, "net")]
	if !net.OK() || net.Version != "1.2" || strings.Join(net.CommandNames(), ",") != "get-route,greet,hexargs" {
		t.Fatalf("net: %+v", net)
	}
	for dir, want := range map[string]string{
		"bad":       "module.toml: line 1",
		"noexec":    "bin/x: not executable",
		"wrongname": `name "other" does not match`,
	} {
		m := byDir[filepath.Join(root, dir)]
		if m.OK() || !strings.Contains(m.Err().Error(), want) || !strings.Contains(m.Err().Error(), root) {
			t.Errorf("%s: problems %v, want %q with the path", dir, m.Problems, want)
		}
	}
	if m := byDir[filepath.Join(second, "net")]; m.OK() || !strings.Contains(m.Err().Error(), "shadowed") {
		t.Errorf("second net: %v", m.Problems)
	}
	if m := Find(mods, "net"); m == nil || m.Dir != filepath.Join(root, "net") {
		t.Fatalf("Find: %+v", m)
	}
	h, err := Find(mods, "net").Help("get-route")
	if err != nil || h != "get-route: shows routes\n" {
		t.Fatalf("help: %q %v", h, err)
	}
	if _, err := Find(mods, "net").Help("greet"); err != ErrNoHelp {
		t.Fatalf("help of greet: %v", err)
	}
}

func TestOwnerCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as another uid")
	}
	root := t.TempDir()
	testModule(t, root)
	mods := Scan([]Dir{{Path: root, Owner: 12345}})
	if len(mods) != 1 || mods[0].OK() || !strings.Contains(mods[0].Problems[0], "not owned by uid 12345") {
		t.Fatalf("%+v", mods)
	}
}

func TestScriptRunsInRunspace(t *testing.T) {
	root := t.TempDir()
	testModule(t, root)
	mods := Scan([]Dir{{Path: root, Owner: -1}})
	m := Find(mods, "net")
	rs, err := runspace.New(runspace.Options{Dir: "/", Env: []string{"PATH=/usr/bin:/bin", "HOME=/"}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(script string) (string, int) {
		var out, errb bytes.Buffer
		code, err := rs.Run(context.Background(), script, runspace.Streams{Stdout: &out, Stderr: &errb})
		if err != nil {
			t.Fatal(err)
		}
		return out.String() + errb.String(), code
	}
	// The session has an alias and a function of the same names.
	run(`alias greet='echo ALIAS'; hexargs() { echo FUNC; }; cd /tmp`)
	args := []string{"a b", "$(rm -rf x)", ";", "", "\n", "\xff\xfe", "'\"\\", "*"}
	s, err := m.Script(append([]string{"hexargs"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	out, code := run(s)
	var want strings.Builder
	for _, a := range args {
		want.WriteString(hex.EncodeToString([]byte(a)) + "\n")
	}
	if code != 0 || out != want.String() {
		t.Fatalf("script %s\ngot %q (exit %d)\nwant %q", s, out, code, want.String())
	}
	s, _ = m.Script([]string{"greet", "you"})
	if out, code := run(s); code != 0 || out != "hello you from net\nhelper\n" {
		t.Fatalf("function: %q %d", out, code)
	}
	s, _ = m.Script([]string{"get-route"})
	if out, _ := run(s); out != "route "+filepath.Join(root, "net")+"\n" {
		t.Fatalf("get-route: %q", out)
	}
	// The session's own state is untouched.
	if out, _ := run(`pwd; echo $PATH; type _helper >/dev/null 2>&1 && echo leaked; hexargs`); out != "/tmp\n/usr/bin:/bin\nFUNC\n" {
		t.Fatalf("session state changed: %q", out)
	}
	if _, err := m.Script([]string{"nope"}); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestArgvEncoding(t *testing.T) {
	for _, argv := range [][]string{{"a", "b c"}, {"x", "\xff", ""}} {
		enc, key := EncodeArgv(argv)
		dec, err := DecodeArgv(enc, key)
		if err != nil || strings.Join(dec, "\x00") != strings.Join(argv, "\x00") {
			t.Fatalf("%q -> %q %q -> %q %v", argv, enc, key, dec, err)
		}
	}
	if _, key := EncodeArgv([]string{"plain"}); key != "" {
		t.Fatal("UTF-8 argv encoded")
	}
}

func TestProxyName(t *testing.T) {
	for _, c := range [][3]string{
		{"get-route", "ex2016", "get-ex2016route"},
		{"ping", "ex2016", "ex2016ping"},
		{"get-route", "", "get-route"},
		{"-x", "p", "p-x"},
		{"x-", "p", "px-"},
		{"set-net-addr", "a", "set-anet-addr"},
	} {
		if got := ProxyName(c[0], c[1]); got != c[2] {
			t.Errorf("ProxyName(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

// TestQuoteInSessionShell: shquote.Bash words read back in the session's
// shell (mvdan.cc/sh), which refuses raw bytes that are not UTF-8.
func TestQuoteInSessionShell(t *testing.T) {
	for _, s := range []string{"", "a", "a b", "\xff", "\xff'\\x", "\n"} {
		q := shquote.Bash(s)
		f, err := syntaxParse(q)
		if err != nil {
			t.Fatalf("%q -> %s: %v", s, q, err)
		}
		if f != s {
			t.Fatalf("%q -> %s -> %q", s, q, f)
		}
	}
}

// A FIFO (or a link to a device) planted in a module must not block the
// scan: module files are opened non-blocking and must be regular files.
func TestScanDoesNotBlockOnFIFOs(t *testing.T) {
	root := t.TempDir()
	m := filepath.Join(root, "m")
	for _, d := range []string{filepath.Join(m, "bin"), filepath.Join(m, "help")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(m, "bin", "cmd"), []byte("#!/bin/sh\n"), 0o755)
	for _, p := range []string{"module.toml", "functions.sh", "help/cmd.txt"} {
		if err := syscall.Mkfifo(filepath.Join(m, p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	z := filepath.Join(root, "z")
	os.MkdirAll(filepath.Join(z, "bin"), 0o755)
	os.Symlink("/dev/zero", filepath.Join(z, "module.toml"))
	done := make(chan []Module, 1)
	go func() { done <- Scan([]Dir{{Path: root, Owner: -1}}) }()
	var mods []Module
	select {
	case mods = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Scan blocked on a FIFO")
	}
	if len(mods) != 2 {
		t.Fatalf("got %d modules, want m and z", len(mods))
	}
	for _, mod := range mods {
		if mod.OK() || !strings.Contains(mod.Err().Error(), "module.toml: not a regular file") {
			t.Errorf("%s: %v, want module.toml refused as not a regular file", mod.Dir, mod.Err())
		}
	}
	// Help of a FIFO does not block either.
	mods[0].Problems = nil
	mods[0].Commands = []Command{{Name: "cmd"}}
	hd := make(chan error, 1)
	go func() { _, err := mods[0].Help("cmd"); hd <- err }()
	select {
	case err := <-hd:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("help from a FIFO: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Help blocked on a FIFO")
	}
}
