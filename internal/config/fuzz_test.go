package config

import (
	"maps"
	"testing"
)

func FuzzParseFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"# comment\n",
		"IdleTimeout = \"2h\"\nMaxShellsPerUser = 5\nAllowRemoteShellAccess = false\n",
		"OutputBufferingMode = \"drop\"\nMaxConnections = \"unlimited\"\n",
		"idletimeout = '30m'\nIdleTimeout = \"1h\"\n",
		"[table]\nx = 1\n",
		"a.b.c = 1\n",
		"MaxOutputBufferMB = 1.5\n",
		"MaxOutputBufferMB = inf\n",
		"IdleTimeout = 1979-05-27T07:32:00Z\n",
		"MaxShellsPerUser = [1, {a = 2}]\n",
		"[[x]]\n[[x]]\n",
		"\"\" = 1\n",
		"IdleTimeout = \"\"\"\n2h\"\"\"\n",
		"MaxConnections = 0x10\n",
		"MaxConnections = 9223372036854775807\n",
		"IdleTimeout = \"2h\" # trailing\n",
		"IdleTimeout = \n",
		"\xff\xfe = 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseFile(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// Every accepted value is canonical and normalized, and the file
		// round-trips through FormatFile.
		for k, v := range m {
			canon, norm, err := Validate(k, v)
			if err != nil || canon != k || norm != v {
				t.Fatalf("ParseFile gave %s=%q; Validate says %q %q %v", k, v, canon, norm, err)
			}
		}
		m2, err := ParseFile(FormatFile(m))
		if err != nil || !maps.Equal(m, m2) {
			t.Fatalf("round trip of %v: %v, %v", m, m2, err)
		}
	})
}

func FuzzValidate(f *testing.F) {
	for _, k := range Keys() {
		f.Add(k.Name, k.Default)
	}
	for _, s := range [][2]string{
		{"IdleTimeout", "2x"}, {"idletimeout", "-1h"}, {"MaxShellRunTime", "9999999999h"},
		{"MaxShellsPerUser", "-1"}, {"MaxConnections", "99999999999999999999"}, {"MaxOutputBufferMB", "0"},
		{"OutputBufferingMode", "DROP"}, {"IdelTimeout", "2h"}, {"", ""}, {"\x00", "\xff"},
		{"AllowRemoteShellAccess", "yes"}, {"IdleTimeout", "1.5h"}, {"IdleTimeout", "100ns"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		canon, norm, err := Validate(name, value)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// Normalized values are fixed points and apply without panicking.
		c2, n2, err := Validate(canon, norm)
		if err != nil || c2 != canon || n2 != norm {
			t.Fatalf("Validate(%q, %q) = %q %q; again: %q %q %v", name, value, canon, norm, c2, n2, err)
		}
		k, _ := Lookup(canon)
		var s Settings
		k.set(&s, norm)
		if got := s.Value(canon); got != norm {
			t.Fatalf("%s: set %q, reads back %q", canon, norm, got)
		}
	})
}
