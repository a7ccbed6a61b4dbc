package sessionhost

import (
	"slices"
	"testing"
)

func TestCommandEnvDropsRuntimeEnv(t *testing.T) {
	env := append([]string{"HOME=/root", "GOMAXPROCSX=2", "PATH=/bin"}, RuntimeEnv...)
	got := CommandEnv(env)
	if want := []string{"HOME=/root", "GOMAXPROCSX=2", "PATH=/bin"}; !slices.Equal(got, want) {
		t.Fatalf("CommandEnv(%q) = %q, want %q", env, got, want)
	}
}
