// Package shquote quotes strings as single words for POSIX sh and bash: the
// one quoter every part of Tether that writes shell text uses, so that no
// two parts disagree about what is safe.
package shquote

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Quote returns s as one word that sh, dash, bash and zsh all read back as
// exactly s: unchanged when it holds only characters no shell treats
// specially, else in single quotes (inside which nothing is special), with
// each ' written as '\”. Any bytes are kept (invalid UTF-8 too); NUL, which
// no shell word can hold, is dropped.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	s = strings.ReplaceAll(s, "\x00", "")
	if s == "" {
		return "''"
	}
	if isPlain(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Bash returns s as one word for bash and for the session's shell
// (internal/runspace, mvdan.cc/sh), which reads its input as UTF-8 only and
// refuses any other byte, even inside single quotes, and drops a carriage
// return before a newline even there. Valid UTF-8 without CR is quoted as
// Quote does; any other string is written in ANSI-C quotes,
// every byte that is not printable ASCII (and ' and \) as \xNN. Use Quote
// for text that /bin/sh reads (dash before 0.5.13 has no $'...'), Bash for
// text that a Tether session or bash reads. NUL is dropped, as in Quote.
func Bash(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	if utf8.ValidString(s) && !strings.Contains(s, "\r") {
		return Quote(s)
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\'' && c != '\\' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	b.WriteString("'")
	return b.String()
}

func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_./,:+@%=", c) >= 0:
			// zsh expands a word starting with '=' (EQUALS).
			if c == '=' && i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
