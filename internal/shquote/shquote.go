// Package shquote quotes strings as single words for POSIX sh and bash: the
// one quoter every part of Tether that writes shell text uses, so that no
// two parts disagree about what is safe.
package shquote

import "strings"

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

// Join quotes each word and joins them with spaces.
func Join(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
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
