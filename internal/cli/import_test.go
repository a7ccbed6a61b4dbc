package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/remoting"
	"github.com/tether-sh/tether/internal/wire"
)

// importTestEnv is an Env with its own HOME and captured output.
func importTestEnv(t *testing.T) (*Env, *bytes.Buffer, *bytes.Buffer) {
	home := t.TempDir()
	var out, errb bytes.Buffer
	vars := map[string]string{"HOME": home, "PATH": "/usr/bin:/bin", "USER": "alice"}
	return &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}, &out, &errb
}

func TestImportUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import"}, "import needs TARGET and MODULE\nusage: tether import"},
		{[]string{"import", "vm"}, "import needs TARGET and MODULE"},
		{[]string{"import", "--list", "vm"}, "--list takes no arguments"},
		{[]string{"import", "--remove"}, "--remove needs TARGET MODULE or proxy names"},
		{[]string{"import", "--prefix", "a b", "vm", "net"}, `bad --prefix "a b"`},
		{[]string{"import", "vm", "../net"}, `bad module name "../net"`},
		{[]string{"import", "--remove", "nothing-here"}, "no imported command matches nothing-here"},
		{[]string{"proxy"}, "proxy needs --imports and --path\nusage: tether proxy"},
		{[]string{"proxy", "--host", "vm", "--module", "a;b", "--command", "c"}, "older tether import"},
	} {
		env, out, errb := importTestEnv(t)
		code := Run(context.Background(), env, tc.args)
		if code != 255 || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("tether %s: exit %d, stdout %q, stderr %q; want 255 and %q", strings.Join(tc.args, " "), code, out, errb, tc.want)
		}
	}
}

func TestImportListEmptyAndOld(t *testing.T) {
	env, out, errb := importTestEnv(t)
	if err := runImport(context.Background(), env, &globals{}, importOpts{list: true}, nil); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "nothing imported") {
		t.Fatalf("stdout %q stderr %q", out, errb)
	}
	// One proxy of the first format in the manifest: listed, and named as old.
	dir := t.TempDir()
	m := importManifest(env)
	made, err := remoting.Plan(wire.ModuleInfo{Name: "net", Version: "1.0", Commands: []string{"ping", "trace"}}, remoting.Source{Host: "alice@vm", Dir: dir}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Install("/bin/tether", made, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "trace"), []byte("#!/bin/sh\n# tether proxy: trace\nexec tether proxy --host vm --module net --command trace\n"), 0o755)
	out.Reset()
	errb.Reset()
	if err := runImport(context.Background(), env, &globals{}, importOpts{list: true}, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "NAME") || !strings.Contains(out.String(), "ping") || !strings.Contains(errb.String(), "1 proxy was made by an older tether import (trace)") {
		t.Fatalf("stdout %q stderr %q", out, errb)
	}
}

// TestImportRemoveByName removes a proxy without a host to reach: the
// proxies of a host with no session named are closed only when none is left.
func TestImportRemoveByName(t *testing.T) {
	env, out, _ := importTestEnv(t)
	dir := t.TempDir()
	made, _ := remoting.Plan(wire.ModuleInfo{Name: "net", Version: "1.0", Commands: []string{"ping", "trace"}}, remoting.Source{Host: "alice@vm", Dir: dir}, time.Now())
	if err := importManifest(env).Install("/bin/tether", made, false); err != nil {
		t.Fatal(err)
	}
	if err := runImport(context.Background(), env, &globals{}, importOpts{remove: true}, []string{"ping"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "removed "+filepath.Join(dir, "ping")+" (ping of module net 1.0 on alice@vm)") {
		t.Fatalf("stdout %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ping")); err == nil {
		t.Fatal("proxy still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "trace")); err != nil {
		t.Fatalf("the other proxy went too: %v", err)
	}
}

func TestProxyNotInManifest(t *testing.T) {
	env, _, _ := importTestEnv(t)
	m := filepath.Join(t.TempDir(), "imports.json")
	err := runProxy(context.Background(), env, &globals{}, proxyOpts{imports: m, path: "/x/ping"}, nil)
	if err == nil || !strings.Contains(err.Error(), "/x/ping is not in "+m+" any more; import it again") {
		t.Fatalf("got %v", err)
	}
}
