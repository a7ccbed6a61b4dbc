package sessionhost

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/tether-sh/tether/internal/sftpserve"
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

// TestHashChain: a chain's answers are the SHA-256 of the prefix up to
// each request's end (as tether cp compares them with its running hash),
// and a request continuing the chain reads only its own segment: the
// state kept is used (a byte changed in the prefix already hashed is not
// read again) — but only for the same chain, at the offset where it
// stopped, on the same file (inode).
func TestHashChain(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	data := []byte("0123456789abcdefghij")
	os.WriteFile(p, data, 0o644)
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	ask := func(chain string, off, n int64) wire.HashResult {
		t.Helper()
		got := hashFile(wire.HashFile{Path: p, Offset: off, Length: n, Chain: chain})
		if got.Error != "" || !got.Prefix {
			t.Fatalf("chain %q %d+%d: %+v, want a prefix answer", chain, off, n, got)
		}
		return got
	}
	if got := ask("c1", 0, 5); got.SHA256 != sum(data[:5]) {
		t.Fatalf("first 5: %s, want %s", got.SHA256, sum(data[:5]))
	}
	if got := ask("c1", 5, 5); got.SHA256 != sum(data[:10]) {
		t.Fatalf("first 10: %s, want %s", got.SHA256, sum(data[:10]))
	}
	// Change byte 0 in place: the chain has hashed it already.
	fd, _ := os.OpenFile(p, os.O_WRONLY, 0)
	fd.WriteAt([]byte("X"), 0)
	fd.Close()
	changed := append([]byte("X"), data[1:]...)
	if got := ask("c1", 10, 5); got.SHA256 != sum(data[:15]) {
		t.Fatalf("chain c1 to 15: %s, want the kept state's %s (not the file's %s)", got.SHA256, sum(data[:15]), sum(changed[:15]))
	}
	if got := ask("c2", 10, 5); got.SHA256 != sum(changed[:15]) {
		t.Fatalf("another chain to 15: %s, want the file's %s", got.SHA256, sum(changed[:15]))
	}
	if got := ask("c1", 5, 10); got.SHA256 != sum(changed[:15]) {
		t.Fatalf("c1 from 5, where its state is not: %s, want the file's %s", got.SHA256, sum(changed[:15]))
	}
	// A new file under the same name (the old one kept under another,
	// so its inode is not reused): c1's state (at 15) is not its.
	os.Rename(p, p+".old")
	other := append([]byte("Y"), changed[1:]...)
	os.WriteFile(p, other, 0o644)
	if got := ask("c1", 15, 5); got.SHA256 != sum(other) {
		t.Fatalf("c1 on a new file: %s, want the file's %s", got.SHA256, sum(other))
	}
	if got := hashFile(wire.HashFile{Path: p, Offset: 15, Length: 10, Chain: "c3"}); !strings.Contains(got.Error, "fewer than the 25") {
		t.Fatalf("past the end: %+v, want an error", got)
	}
}

// TestHashAlgos: the hash op answers in the checksum asked for — SHA-256
// by default (in sha256, as older clients read it, and sum), XXH3-128
// when asked (sum only), chains too — and refuses a name it does not know.
func TestHashAlgos(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := []byte("hello world")
	os.WriteFile(p, data, 0o644)
	s := sha256.Sum256(data)
	if got := hashFile(wire.HashFile{Path: p, Length: 11}); got.SHA256 != hex.EncodeToString(s[:]) || got.Sum != got.SHA256 {
		t.Fatalf("default: %+v, want sha256 %x in both fields", got, s)
	}
	x := xxh3.Hash128(data).Bytes()
	want := hex.EncodeToString(x[:])
	if got := hashFile(wire.HashFile{Path: p, Length: 11, Algo: sftpserve.HashXXH128}); got.Sum != want || got.SHA256 != "" {
		t.Fatalf("xxh128: %+v, want sum %s and no sha256", got, want)
	}
	hashFile(wire.HashFile{Path: p, Length: 5, Algo: sftpserve.HashXXH128, Chain: "x"})
	if got := hashFile(wire.HashFile{Path: p, Offset: 5, Length: 6, Algo: sftpserve.HashXXH128, Chain: "x"}); got.Sum != want || !got.Prefix {
		t.Fatalf("xxh128 chain: %+v, want the whole file's %s", got, want)
	}
	if got := hashFile(wire.HashFile{Path: p, Length: 11, Algo: "md5"}); !strings.Contains(got.Error, `no checksum "md5"`) {
		t.Fatalf("md5: %+v, want a refusal naming it", got)
	}
}
