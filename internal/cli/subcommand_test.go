package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestSubcommand(t *testing.T) {
	root := newRoot(&Env{Getenv: func(string) string { return "" }}, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"invoke", "h/s", "true"}, "invoke"},
		{[]string{"-i", "invoke", "list"}, "list"}, // a key file named invoke
		{[]string{"-iKEY", "invoke"}, "invoke"},
		{[]string{"--identity", "k", "--user=u", "-l", "bob", "--known-hosts", "kh", "--connect-timeout", "5", "invoke"}, "invoke"},
		{[]string{"-J", "j", "-F", "f", "--ssh-option", "A=b", "-p", "22", "--port", "22", "--port=1", "invoke"}, "invoke"},
		{[]string{"-h", "invoke"}, ""},
		{[]string{"--version"}, ""},
		{[]string{"--nope", "invoke"}, ""},
		{[]string{"--", "invoke"}, ""},
		{[]string{"-i"}, ""},
		{nil, ""},
	} {
		if got := subcommand(root, tc.args); got != tc.want {
			t.Errorf("subcommand(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// The tree built for invoke alone answers as the whole tree does.
func TestInvokeTreeAnswersAsTheWholeTree(t *testing.T) {
	for _, args := range [][]string{
		{"invoke", "--help"},
		{"invoke"},
		{"-i", "k", "invoke", "--nope", "h/s", "true"},
		{"invoke", "h/s"},
		{"invoke", "--fold", "--json", "h/s", "true"},
		{"-p", "x", "invoke", "h/s", "true"},
	} {
		var outs, errs [2]string
		var codes [2]int
		for i, treeArgs := range [][]string{args, nil} { // nil: the whole tree
			var out, errb bytes.Buffer
			env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
			root := newRoot(env, treeArgs)
			if n := len(root.Commands()); (i == 0) != (n <= 2) { // invoke (+ cobra's help)
				t.Fatalf("%q: tree %d has %d commands", args, i, n)
			}
			root.SetArgs(args)
			root.SetOut(&out)
			root.SetErr(&errb)
			err := root.Execute()
			codes[i] = exitStatus(env, err)
			outs[i], errs[i] = out.String(), errb.String()
		}
		if codes[0] != codes[1] || outs[0] != outs[1] || errs[0] != errs[1] {
			t.Errorf("%q: invoke tree %d %q %q; whole tree %d %q %q", args, codes[0], outs[0], errs[0], codes[1], outs[1], errs[1])
		}
	}
}
