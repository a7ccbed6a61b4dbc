// Package tstest holds the helpers every test package shares: one way to
// wait for a condition, one buffer that processes may write while a test
// reads it (and one that also lends its memory, as the journal does).
package tstest

import (
	"bytes"
	"cmp"
	"errors"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe to read while a process or goroutine
// writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// LendingBuffer is a SyncBuffer that also takes writes into memory of its
// own, as the session host's journal writer does (runspace.PipeWriter):
// WriteFrom lends a fresh buffer of Lend bytes (256 KiB if 0), after Delay
// (a slow writer). It counts the bytes that came each way, and fails every
// write once FailAfter bytes (if not 0) were written.
type LendingBuffer struct {
	Lend      int
	FailAfter int
	Delay     time.Duration

	mu           sync.Mutex
	b            bytes.Buffer
	lent, copied int
}

// ErrLendingBufferFull is what LendingBuffer's writes fail with after
// FailAfter bytes.
var ErrLendingBufferFull = errors.New("tstest: LendingBuffer full")

func (s *LendingBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.FailAfter > 0 && s.b.Len() >= s.FailAfter {
		return 0, ErrLendingBufferFull
	}
	s.copied += len(p)
	return s.b.Write(p)
}

func (s *LendingBuffer) WriteFrom(read func(p []byte) int) (int, error) {
	s.mu.Lock()
	full := s.FailAfter > 0 && s.b.Len() >= s.FailAfter
	s.mu.Unlock()
	if full {
		return 0, ErrLendingBufferFull
	}
	time.Sleep(s.Delay)
	p := make([]byte, cmp.Or(s.Lend, 256<<10))
	n := read(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lent += n
	return s.b.Write(p[:n])
}

// Counts returns the bytes written into lent memory and those copied
// from the writer's.
func (s *LendingBuffer) Counts() (lent, copied int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lent, s.copied
}

func (s *LendingBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// WaitFor polls cond every few milliseconds until it is true, and fails the
// test naming what it waited for if timeout passes first. Tests wait with
// it instead of sleeping for "long enough".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}
