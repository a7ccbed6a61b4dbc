package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pathFollowing are the file APIs that take a path and follow symlinks in
// it (or act on what a path names now, which a user can change between a
// check and a use). Code under agent must not call them on anything below
// a user's directory: it uses internal/safefs (dir fds, no symlinks,
// fstat-checked bounded reads) or does the work as the user
// (safefs.AsUser). A call on a root-owned path is allowed when the line, or
// the line above it, says why in a comment starting "rootpath:".
var pathFollowing = map[string][]string{
	"os": {"Open", "OpenFile", "ReadFile", "WriteFile", "Create", "CreateTemp", "Mkdir", "MkdirAll", "MkdirTemp",
		"Chown", "Lchown", "Chmod", "Chtimes", "Remove", "RemoveAll", "Rename", "Stat", "Lstat", "ReadDir",
		"Readlink", "Symlink", "Link", "Truncate", "DirFS", "Chdir"},
	"path/filepath":         {"Glob", "Walk", "WalkDir", "EvalSymlinks", "Abs"},
	"io/ioutil":             {"ReadFile", "WriteFile", "ReadDir", "TempFile", "TempDir"},
	"syscall":               {"Open", "Stat", "Lstat", "Chown", "Lchown", "Chmod", "Unlink", "Rmdir", "Rename", "Mkdir", "Creat"},
	"golang.org/x/sys/unix": {"Open", "Stat", "Lstat", "Chown", "Lchown", "Chmod", "Unlink", "Rmdir", "Rename", "Mkdir", "Creat", "Access"},
}

// Allowed by design: filepath.Abs resolves no symlink and touches no file.
var pathFollowingOK = map[string]bool{"path/filepath.Abs": true}

// findPathCalls lists the unjustified path-following calls in one file.
func findPathCalls(fset *token.FileSet, f *ast.File) []string {
	names := map[string]string{} // local name -> import path
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		local := filepath.Base(p)
		if im.Name != nil {
			local = im.Name.Name
		}
		names[local] = p
	}
	justified := map[int]bool{} // lines covered by a rootpath comment
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(c.Text, "//")), "rootpath:") {
				l := fset.Position(c.Slash).Line
				justified[l], justified[l+1] = true, true
			}
		}
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		path, ok := names[id.Name]
		if !ok {
			return true
		}
		for _, fn := range pathFollowing[path] {
			if fn == sel.Sel.Name && !pathFollowingOK[path+"."+fn] {
				pos := fset.Position(call.Pos())
				if !justified[pos.Line] {
					out = append(out, pos.String()+": "+id.Name+"."+fn)
				}
			}
		}
		return true
	})
	return out
}

func TestNoPathFollowingFileWork(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, bad := range findPathCalls(fset, f) {
			t.Errorf("%s: a path-following file call in the agent; use internal/safefs or safefs.AsUser, or, for a root-owned path, say so with a // rootpath: comment", bad)
		}
	}
	if n == 0 {
		t.Fatal("no agent source files found")
	}
}

// The lint must catch what ba048d0's sessions.go did.
func TestPathLintCatchesOldCode(t *testing.T) {
	const old = `package agent
import (
	"os"
	fp "path/filepath"
)
func (a *Agent) prepareUserDir(u *user.User) error {
	for _, d := range []string{ud, fp.Join(ud, ".closed")} {
		os.MkdirAll(d, 0o700)
		os.Chown(d, 1, 1)
	}
	os.Remove(a.tombstonePath(u.Username, name))
	b, _ := os.ReadFile(a.tombstonePath(user, name))
	metas, _ := fp.Glob("*")
	// rootpath: a justified one is allowed
	os.ReadFile("/etc/passwd")
	return nil
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "old.go", old, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	got := findPathCalls(fset, f)
	want := []string{"os.MkdirAll", "os.Chown", "os.Remove", "os.ReadFile", "fp.Glob"}
	if len(got) != len(want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	for i, w := range want {
		if !strings.HasSuffix(got[i], w) {
			t.Errorf("finding %d: %s, want %s", i, got[i], w)
		}
	}
}

func TestCheckPeerUID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := checkPeerUID(nc, os.Geteuid()); err != nil {
		t.Fatalf("own uid refused: %v", err)
	}
	if err := checkPeerUID(nc, os.Geteuid()+4242); err == nil {
		t.Fatal("a socket of another uid accepted")
	}
}
