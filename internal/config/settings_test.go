package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	want := Settings{
		AllowRemoteShellAccess:   true,
		IdleTimeout:              2 * time.Hour,
		MaxIdleTimeout:           0,
		MaxShellRunTime:          0,
		MaxConcurrentUsers:       10,
		MaxShellsPerUser:         30,
		MaxConnections:           300,
		MaxConnectionsPerUser:    50,
		MaxSessionsPerConnection: 10,
		MaxProcessesPerShell:     25,
		MaxMemoryPerShellMB:      1024,
		OutputBufferingMode:      "block",
		MaxOutputBufferMB:        64,
		DefaultShell:             defaultShell(),
	}
	if got := Defaults(); got != want {
		t.Fatalf("Defaults() = %+v, want %+v", got, want)
	}
}

func TestKeysTable(t *testing.T) {
	wantOrder := []string{"AllowRemoteShellAccess", "IdleTimeout", "MaxIdleTimeout", "MaxShellRunTime",
		"MaxConcurrentUsers", "MaxShellsPerUser", "MaxConnections", "MaxConnectionsPerUser", "MaxSessionsPerConnection", "MaxProcessesPerShell",
		"MaxMemoryPerShellMB", "OutputBufferingMode", "MaxOutputBufferMB", "DefaultShell"}
	ks := Keys()
	if len(ks) != len(wantOrder) {
		t.Fatalf("%d keys, want %d", len(ks), len(wantOrder))
	}
	d := Defaults()
	for i, k := range ks {
		if k.Name != wantOrder[i] {
			t.Errorf("key %d = %s, want %s", i, k.Name, wantOrder[i])
		}
		if k.Help == "" {
			t.Errorf("%s has no help", k.Name)
		}
		// Every default is valid and already normalized, and agrees with Defaults().
		canon, norm, err := Validate(k.Name, k.Default)
		if err != nil || canon != k.Name || norm != k.Default {
			t.Errorf("Validate(%s, %q) = %q, %q, %v", k.Name, k.Default, canon, norm, err)
		}
		if v := d.Value(k.Name); v != k.Default {
			t.Errorf("Defaults().Value(%s) = %q, want %q", k.Name, v, k.Default)
		}
	}
	// Keys returns a copy.
	ks[11].Allowed[0] = "x"
	if Keys()[11].Allowed[0] != "block" {
		t.Error("Keys() shares Allowed with the table")
	}
}

func TestLookup(t *testing.T) {
	for _, name := range []string{"IdleTimeout", "idletimeout", "IDLETIMEOUT", " IdleTimeout "} {
		k, ok := Lookup(name)
		if !ok || k.Name != "IdleTimeout" || k.Kind != KindDuration {
			t.Errorf("Lookup(%q) = %+v, %v", name, k.Name, ok)
		}
	}
	if _, ok := Lookup("IdleTimeouts2"); ok {
		t.Error("Lookup of unknown name succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, value string
		canon, norm string
		err         string
	}{
		// booleans
		{"AllowRemoteShellAccess", "true", "AllowRemoteShellAccess", "true", ""},
		{"allowremoteshellaccess", "FALSE", "AllowRemoteShellAccess", "false", ""},
		{"AllowRemoteShellAccess", "no", "AllowRemoteShellAccess", "false", ""},
		{"AllowRemoteShellAccess", "1", "AllowRemoteShellAccess", "true", ""},
		{"AllowRemoteShellAccess", "maybe", "", "", `AllowRemoteShellAccess: "maybe" is not a boolean (use true or false)`},
		// durations
		{"IdleTimeout", "2h", "IdleTimeout", "2h", ""},
		{"IdleTimeout", "120m", "IdleTimeout", "2h", ""},
		{"IdleTimeout", "90s", "IdleTimeout", "1m30s", ""},
		{"IdleTimeout", "1h30m", "IdleTimeout", "1h30m", ""},
		{"IdleTimeout", " 45m ", "IdleTimeout", "45m", ""},
		{"IdleTimeout", "unlimited", "IdleTimeout", "unlimited", ""},
		{"IdleTimeout", "Unlimited", "IdleTimeout", "unlimited", ""},
		{"IdleTimeout", "0", "IdleTimeout", "unlimited", ""},
		{"MaxShellRunTime", "0s", "MaxShellRunTime", "unlimited", ""},
		{"MaxIdleTimeout", "24h", "MaxIdleTimeout", "24h", ""},
		{"IdleTimeout", "2x", "", "", `IdleTimeout: "2x" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{"IdleTimeout", "7200", "", "", `IdleTimeout: "7200" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{"IdleTimeout", "", "", "", `IdleTimeout: "" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{"MaxShellRunTime", "99999999999h", "", "", `MaxShellRunTime: "99999999999h" is not a duration (use Go syntax like 90s, 30m, 2h, or "unlimited")`},
		{"IdleTimeout", "-5m", "", "", `IdleTimeout: "-5m" is negative (use "unlimited" for no limit)`},
		{"IdleTimeout", "500ms", "", "", `IdleTimeout: "500ms" is too short (minimum 1s, or "unlimited")`},
		// integers
		{"MaxShellsPerUser", "5", "MaxShellsPerUser", "5", ""},
		{"MaxShellsPerUser", "+7", "MaxShellsPerUser", "7", ""},
		{"MaxShellsPerUser", "0", "MaxShellsPerUser", "unlimited", ""},
		{"MaxShellsPerUser", "unlimited", "MaxShellsPerUser", "unlimited", ""},
		{"MaxMemoryPerShellMB", "1073741824", "MaxMemoryPerShellMB", "1073741824", ""},
		{"MaxShellsPerUser", "-1", "", "", `MaxShellsPerUser: "-1" is negative (use 0 or "unlimited" for no limit)`},
		{"MaxShellsPerUser", "lots", "", "", `MaxShellsPerUser: "lots" is not a whole number (use e.g. 30, or 0 or "unlimited" for no limit)`},
		{"MaxShellsPerUser", "1.5", "", "", `MaxShellsPerUser: "1.5" is not a whole number (use e.g. 30, or 0 or "unlimited" for no limit)`},
		{"MaxConnections", "2147483648", "", "", `MaxConnections: "2147483648" is too large (maximum 2147483647)`},
		{"MaxConnections", "99999999999999999999", "", "", `MaxConnections: "99999999999999999999" is too large (maximum 2147483647)`},
		{"MaxMemoryPerShellMB", "1073741825", "", "", `MaxMemoryPerShellMB: "1073741825" is too large (maximum 1073741824)`},
		{"MaxOutputBufferMB", "16", "MaxOutputBufferMB", "16", ""},
		{"MaxOutputBufferMB", "0", "", "", `MaxOutputBufferMB: "0" is too small (minimum 1)`},
		{"MaxOutputBufferMB", "-3", "", "", `MaxOutputBufferMB: "-3" is negative (minimum 1)`},
		{"MaxOutputBufferMB", "unlimited", "", "", `MaxOutputBufferMB: "unlimited" is not a whole number (use e.g. 64)`},
		// enum
		{"OutputBufferingMode", "drop", "OutputBufferingMode", "drop", ""},
		{"OutputBufferingMode", "BLOCK", "OutputBufferingMode", "block", ""},
		{"OutputBufferingMode", "fast", "", "", `OutputBufferingMode: "fast" is not allowed (use one of: block, drop)`},
		{"DefaultShell", "BASH", "DefaultShell", "bash", ""},
		{"defaultshell", "builtin", "DefaultShell", "builtin", ""},
		{"DefaultShell", "zsh", "", "", `DefaultShell: "zsh" is not allowed (use one of: bash, builtin)`},
		// unknown keys
		{"IdelTimeout", "2h", "", "", `unknown setting "IdelTimeout" (did you mean IdleTimeout?)`},
		{"MaxShells", "2", "", "", `unknown setting "MaxShells" (did you mean MaxShellsPerUser?)`},
		{"Colour", "red", "", "", `unknown setting "Colour" (valid settings: AllowRemoteShellAccess, IdleTimeout, MaxIdleTimeout, MaxShellRunTime, MaxConcurrentUsers, MaxShellsPerUser, MaxConnections, MaxConnectionsPerUser, MaxSessionsPerConnection, MaxProcessesPerShell, MaxMemoryPerShellMB, OutputBufferingMode, MaxOutputBufferMB, DefaultShell)`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			canon, norm, err := Validate(tt.name, tt.value)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("Validate = %q, %q, nil; want error %s", canon, norm, tt.err)
				}
				if err.Error() != tt.err {
					t.Fatalf("error\n got: %s\nwant: %s", err, tt.err)
				}
				var ve *ValueError
				var ue *UnknownKeyError
				if !errors.As(err, &ve) && !errors.As(err, &ue) {
					t.Errorf("error is %T, want *ValueError or *UnknownKeyError", err)
				}
				if strings.HasPrefix(tt.err, "unknown") && !errors.Is(err, ErrUnknownKey) {
					t.Error("unknown key error does not wrap ErrUnknownKey")
				}
				return
			}
			if err != nil || canon != tt.canon || norm != tt.norm {
				t.Fatalf("Validate = %q, %q, %v; want %q, %q", canon, norm, err, tt.canon, tt.norm)
			}
			// Normalized values are fixed points.
			if _, n2, err := Validate(canon, norm); err != nil || n2 != norm {
				t.Errorf("Validate(%s, %q) = %q, %v; not a fixed point", canon, norm, n2, err)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                "unlimited",
		2 * time.Hour:                    "2h",
		10 * time.Minute:                 "10m",
		90 * time.Second:                 "1m30s",
		time.Hour + 30*time.Minute:       "1h30m",
		time.Hour + 30*time.Second:       "1h0m30s",
		1500 * time.Millisecond:          "1.5s",
		24*time.Hour + time.Minute + 1e9: "24h1m1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
