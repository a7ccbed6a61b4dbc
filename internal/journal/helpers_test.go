package journal

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

const testTimeout = 10 * time.Second

func openT(t testing.TB, opts Options) *Journal {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "j")
	}
	j, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func appendT(t testing.TB, j *Journal, kind Kind, cmd uint32, data []byte) uint64 {
	t.Helper()
	seq, err := j.Append(context.Background(), kind, cmd, data)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// readAll reads every record after `after` using reads of at most maxBytes.
func readAll(t testing.TB, j *Journal, after uint64, maxBytes int) []Record {
	t.Helper()
	var all []Record
	for {
		recs, err := j.Read(after, maxBytes)
		if err != nil {
			t.Fatalf("Read(%d): %v", after, err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// payload returns deterministic data for record i.
func payload(i, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*31 + k*7)
	}
	return b
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

func droppedCount(t testing.TB, r Record) uint64 {
	t.Helper()
	if r.Kind != KindDropped || len(r.Data) != 8 {
		t.Fatalf("record %d: want 8-byte KindDropped, got %v len %d", r.Seq, r.Kind, len(r.Data))
	}
	return binary.BigEndian.Uint64(r.Data)
}

// startAppend runs Append in a goroutine and returns its result channel.
type appendResult struct {
	seq uint64
	err error
}

func startAppend(ctx context.Context, j *Journal, kind Kind, data []byte) <-chan appendResult {
	ch := make(chan appendResult, 1)
	go func() {
		seq, err := j.Append(ctx, kind, 0, data)
		ch <- appendResult{seq, err}
	}()
	return ch
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitBlocked waits until n Appends are blocked for space.
func waitBlocked(t testing.TB, j *Journal, n int) {
	t.Helper()
	tstest.WaitFor(t, testTimeout, "blocked Append", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.blocked == n
	})
}

// waitWaiting waits until n Waits are waiting for records.
func waitWaiting(t testing.TB, j *Journal, n int) {
	t.Helper()
	tstest.WaitFor(t, testTimeout, "waiting Wait", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.waiting == n
	})
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
