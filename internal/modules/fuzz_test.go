package modules

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tether-sh/tether/internal/shquote"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// syntaxParse expands one quoted word back to its value, as the session's
// interpreter expands a command's argument (Fields: with quote removal,
// which Literal does not do for a backslash outside quotes).
func syntaxParse(word string) (string, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader("x "+word), "")
	if err != nil {
		return "", err
	}
	call := f.Stmts[0].Cmd.(*syntax.CallExpr)
	fields, err := expand.Fields(&expand.Config{}, call.Args[1])
	if err != nil {
		return "", err
	}
	if len(fields) != 1 {
		return "", fmt.Errorf("%s expands to %d fields", word, len(fields))
	}
	return fields[0], nil
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("name = \"net\"\nversion = \"1.0\"\ndescription = \"d\"\n"))
	f.Add([]byte("name = \n"))
	f.Add([]byte("name = \"a\"\nversion = \"1\"\n[x]\ny = 1\n"))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !validModule().MatchString(m.Name) || m.Version == "" || strings.ContainsAny(m.Version, " \t\r\n") || !utf8.ValidString(m.Description) {
			t.Fatalf("accepted bad manifest %+v", m)
		}
	})
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a b", "$(x)", "\xff\n'", "'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		q := shquote.Bash(s)
		got, err := syntaxParse(q)
		if err != nil {
			t.Fatalf("%q quoted as %s: %v", s, q, err)
		}
		if got != s {
			t.Fatalf("%q quoted as %s reads back as %q", s, q, got)
		}
	})
}

func FuzzParseFunctions(f *testing.F) {
	f.Add([]byte("a() { :; }\nfunction b { :; }\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseFunctions(bytes.Clone(b))
	})
}
