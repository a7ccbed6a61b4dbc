package progress

import (
	"strings"
	"sync"
	"testing"

	"github.com/tether-sh/tether/internal/tstest"
)

func TestBarShowsBytesAndLines(t *testing.T) {
	var out tstest.SyncBuffer
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
