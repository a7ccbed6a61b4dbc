package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-sh/tether/internal/runspace"
)

// invoke --file: the arguments reach the script's $@ exactly in the
// session's own shell, also those it would misread in plain single quotes
// (a CR before a newline, bytes that are not UTF-8).
func TestScriptCommandArgsReachTheSessionShell(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s.sh")
	os.WriteFile(script, []byte(`for a in "$@"; do printf '[%s]' "$a"; done`+"\n"), 0o644)
	args := []string{"a b", "it's", "", "line\r\nnext", "\xff\xfe", "$(touch PWNED)"}
	text, err := scriptCommand(script, args)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	rs, err := runspace.New(runspace.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	code, err := rs.Run(context.Background(), text, runspace.Streams{Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v %s", code, err, errb.String())
	}
	var want bytes.Buffer
	for _, a := range args {
		want.WriteString("[" + a + "]")
	}
	if out.String() != want.String() {
		t.Fatalf("got %q\nwant %q", out.String(), want.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "PWNED")); err == nil {
		t.Fatal("an argument was run")
	}
}
