// Package shellsyntax answers questions about shell input that need only
// the parser, not the interpreter: the client's line editor (tether enter)
// asks whether the lines typed so far make a complete command, and must
// not link the session host's shell interpreter to know.
package shellsyntax

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// IsComplete reports whether script is a complete input, or needs more
// lines: an unfinished if/for/while/case or function, an open quote or
// command substitution, a here-document without its terminator, a trailing
// pipe, && or || or a trailing backslash. A script with a syntax error that
// more input cannot fix is complete, and that error is returned too.
func IsComplete(script string) (bool, error) {
	p := syntax.NewParser(syntax.Variant(syntax.LangBash))
	incomplete := false
	var perr error
	for _, err := range p.InteractiveSeq(strings.NewReader(script)) {
		if err != nil {
			perr = err
			break
		}
		incomplete = p.Incomplete()
	}
	if perr != nil {
		if syntax.IsIncomplete(perr) {
			return false, nil
		}
		return true, perr
	}
	if incomplete {
		return false, nil
	}
	// A backslash-newline at the very end is a line continuation that the
	// parser accepts at EOF.
	trimmed := strings.TrimSuffix(script, "\n")
	n := len(trimmed) - len(strings.TrimRight(trimmed, `\`))
	return n%2 == 0, nil
}
