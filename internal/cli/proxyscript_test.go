package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-sh/tether/internal/remoting"
)

// A proxy names the tether binary on its #! line where it can, so the
// kernel starts tether without sh; elsewhere sh runs its exec line.
func TestProxyShebang(t *testing.T) {
	e := remoting.Entry{Name: "btrue", Path: "/home/a/.local/share/tether/bin/btrue"}
	first := func(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }
	if got := first(remoting.ProxyScript("/usr/local/bin/tether", "/home/a/.config/tether/imports.json", e)); got != "#!/usr/local/bin/tether proxy-script" {
		t.Errorf("first line %q", got)
	}
	for _, exe := range []string{"/opt/my tools/tether", "tether", "/" + strings.Repeat("x", 130)} {
		if got := first(remoting.ProxyScript(exe, "/m.json", e)); got != "#!/bin/sh" {
			t.Errorf("exe %q: first line %q, want #!/bin/sh", exe, got)
		}
	}
}

// proxy-script reads the manifest and the proxy's key from the exec line
// as sh would split it, whatever the paths hold.
func TestReadProxyScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "it's a $(dir) \"x\"")
	os.MkdirAll(dir, 0o755)
	for _, manifest := range []string{filepath.Join(dir, "imports.json"), "/plain/imports.json", filepath.Join(dir, "a'b `c` $d.json")} {
		e := remoting.Entry{Name: "cmd", Path: filepath.Join(dir, "cmd")}
		if err := os.WriteFile(e.Path, []byte(remoting.ProxyScript("/usr/bin/tether", manifest, e)), 0o755); err != nil {
			t.Fatal(err)
		}
		imports, path, err := readProxyScript(e.Path)
		if err != nil || imports != manifest || path != e.Path {
			t.Fatalf("readProxyScript = %q, %q, %v; want %q, %q", imports, path, err, manifest, e.Path)
		}
	}
	for name, body := range map[string]string{
		"no marker": "#!/usr/bin/tether proxy-script\nexec /usr/bin/tether proxy --imports /m --path /p -- \"$@\"\n",
		"no exec":   "#!/usr/bin/tether proxy-script\n# tether proxy: x (made by tether import)\n",
		"old":       "#!/bin/sh\n# tether proxy: trace\nexec tether proxy --host vm --module net --command trace\n",
		"unclosed":  "#!/usr/bin/tether proxy-script\n# tether proxy: x\nexec /t proxy --imports '/m --path /p\n",
	} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(body), 0o755)
		if _, _, err := readProxyScript(p); err == nil || !strings.Contains(err.Error(), "is not a proxy made by tether import") {
			t.Errorf("%s: readProxyScript err = %v", name, err)
		}
	}
}

// `tether proxy-script PROXY ARGS` never runs the exec line (sh's way): it
// looks the proxy up in the manifest the line names.
func TestProxyScriptUsesTheManifest(t *testing.T) {
	env, out, errb := importTestEnv(t)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "imports.json")
	e := remoting.Entry{Name: "cmd", Path: filepath.Join(dir, "cmd")}
	os.WriteFile(e.Path, []byte(remoting.ProxyScript("/nonexistent/tether", manifest, e)), 0o755)
	code := Run(context.Background(), env, []string{"proxy-script", e.Path, "--help", "-l"})
	if code != 255 || out.Len() != 0 || !strings.Contains(errb.String(), e.Path) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errb)
	}
	if strings.Contains(errb.String(), "unknown") || strings.Contains(errb.String(), "usage:") {
		t.Fatalf("the command's arguments were parsed as tether flags: %s", errb)
	}
}
