package lineedit

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// complete says an input is complete when its braces balance.
func complete(s string) bool { return strings.Count(s, "{") == strings.Count(s, "}") }

// keys returns one chunk per Read, as a person typing does: the editor
// sees each chunk only after it handled the ones before.
type keys []string

func (k *keys) Read(p []byte) (int, error) {
	if len(*k) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*k)[0])
	(*k)[0] = (*k)[0][n:]
	if (*k)[0] == "" {
		*k = (*k)[1:]
	}
	return n, nil
}

func editor(t *testing.T, typed ...string) (*Editor, string) {
	hist := filepath.Join(t.TempDir(), "history", "vm")
	k := keys(typed)
	return NewEditor(&k, io.Discard, hist), hist
}

func TestReadInputJoinsContinuationLines(t *testing.T) {
	ed, _ := editor(t, "f() {\recho hi\r}\rls\r")
	for _, want := range []string{"f() {\necho hi\n}\n", "ls\n"} {
		got, err := ed.ReadInput(func() string { return "$ " }, complete)
		if err != nil || got != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
	if _, err := ed.ReadInput(func() string { return "$ " }, complete); err != io.EOF {
		t.Fatalf("at the end of input: %v, want io.EOF", err)
	}
}

// TestCtrlCClearsTheLine: Ctrl-C drops what was typed (also in a
// continuation line), and the dropped line is not in the history.
func TestCtrlCClearsTheLine(t *testing.T) {
	ed, hist := editor(t, "rm -rf x\x03", "if {\r", "\x03", "echo ok\r")
	got, err := ed.ReadInput(func() string { return "$ " }, complete)
	if err != nil || got != "echo ok\n" {
		t.Fatalf("got %q %v", got, err)
	}
	b, _ := os.ReadFile(hist)
	if strings.Contains(string(b), "rm") || strings.Contains(string(b), "^C") || !strings.Contains(string(b), "echo ok") {
		t.Fatalf("history file %q", b)
	}
}

func TestCtrlDInContinuationDropsTheConstruct(t *testing.T) {
	ed, _ := editor(t, "if {\r", "\x04", "pwd\r")
	got, err := ed.ReadInput(func() string { return "$ " }, complete)
	if err != nil || got != "pwd\n" {
		t.Fatalf("got %q %v", got, err)
	}
}

func TestHistoryKeepsTheLastAndRewritesALongFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "h")
	var b bytes.Buffer
	for i := range 2*HistoryMax + 10 {
		fmt.Fprintf(&b, "cmd %d\n", i)
	}
	os.WriteFile(p, b.Bytes(), 0o600)
	h := LoadHistory(p, nil)
	if h.Len() != HistoryMax || h.At(0) != fmt.Sprintf("cmd %d", 2*HistoryMax+9) {
		t.Fatalf("len %d newest %q", h.Len(), h.At(0))
	}
	data, _ := os.ReadFile(p)
	if n := strings.Count(string(data), "\n"); n != HistoryMax {
		t.Fatalf("file not rewritten to the last %d: %d lines", HistoryMax, n)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	h.Add("cmd new")
	h.Add("cmd new") // a repeat is not added
	h.Add("   ")
	if h.At(0) != "cmd new" || h.At(1) == "cmd new" {
		t.Fatalf("newest %q %q", h.At(0), h.At(1))
	}
	if h2 := LoadHistory(p, nil); h2.At(0) != "cmd new" {
		t.Fatalf("not persisted: %q", h2.At(0))
	}
}

// TestStoppedReaderTakesNothing: bytes typed after a command's reader is
// stopped go to the next reader (the line editor), not the old one.
func TestStoppedReaderTakesNothing(t *testing.T) {
	pr, pw := io.Pipe()
	in := NewInput(pr)
	r1 := in.Reader()
	pw.Write([]byte("a"))
	buf := make([]byte, 8)
	if n, err := r1.Read(buf); n != 1 || err != nil || buf[0] != 'a' {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	r1.Stop()
	if n, err := r1.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("stopped reader read %q %v", buf[:n], err)
	}
	r2 := in.Reader()
	go pw.Write([]byte("b"))
	if n, err := r2.Read(buf); n != 1 || err != nil || buf[0] != 'b' {
		t.Fatalf("next reader got %q %v", buf[:n], err)
	}
	pw.Close()
}

func TestWriters(t *testing.T) {
	var b bytes.Buffer
	n, err := CRLF{W: &b}.Write([]byte("a\nb\n"))
	if n != 4 || err != nil || b.String() != "a\r\nb\r\n" {
		t.Fatalf("CRLF wrote %q (%d, %v)", b.String(), n, err)
	}
	l := &LastByte{W: io.Discard, Last: '\n'}
	l.Write([]byte("x"))
	l.Write(nil)
	if l.Last != 'x' {
		t.Fatalf("Last %q", l.Last)
	}
}
