package sessionhost

import (
	"slices"
	"testing"
	"time"
)

func TestCommandEnvDropsRuntimeEnv(t *testing.T) {
	env := append([]string{"HOME=/root", "GOMAXPROCSX=2", "PATH=/bin"}, RuntimeEnv...)
	got := CommandEnv(env)
	if want := []string{"HOME=/root", "GOMAXPROCSX=2", "PATH=/bin"}; !slices.Equal(got, want) {
		t.Fatalf("CommandEnv(%q) = %q, want %q", env, got, want)
	}
}

func TestTrimAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &Host{idleSince: t0, trimmedFor: t0}
	if _, ok := h.trimAtLocked(); ok {
		t.Fatal("a trim is due without work since the last one")
	}
	h.idleSince = t0.Add(time.Minute)
	if at, ok := h.trimAtLocked(); !ok || !at.Equal(h.idleSince.Add(idleTrimDelay)) {
		t.Fatalf("after work: trim at %v, %v; want %v", at, ok, h.idleSince.Add(idleTrimDelay))
	}
	h.running = &command{}
	if _, ok := h.trimAtLocked(); ok {
		t.Fatal("a trim is due while a command runs")
	}
	h.running = nil
	h.closing = true
	if _, ok := h.trimAtLocked(); ok {
		t.Fatal("a trim is due while closing")
	}
}
