package sshtransport

import (
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	h := Host{Host: "web1"}
	for _, c := range []struct {
		code   int
		stderr string
		kind   Kind
		want   string
	}{
		{255, "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n", Connect, "ssh: connect to host 127.0.0.1 port 1: Connection refused"},
		{255, "*** banner ***\ntt@127.0.0.1: Permission denied (publickey).\n", Auth, "tt@127.0.0.1: Permission denied (publickey)."},
		{255, "@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@\nOffending ED25519 key in /k:3\nHost key verification failed.\n", HostKey, "the host key of web1 has changed (ssh refused it); Offending ED25519 key in /k:3;"},
		{255, "No ED25519 host key is known for [127.0.0.1]:2 and you have requested strict checking.\nHost key verification failed.\n", HostKey, "host key verification failed for web1: No ED25519 host key is known"},
		{255, "", Connect, "ssh to web1 exited with status 255 and said nothing"},
		{127, "sh: 1: x: not found\n", Remote, "sh: 1: x: not found"},
	} {
		e := Classify(h, c.code, c.stderr)
		if e.Kind != c.kind || !strings.HasPrefix(e.Line, c.want) || strings.Contains(e.Line, "\n") {
			t.Errorf("Classify(%d, %q) = %v %q, want %v %q…", c.code, c.stderr, e.Kind, e.Line, c.kind, c.want)
		}
	}
}

func TestArgs(t *testing.T) {
	o := &Options{ConfigFile: "/c", ControlPersist: -1, Batch: true}
	got := o.Args(Host{User: "u", Host: "web1", Port: 2222}, "tether serve --stdio")
	want := []string{"-F", "/c", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-l", "u", "-p", "2222", "-T", "-e", "none", "--", "web1", "tether serve --stdio"}
	if !slices.Equal(got, want) {
		t.Fatalf("Args = %q\nwant   %q", got, want)
	}
	dir := t.TempDir()
	o = &Options{ControlDir: dir}
	a := strings.Join(o.Args(Host{Host: "web1"}, ""), " ")
	if !strings.Contains(a, "ControlMaster=auto") || !strings.Contains(a, "ControlPath="+dir+"/") || !strings.Contains(a, "ControlPersist=300") {
		t.Fatalf("no master options: %s", a)
	}
	if CheckHost(Host{Host: "-oProxyCommand=x"}) == nil {
		t.Fatal("a host starting with '-' was accepted")
	}
}

func TestForwardArgs(t *testing.T) {
	o := &Options{ControlDir: t.TempDir(), Batch: true, Extra: []string{"-J", "a"}}
	got := o.ForwardArgs(Host{Host: "bastion", Port: 2222}, "10.0.0.5:4422")
	want := []string{"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-J", "a", "-p", "2222", "-W", "10.0.0.5:4422", "--", "bastion"}
	if !slices.Equal(got, want) {
		t.Fatalf("ForwardArgs = %q\nwant          %q (no master of Tether's for a forward)", got, want)
	}
}

func TestNoteWriter(t *testing.T) {
	var out strings.Builder
	n := &noteWriter{to: &out}
	n.Write([]byte("junk\n" + NotePrefix + "first"))
	n.Write([]byte(" half\nmore junk\n" + NotePrefix + "second\n" + NotePrefix + "unfinished"))
	if got, want := out.String(), NotePrefix+"first half\n"+NotePrefix+"second\n"; got != want {
		t.Fatalf("notes passed on: %q, want %q", got, want)
	}
}
