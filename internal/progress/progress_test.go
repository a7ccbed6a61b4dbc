package progress

import (
	"strings"
	"sync"
	"testing"
)

type syncBuf struct {
	mu sync.Mutex
	sb strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb.String()
}

func TestBarShowsBytesAndLines(t *testing.T) {
	var out syncBuf
	b := New(&out, "copying")
	b.SetMax(3 << 20)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.Add(1 << 20) }()
	}
	wg.Wait()
	b.Println("tether: web1: permission denied")
	b.Finish()
	got := out.String()
	for _, want := range []string{"copying", "3.15MB", "permission denied"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar output lacks %q:\n%q", want, got)
		}
	}
}
