package shquote

import (
	"os/exec"
	"strings"
	"testing"
)

var cases = []string{
	"", "plain", "two words", "it's", `"double"`, "$(touch /tmp/x)", "`id`", "a\nb", "tab\there",
	"back\\slash", "*", "?", "[a]", "~", "~user", "#comment", "a;b", "a|b", "a&b", "<x>", "!", "{a,b}",
	"=cmd", "x=1", "-n", "--flag=value", "\xff\xfe invalid utf-8", "日本語", "'", "''", "\\'", "$HOME", "${x}",
}

// TestQuoteRoundTripsThroughShells checks every case with the real shells
// on this machine: printf '%s' WORD prints exactly the input.
func TestQuoteRoundTripsThroughShells(t *testing.T) {
	var shells []string
	for _, sh := range []string{"sh", "dash", "bash", "zsh"} {
		if p, err := exec.LookPath(sh); err == nil {
			shells = append(shells, p)
		}
	}
	if len(shells) == 0 {
		t.Skip("no shell on PATH")
	}
	for _, sh := range shells {
		for _, c := range cases {
			out, err := exec.Command(sh, "-c", "printf '%s' "+Quote(c)).Output()
			if err != nil {
				t.Errorf("%s: %q quoted as %s: %v", sh, c, Quote(c), err)
				continue
			}
			if string(out) != c {
				t.Errorf("%s: %q quoted as %s came back as %q", sh, c, Quote(c), out)
			}
		}
	}
}

// TestBashRoundTripsThroughBash: Bash's words read back in bash (and zsh,
// which also has $'...'); internal/modules tests them in the session's shell.
func TestBashRoundTripsThroughBash(t *testing.T) {
	var shells []string
	for _, sh := range []string{"bash", "zsh"} {
		if p, err := exec.LookPath(sh); err == nil {
			shells = append(shells, p)
		}
	}
	if len(shells) == 0 {
		t.Skip("no bash on PATH")
	}
	for _, sh := range shells {
		for _, c := range append(cases, "\xff", "\xff'\\x", "a\xfe\nb") {
			out, err := exec.Command(sh, "-c", "printf '%s' "+Bash(c)).Output()
			if err != nil || string(out) != c {
				t.Errorf("%s: %q quoted as %s came back as %q (%v)", sh, c, Bash(c), out, err)
			}
		}
	}
}

func TestBashOnlyEscapesInvalidUTF8(t *testing.T) {
	if got := Bash("it's"); got != Quote("it's") {
		t.Fatalf("valid UTF-8: got %s, want %s", got, Quote("it's"))
	}
	if got := Bash("\xff'"); got != `$'\xff\x27'` {
		t.Fatalf("got %s", got)
	}
	if got := Bash("a\x00\xff"); got != `$'a\xff'` {
		t.Fatalf("NUL not dropped: %s", got)
	}
}

func TestQuoteDropsNUL(t *testing.T) {
	if got := Quote("a\x00b"); got != "ab" {
		t.Fatalf("got %q", got)
	}
	if got := Quote("\x00"); got != "''" {
		t.Fatalf("got %q", got)
	}
}

func FuzzQuote(f *testing.F) {
	for _, c := range cases {
		f.Add(c)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		f.Skip("no bash")
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.ReplaceAll(s, "\x00", "")
		out, err := exec.Command(bash, "-c", "printf '%s' "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("%q quoted as %s: %v", s, Quote(s), err)
		}
		if string(out) != want {
			t.Fatalf("%q quoted as %s came back as %q", s, Quote(s), out)
		}
	})
}
