package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

func TestParseFile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
		err  string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "comments only", in: "# nothing\n\n", want: map[string]string{}},
		{name: "natural types", in: `
# policy
AllowRemoteShellAccess = false
IdleTimeout = "30m"
MaxShellRunTime = "unlimited"
MaxShellsPerUser = 5
MaxConnections = "unlimited"
MaxProcessesPerShell = 0
OutputBufferingMode = "drop"
`, want: map[string]string{
			"AllowRemoteShellAccess": "false", "IdleTimeout": "30m", "MaxShellRunTime": "unlimited",
			"MaxShellsPerUser": "5", "MaxConnections": "unlimited", "MaxProcessesPerShell": "unlimited",
			"OutputBufferingMode": "drop",
		}},
		{name: "strings for numbers and case-insensitive names", in: "maxshellsperuser = \"7\"\n'IdleTimeout' = '1h'\n",
			want: map[string]string{"MaxShellsPerUser": "7", "IdleTimeout": "1h"}},
		{name: "bad duration", in: "MaxShellsPerUser = 5\nIdleTimeout = \"2x\"\n",
			err: `line 2: IdleTimeout: "2x" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{name: "duration as bare integer", in: "IdleTimeout = 7200\n",
			err: `line 1: IdleTimeout: "7200" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{name: "negative", in: "\n\nMaxShellsPerUser = -1\n",
			err: `line 3: MaxShellsPerUser: "-1" is negative (use 0 or "unlimited" for no limit)`},
		{name: "float", in: "MaxOutputBufferMB = 1.5\n",
			err: `line 1: MaxOutputBufferMB: "1.5" is not a whole number (use e.g. 64)`},
		{name: "unknown key", in: "IdleTimeout = \"1h\"\nIdelTimeout = \"2h\"\n",
			err: `line 2: unknown setting "IdelTimeout" (did you mean IdleTimeout?)`},
		{name: "duplicate by case", in: "IdleTimeout = \"1h\"\nidletimeout = \"2h\"\n",
			err: `line 2: IdleTimeout is set twice (names are case-insensitive)`},
		{name: "table", in: "IdleTimeout = \"1h\"\n[limits]\nMaxShellsPerUser = 3\n",
			err: `line 2: "limits" is a table; settings files are flat: one Key = value per line`},
		{name: "dotted key", in: "a.b = 1\n",
			err: `line 1: "a" is a table; settings files are flat: one Key = value per line`},
		{name: "array", in: "MaxShellsPerUser = [1, 2]\n",
			err: `line 1: MaxShellsPerUser: value must be a string, integer or boolean, not Array`},
		{name: "datetime", in: "IdleTimeout = 1979-05-27\n",
			err: `line 1: IdleTimeout: value must be a string, integer or boolean, not Datetime`},
		{name: "toml syntax", in: "IdleTimeout = \"1h\"\nMaxShellsPerUser = \n",
			err: `line 2: expected value but found '\n' instead`},
		{name: "toml duplicate", in: "IdleTimeout = \"1h\"\nIdleTimeout = \"2h\"\n",
			err: `line 2: Key 'IdleTimeout' has already been defined.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile([]byte(tt.in))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error\n got: %v\nwant: %s", err, tt.err)
				}
				var le *LineError
				if !errors.As(err, &le) {
					t.Errorf("error is %T, want *LineError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFormatFileRoundTrip(t *testing.T) {
	all := map[string]string{}
	for _, k := range Keys() {
		all[k.Name] = k.Default
	}
	all["MaxShellsPerUser"] = "unlimited"
	all["IdleTimeout"] = "1h30m"
	for _, m := range []map[string]string{{}, {"AllowRemoteShellAccess": "false"}, all} {
		data := FormatFile(m)
		got, err := ParseFile(data)
		if err != nil {
			t.Fatalf("ParseFile(FormatFile(%v)): %v\n%s", m, err, data)
		}
		if !maps.Equal(got, m) {
			t.Fatalf("round trip: got %v, want %v\n%s", got, m, data)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "tether.toml")
	for _, content := range []string{"A = 1\n", "B = 2\n"} {
		if err := writeFileAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}
