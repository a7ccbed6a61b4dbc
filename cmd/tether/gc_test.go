package main

import "testing"

func TestIsClient(t *testing.T) {
	for _, c := range []struct {
		args   []string
		client bool
	}{
		{[]string{"invoke", "h/s", "true"}, true},
		{[]string{"-i", "key", "receive", "h/s"}, true},
		{[]string{"serve", "--listen", "127.0.0.1:0"}, false},
		{[]string{"serve", "--stdio"}, false},
		{[]string{"session-host"}, false},
		{[]string{"--log-level", "warn", "mux-master", "--persist", "10m", "h"}, false},
		{[]string{"sftp-server"}, false},
	} {
		if got := isClient(c.args); got != c.client {
			t.Errorf("isClient(%q) = %v, want %v", c.args, got, c.client)
		}
	}
}
