package copier

import (
	"strings"
	"testing"
)

// TestCheckNameRefusesPaths: a directory listing from a hostile host that
// names "..", "a/b" or an absolute path cannot place files outside the
// destination; plain names (with dots, spaces, anything else) pass.
func TestCheckNameRefusesPaths(t *testing.T) {
	for _, n := range []string{"", ".", "..", "../x", "a/b", "/etc/passwd", "x\x00y"} {
		err := checkName(localFS{}, "/src", n)
		if err == nil || !strings.Contains(err.Error(), "/src") {
			t.Errorf("name %q: %v, want a refusal naming the directory", n, err)
		}
	}
	for _, n := range []string{"a", ".hidden", "..x", "x..", "with space", "ünï"} {
		if err := checkName(localFS{}, "/src", n); err != nil {
			t.Errorf("name %q refused: %v", n, err)
		}
	}
}
