package bash

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

type corpusCase struct {
	name  string
	cmds  []string
	stdin string
}

func readCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	var cur *corpusCase
	var buf []string
	inStdin := false
	flush := func() {
		if cur == nil {
			return
		}
		text := strings.Join(buf, "\n") + "\n"
		if inStdin {
			cur.stdin = text
		} else {
			cur.cmds = append(cur.cmds, text)
		}
		buf, inStdin = nil, false
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "=== "):
			flush()
			cases = append(cases, corpusCase{name: l[4:]})
			cur = &cases[len(cases)-1]
		case l == "--- cmd":
			flush()
		case l == "--- stdin":
			flush()
			inStdin = true
		default:
			buf = append(buf, l)
		}
	}
	flush()
	return cases
}

// knownDifferences are the corpus cases whose result differs from
// `bash -c`, with why; docs/shell-differences.md lists them.
var knownDifferences = map[string]string{
	"caller": "commands are sourced: a function called at top level has a caller frame (\"source\"), bash -c has none",
}

// TestCorpus runs every case in a fresh Shell and in `bash -c` and compares
// stdout, whether there was stderr, and the exit status.
func TestCorpus(t *testing.T) {
	bashPath := needBash(t)
	for _, c := range readCorpus(t) {
		t.Run(c.name, func(t *testing.T) {
			// Reference: one bash -c of all commands (aliases on, as in an
			// interactive shell).
			refDir := t.TempDir()
			ref := exec.Command(bashPath, "--noprofile", "--norc", "-c", "shopt -s expand_aliases\n"+strings.Join(c.cmds, ""))
			ref.Env = append(os.Environ(), "TMPD="+refDir)
			ref.Dir = refDir
			ref.Stdin = strings.NewReader(c.stdin)
			var ro, re strings.Builder
			ref.Stdout, ref.Stderr = &ro, &re
			rcode := 0
			if err := ref.Run(); err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					t.Fatal(err)
				}
				rcode = ee.ExitCode()
				if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
					rcode = 128 + int(ws.Signal())
				}
			}

			dir := t.TempDir()
			s := newShell(t, Options{NoProfile: true, Dir: dir, Env: append(os.Environ(), "TMPD="+dir)})
			var out, errs string
			code := 0
			for i, cmd := range c.cmds {
				in := ""
				if i == len(c.cmds)-1 {
					in = c.stdin
				}
				r := run(t, s, cmd, in)
				out += r.out
				errs += r.err
				code = r.code
			}
			same := out == ro.String() && (errs != "") == (re.String() != "") && code == rcode
			why, known := knownDifferences[c.name]
			switch {
			case !same && !known:
				t.Errorf("differs from bash -c:\nshell: out %q err %q status %d\nbash:  out %q err %q status %d", out, errs, code, ro.String(), re.String(), rcode)
			case same && known:
				t.Errorf("listed as differing (%s) but now the same as bash -c: remove it from knownDifferences and the docs", why)
			case !same:
				t.Logf("known difference (%s):\nshell: out %q err %q status %d\nbash:  out %q err %q status %d", why, out, errs, code, ro.String(), re.String(), rcode)
			}
		})
	}
}
