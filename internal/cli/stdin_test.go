package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestForwardedStdin: /dev/null is not forwarded (the command gets it as
// with -n); a file, a pipe or any other reader is.
func TestForwardedStdin(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if got := forwardedStdin(null); got != nil {
		t.Errorf("stdin /dev/null forwarded as %v", got)
	}
	file := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, r := range []io.Reader{f, pr, strings.NewReader("x")} {
		if got := forwardedStdin(r); got != r {
			t.Errorf("stdin %T not forwarded (got %v)", r, got)
		}
	}
}
