package internal_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tether-sh/tether/internal/"

// serverOnly are the packages that run commands and keep sessions: the
// client side of tether must never link them (it talks to them through
// internal/wire only).
var serverOnly = []string{"agent", "sessionhost", "runspace", "journal", "limits"}

// cliServerFiles are the files of internal/cli that serve: `tether serve`
// and `tether session-host` link the agent and the session host, `tether
// sftp-server` the SFTP server the agent starts for a user. Every
// other file of the package is client code; cliWiring (the root command)
// may name the server commands to add them.
var (
	cliServerFiles = map[string]bool{"serve.go": true, "servestop.go": true, "sessionhost_cmd.go": true, "sftpserver_cmd.go": true}
	cliWiring      = map[string]bool{"cli.go": true}
)

// deps is what `go list -deps` says pkgs link.
func deps(t *testing.T, pkgs ...string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", pkgs, err)
	}
	m := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		m[p] = true
	}
	return m
}

func checkNoServer(t *testing.T, what string, linked map[string]bool) {
	t.Helper()
	for _, s := range serverOnly {
		if linked[module+s] {
			t.Errorf("%s links internal/%s: the client must reach the session host through internal/wire only (go list -deps shows the path)", what, s)
		}
	}
}

// TestClientDeps, as tailscale's BadDeps: the client library links none
// of the server side.
func TestClientDeps(t *testing.T) {
	checkNoServer(t, "internal/client", deps(t, "./client"))
}

// TestCLIClientDeps checks the client commands of internal/cli, which
// shares its package with `serve` and `session-host`: the packages the
// client files import link none of the server side, and no client file
// uses a name declared in a server file (which would bring the server's
// imports in through the package).
func TestCLIClientDeps(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("cli/*.go")
	if err != nil {
		t.Fatal(err)
	}
	serverNames := map[string]string{} // top-level name -> server file
	clientFiles := map[string]*ast.File{}
	imports := map[string][]string{} // imported tether package -> client files
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if cliServerFiles[base] {
			for _, d := range af.Decls {
				for _, n := range declNames(d) {
					serverNames[n] = base
				}
			}
			continue
		}
		clientFiles[base] = af
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/tether-sh/tether/") {
				imports[p] = append(imports[p], base)
			}
		}
	}
	if len(clientFiles) == 0 || len(serverNames) == 0 {
		t.Fatalf("found %d client files and %d server names in internal/cli: the file lists here are stale", len(clientFiles), len(serverNames))
	}
	pkgs := make([]string, 0, len(imports))
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		checkNoServer(t, "internal/cli's client files "+strings.Join(imports[p], ", ")+" import "+strings.TrimPrefix(p, module)+", which", deps(t, p))
	}
	for base, af := range clientFiles {
		if cliWiring[base] {
			continue
		}
		ast.Inspect(af, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				if file, ok := serverNames[id.Name]; ok && !declaredIn(af, id.Name) {
					t.Errorf("internal/cli/%s uses %s, declared in the server file %s: move what both need to a client file", base, id.Name, file)
				}
			}
			return true
		})
	}
}

func declNames(d ast.Decl) []string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			return []string{d.Name.Name}
		}
	case *ast.GenDecl:
		var names []string
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names = append(names, n.Name)
				}
			case *ast.TypeSpec:
				names = append(names, s.Name.Name)
			}
		}
		return names
	}
	return nil
}

// declaredIn reports whether f declares name itself at top level (a name
// a server file happens to share is then the client file's own).
func declaredIn(f *ast.File, name string) bool {
	for _, d := range f.Decls {
		for _, n := range declNames(d) {
			if n == name {
				return true
			}
		}
	}
	return false
}

// TestNoCPUIDDetection: the binary's xxh3 (tether cp's hash) asks its
// three CPU features of internal/cpuidshim, not of klauspost/cpuid, whose
// init runs some forty CPUID instructions — each an exit to the hypervisor
// in a VM, 0.4 ms of every tether process's start (#18). The replace
// directive in go.mod does it; this fails if it is lost.
func TestNoCPUIDDetection(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Dir}}", "../cmd/tether")
	cmd.Env = append(cmd.Environ(), "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ../cmd/tether: %v", err)
	}
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		pkg, dir, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(pkg, "github.com/klauspost/cpuid") {
			continue
		}
		found = true
		if filepath.Base(dir) != "cpuidshim" {
			t.Errorf("cmd/tether links %s from %s: keep go.mod's replace of it by ./internal/cpuidshim (its CPU detection costs every process's start)", pkg, dir)
		}
	}
	if !found {
		t.Log("no package links github.com/klauspost/cpuid any more: internal/cpuidshim and go.mod's replace can go")
	}
}
