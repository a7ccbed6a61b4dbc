package sftpserve

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

// TestRelativePathsUseDir: a relative path lands in dir, as `tether cp`
// relies on for "relative to the session's cwd".
func TestRelativePathsUseDir(t *testing.T) {
	dir := t.TempDir()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(a, dir) }()
	c, err := sftp.NewClientPipe(b, b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Create("rel.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "hello"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after the client closed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "rel.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("rel.txt in dir = %q, %v; want hello", got, err)
	}
}
