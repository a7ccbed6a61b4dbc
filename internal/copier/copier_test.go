package copier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"

	"github.com/tether-sh/tether/internal/wire"
)

// TestCheckNameRefusesPaths: a directory listing from a hostile host that
// names "..", "a/b" or an absolute path cannot place files outside the
// destination; plain names (with dots, spaces, anything else) pass.
func TestCheckNameRefusesPaths(t *testing.T) {
	for _, n := range []string{"", ".", "..", "../x", "a/b", "/etc/passwd", "x\x00y"} {
		err := checkName(localFS{}, "/src", n)
		if err == nil || !strings.Contains(err.Error(), "/src") {
			t.Errorf("name %q: %v, want a refusal naming the directory", n, err)
		}
	}
	for _, n := range []string{"a", ".hidden", "..x", "x..", "with space", "ünï"} {
		if err := checkName(localFS{}, "/src", n); err != nil {
			t.Errorf("name %q refused: %v", n, err)
		}
	}
}

// TestCheckPutsInPlaceOnlyMatchingHashes: a landed file whose SHA-256
// differs from the host's is removed and never renamed over the
// destination (a push says checksum mismatch, a pull that the source
// changed); a matching one is renamed into place.
func TestCheckPutsInPlaceOnlyMatchingHashes(t *testing.T) {
	for _, push := range []bool{true, false} {
		dir := t.TempDir()
		dst := filepath.Join(dir, "f")
		tmp := filepath.Join(dir, ".f.tether-x")
		os.WriteFile(tmp, []byte("abc"), 0o600)
		fi, _ := os.Stat(tmp)
		// localFS on both sides stands in for the session's: check only
		// compares and renames.
		j := &job{ctx: context.Background(), o: &Options{}, src: localFS{}, dst: localFS{}, push: push}
		l := &landed{e: &entry{src: "/src/f", dst: dst, fi: fi}, tmp: tmp, sum: "aa", size: 3, fi: fi,
			cleanup: func() { os.Remove(tmp) }}
		var res FileResult
		err := j.check(l, wire.HashResult{SHA256: "bb", Size: 3}, nil, &res)
		want := ErrChanged
		if push {
			want = ErrChecksum
		}
		if !errors.Is(err, want) {
			t.Fatalf("push=%v: a mismatch gave %v, want %v", push, err, want)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Fatalf("push=%v: a mismatching file replaced the destination", push)
		}
		if _, err := os.Stat(tmp); err == nil {
			t.Fatalf("push=%v: the temp file of a mismatch was left behind", push)
		}
		os.WriteFile(tmp, []byte("abc"), 0o600)
		if err := j.check(l, wire.HashResult{SHA256: "aa", Size: 3}, nil, &res); err != nil {
			t.Fatalf("push=%v: a match: %v", push, err)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != "abc" || res.SHA256 != "aa" {
			t.Fatalf("push=%v: after a match dst = %q %v, sha %q", push, b, err, res.SHA256)
		}
	}
}

// TestTransportErrorSeesAResetWrite: a write that meets a reset socket
// (what a worker sees when the network is cut mid-push, possibly before
// the stream's reader has noticed) is the transport failing, so the copy
// reconnects; the host's own answers and local file errors are not.
func TestTransportErrorSeesAResetWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // an RST, as a cut link's proxy sends
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = conn.Write(make([]byte, 64<<10))
	}
	if werr == nil {
		t.Fatal("writes to a reset connection kept succeeding")
	}
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("write: failed to send packet payload: %w", werr), true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{sftp.ErrSSHFxConnectionLost, true},
		{&sftp.StatusError{Code: 3}, false}, // permission denied: the host's answer
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, false},
		{errors.New("no space left on device"), false},
	}
	for _, c := range cases {
		if got := transportError(c.err); got != c.want {
			t.Errorf("transportError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
