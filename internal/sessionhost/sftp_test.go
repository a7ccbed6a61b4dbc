package sessionhost

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tether-sh/tether/internal/wire"
)

// TestHashFile: the hash op hashes exactly the prefix asked for, and
// refuses what it must not read as a file: a relative path, a file shorter
// than asked, a FIFO (which would block the host), a directory.
func TestHashFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("hello world"), 0o644)
	want := sha256.Sum256([]byte("hello"))
	if got := hashFile(wire.HashFile{Path: p, Length: 5}); got.Error != "" || got.SHA256 != hex.EncodeToString(want[:]) || got.Size != 11 {
		t.Fatalf("prefix of 5: %+v, want %x size 11", got, want)
	}
	world := sha256.Sum256([]byte("world"))
	if got := hashFile(wire.HashFile{Path: p, Offset: 6, Length: 5}); got.Error != "" || got.SHA256 != hex.EncodeToString(world[:]) {
		t.Fatalf("5 bytes from offset 6: %+v, want %x", got, world)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    wire.HashFile
		want string
	}{
		{wire.HashFile{Path: "f", Length: 1}, "absolute path"},
		{wire.HashFile{Path: p, Length: 100}, "fewer than the 100"},
		{wire.HashFile{Path: p, Offset: 10, Length: 5}, "fewer than the 5"},
		{wire.HashFile{Path: p, Offset: -1, Length: 5}, "offset"},
		{wire.HashFile{Path: fifo, Length: 1}, "not a regular file"},
		{wire.HashFile{Path: dir, Length: 0}, "not a regular file"},
		{wire.HashFile{Path: filepath.Join(dir, "none"), Length: 0}, "no such file"},
	} {
		if got := hashFile(c.f); !strings.Contains(got.Error, c.want) {
			t.Errorf("%+v: %+v, want an error with %q", c.f, got, c.want)
		}
	}
}
