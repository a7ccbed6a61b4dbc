package runspace

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The standard stream names are the command's streams, not the process's.
func TestStandardStreamNames(t *testing.T) {
	r := newRunspace(t, Options{})
	for _, tt := range []struct {
		script, stdin, out, errOut string
		code                       int
	}{
		{"source /dev/stdin", "x=7; echo sourced $x\n", "sourced 7\n", "", 0},
		{"echo $x", "", "7\n", "", 0}, // the sourced script ran in the runspace
		{". /dev/fd/0", "echo dotted; (exit 3)\n", "dotted\n", "", 3},
		{"cat </dev/stdin", "through cat\n", "through cat\n", "", 0},
		{"read v </proc/self/fd/0; echo got $v", "line\n", "got line\n", "", 0},
		{"echo o >/dev/stdout; echo e >/dev/stderr; echo e2 >>/dev/fd/2", "", "o\n", "e\ne2\n", 0},
		{"sh -c 'echo child >/dev/stderr' 2>/dev/stdout", "", "child\n", "", 0},
	} {
		var out, errb bytes.Buffer
		code, err := r.Run(context.Background(), tt.script, Streams{Stdin: strings.NewReader(tt.stdin), Stdout: &out, Stderr: &errb})
		if err != nil || code != tt.code || out.String() != tt.out || errb.String() != tt.errOut {
			t.Errorf("%q: code %d (%v) stdout %q stderr %q, want %d %q %q", tt.script, code, err, out.String(), errb.String(), tt.code, tt.out, tt.errOut)
		}
	}
}
