package bash

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestStatelessClassifier(t *testing.T) {
	for script, want := range map[string]string{
		"true":                 "true",
		"ls -la /tmp\n":        "ls",
		"  make -j4 CC=gcc  ":  "make",
		"[ -f /etc/passwd ]":   "[",
		"ls *.go":              "ls",
		"/usr/bin/env -i true": "/usr/bin/env",
		"x=1":                  "",
		"FOO=1 ls":             "",
		"cd /tmp":              "",
		"printf x":             "",
		"export A":             "",
		"echo $HOME":           "",
		"echo `id`":            "",
		"echo 'a'":             "",
		"ls; ls":               "",
		"ls | wc":              "",
		"ls >x":                "",
		"ls &":                 "",
		"ls\nls":               "",
		"%1":                   "",
		"f() { :; }":           "",
		"ls {a,b}":             "",
		"ls ~":                 "",
		"ls # c":               "",
		"":                     "",
	} {
		if got := stateless(script); got != want {
			t.Errorf("stateless(%q) = %q, want %q", script, got, want)
		}
	}
}

// snapSeq is the sequence number of the newest complete snapshot.
func snapSeq(t *testing.T, s *Shell) int {
	t.Helper()
	_, seq, _, ok := s.latestSnapshot()
	if !ok {
		t.Fatal("no snapshot")
	}
	return seq
}

// TestStatelessCommandKeepsSnapshot: a stateless command takes no
// snapshot, and a kill -9 after it restores the state before it, which is
// the state after it; the notice names the last command.
func TestStatelessCommandKeepsSnapshot(t *testing.T) {
	s := newShell(t, Options{NoProfile: true})
	run(t, s, "x=1; cd /tmp", "")
	before := s.seq
	run(t, s, "true", "")
	// bash snapshots after its report: once the next command reported,
	// the previous one's snapshot is complete.
	run(t, s, "ls /", "")
	if got := snapSeq(t, s); got != before {
		t.Fatalf("a stateless command took a snapshot: newest is %d, want %d", got, before)
	}
	seq := s.seq
	run(t, s, "kill -9 $$", "")
	if n := s.Notices(); !strings.Contains(n, fmt.Sprintf("after command %d ", seq)) {
		t.Fatalf("notice %q does not name command %d", n, seq)
	}
	if r := run(t, s, "echo $x $PWD", ""); r.out != "1 /tmp\n" {
		t.Fatalf("restored: %+v", r)
	}
	run(t, s, "y=2", "")
	seq = s.seq
	run(t, s, "true", "")
	if got := snapSeq(t, s); got != seq {
		t.Fatalf("an assignment took no snapshot: newest is %d, want %d", got, seq)
	}
}

// TestStatelessGuards: a name that is a function or an alias, a DEBUG
// trap and another PROMPT_COMMAND may change the state: each snapshots, and
// the state survives kill -9.
func TestStatelessGuards(t *testing.T) {
	for _, c := range []struct{ name, setup, cmd string }{
		{"function", "ls() { x=changed; }", "ls"},
		{"alias", "shopt -s expand_aliases; alias ls='x=changed'", "ls"},
		// (A DEBUG trap outlives the sourced command file only with
		// functrace.)
		{"debug trap", "set -T; trap '[[ $BASH_COMMAND == true ]] && x=changed' DEBUG", "true"},
		{"err trap", "trap 'x=changed' ERR", "false"},
		{"prompt command", "PROMPT_COMMAND='x=changed'", "true"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newShell(t, Options{NoProfile: true})
			run(t, s, "x=before", "")
			run(t, s, c.setup, "")
			run(t, s, "x=before", "")
			run(t, s, c.cmd, "")
			run(t, s, "kill -9 $$", "")
			if r := run(t, s, "echo $x", ""); r.out != "changed\n" {
				t.Fatalf("after %q, %q and kill -9: x is %q, want changed", c.setup, c.cmd, r.out)
			}
		})
	}
}

// TestNoFilesPerCommand: the command file, the snapshots and the pipes make
// no names in the state directory (memfds and pipes by /proc path: on ext4
// names and truncating rewrites cost a journalled metadata operation each).
func TestNoFilesPerCommand(t *testing.T) {
	dir := t.TempDir()
	s := newShell(t, Options{NoProfile: true, StateDir: dir})
	run(t, s, "x=1; echo out; echo err >&2", "")
	run(t, s, "cat", "in")
	run(t, s, "kill -9 $$", "")
	run(t, s, "echo $x", "")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("state directory holds %v", names)
	}
}
