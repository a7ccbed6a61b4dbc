package sessionhost

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPruneTombstonesKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i := 0; i < 10; i++ {
		p := filepath.Join(dir, fmt.Sprintf("s%d.json", i))
		os.WriteFile(p, []byte("{}"), 0o600)
		at := base.Add(time.Duration(i) * time.Minute)
		os.Chtimes(p, at, at)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600) // not a tombstone: kept
	pruneTombstones(dir, 4)
	for i := 0; i < 10; i++ {
		_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("s%d.json", i)))
		if kept := err == nil; kept != (i >= 6) {
			t.Errorf("s%d.json kept=%v", i, kept)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a file that is not a tombstone was removed")
	}
}
