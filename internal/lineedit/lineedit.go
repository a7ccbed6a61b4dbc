// Package lineedit is the terminal side of tether enter: one reader of the
// local terminal shared in turn by the line editor and the running command,
// the line editor (golang.org/x/term's Terminal) with Ctrl-C clearing the
// line and a per-session history file, and writers for a raw-mode terminal.
// It knows nothing of sessions or the network.
package lineedit

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/term"

	"github.com/tether-sh/tether/internal/atomicfile"
)

// Editor reads complete inputs from a terminal with line editing.
type Editor struct {
	t    *term.Terminal
	li   *lineInput
	intr atomic.Int32
}

// NewEditor is an editor reading r (a Reader of the terminal's Input),
// echoing to w, with the history kept in historyPath.
func NewEditor(r io.Reader, w io.Writer, historyPath string) *Editor {
	e := &Editor{}
	e.li = &lineInput{r: r, intr: &e.intr}
	e.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{e.li, w}, "")
	e.t.History = LoadHistory(historyPath, func(s string) bool { return interrupted(&e.intr, s) })
	return e
}

// SetSize tells the editor the terminal's size.
func (e *Editor) SetSize(cols, rows int) { e.t.SetSize(cols, rows) }

// ReadInput reads lines until they make a complete input (complete says
// when, given the lines so far), showing prompt() first and "> " on
// continuation lines. Ctrl-C abandons what was typed; Ctrl-D on an empty
// first line (or a broken terminal) returns an error.
func (e *Editor) ReadInput(prompt func() string, complete func(string) bool) (string, error) {
	t, li := e.t, e.li
	var buf strings.Builder
	t.SetPrompt(prompt())
	li.cont.Store(false)
	for {
		line, err := t.ReadLine()
		if err != nil {
			if errors.Is(err, term.ErrPasteIndicator) {
				err = nil
			} else if buf.Len() > 0 && err == io.EOF {
				// Ctrl-D inside an unfinished construct drops it.
				buf.Reset()
				t.SetPrompt(prompt())
				t.Write([]byte("\n"))
				continue
			} else {
				return "", err
			}
		}
		if interrupted(li.intr, line) {
			li.intr.Add(-1)
			buf.Reset()
			t.SetPrompt(prompt())
			li.cont.Store(false)
			continue
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		if complete(buf.String()) {
			return buf.String(), nil
		}
		t.SetPrompt("> ")
		li.cont.Store(true)
	}
}

// interrupted reports whether line was ended by Ctrl-C (or Ctrl-D in a
// continuation line): see lineInput.
func interrupted(intr *atomic.Int32, line string) bool {
	return intr.Load() > 0 && (strings.HasSuffix(line, "^C") || strings.HasSuffix(line, "^D"))
}

// LastByte remembers the last byte written through it.
type LastByte struct {
	W    io.Writer
	Last byte
}

func (l *LastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.Last = p[len(p)-1]
	}
	return l.W.Write(p)
}

// CRLF writes to a terminal in raw mode: \n becomes \r\n.
type CRLF struct{ W io.Writer }

func (c CRLF) Write(p []byte) (int, error) {
	if _, err := c.W.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Input reads the local terminal once, for the line editor and for the
// commands in turn: a reader that is stopped never takes bytes meant for
// the next one.
type Input struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  []byte
	err  error
}

func NewInput(r io.Reader) *Input {
	in := &Input{}
	in.cond = sync.NewCond(&in.mu)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			n, err := r.Read(chunk)
			in.mu.Lock()
			in.buf = append(in.buf, chunk[:n]...)
			if err != nil {
				in.err = err
			}
			in.cond.Broadcast()
			in.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return in
}

// Reader is one reader of an Input, until Stop.
type Reader struct {
	in      *Input
	stopped bool // guarded by in.mu
}

// Reader is a new reader of in.
func (in *Input) Reader() *Reader { return &Reader{in: in} }

func (r *Reader) Read(p []byte) (int, error) {
	in := r.in
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.buf) == 0 && in.err == nil && !r.stopped {
		in.cond.Wait()
	}
	if r.stopped {
		return 0, io.EOF
	}
	if len(in.buf) == 0 {
		return 0, in.err
	}
	n := copy(p, in.buf)
	in.buf = in.buf[n:]
	return n, nil
}

// Stop ends r: its Read returns io.EOF, and takes no more bytes.
func (r *Reader) Stop() {
	r.in.mu.Lock()
	r.stopped = true
	r.in.cond.Broadcast()
	r.in.mu.Unlock()
}

// lineInput feeds the line editor. term.Terminal ends ReadLine on Ctrl-C
// as on Ctrl-D; to clear the line instead, Ctrl-C is typed as "go to end,
// ^C, Enter", and the line it ends is dropped.
//
// In a continuation line Ctrl-D abandons the unfinished construct the same
// way (term.Terminal would read the same Ctrl-D again after returning
// io.EOF for it).
type lineInput struct {
	r       io.Reader
	pending []byte
	intr    *atomic.Int32
	cont    atomic.Bool // reading a continuation line
}

func (l *lineInput) Read(p []byte) (int, error) {
	if len(l.pending) == 0 {
		b := make([]byte, len(p))
		n, err := l.r.Read(b)
		if n == 0 {
			return 0, err
		}
		for _, c := range b[:n] {
			if c == 3 || (c == 4 && l.cont.Load()) {
				l.pending = append(l.pending, '\x05', '^', '@'+c, '\r')
				l.intr.Add(1)
				continue
			}
			l.pending = append(l.pending, c)
		}
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

// History is the line editor's history, kept in a file (one per session);
// it is a term.History.
type History struct {
	path    string
	skip    func(string) bool
	entries []string // oldest first
}

// HistoryMax is how many entries a History keeps.
const HistoryMax = 1000

// LoadHistory reads the history at path; entries for which skip is true
// are not added.
func LoadHistory(path string, skip func(string) bool) *History {
	h := &History{path: path, skip: skip}
	b, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines {
		if l != "" {
			h.entries = append(h.entries, l)
		}
	}
	if len(h.entries) > HistoryMax {
		h.entries = h.entries[len(h.entries)-HistoryMax:]
		if len(lines) > 2*HistoryMax {
			// Best effort: a failed rewrite leaves the long file, read again next time.
			atomicfile.WriteFile(path, []byte(strings.Join(h.entries, "\n")+"\n"), 0o600)
		}
	}
	return h
}

// Add appends entry (not blank, not a repeat) to the history and its file.
func (h *History) Add(entry string) {
	if strings.TrimSpace(entry) == "" || (h.skip != nil && h.skip(entry)) {
		return
	}
	if n := len(h.entries); n > 0 && h.entries[n-1] == entry {
		return
	}
	h.entries = append(h.entries, entry)
	if len(h.entries) > HistoryMax {
		h.entries = h.entries[1:]
	}
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(h.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	f.WriteString(entry + "\n")
	f.Close()
}

// Len is the number of entries.
func (h *History) Len() int { return len(h.entries) }

// At is the i-th entry, newest first.
func (h *History) At(i int) string { return h.entries[len(h.entries)-1-i] }
