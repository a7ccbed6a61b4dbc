package bash

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// stateFiles are the files the Shell and bash exchange on every command
// (the command text, the state snapshots). Each is a memfd the Shell holds,
// named in the state directory by a symlink to its /proc/PID/fd path, which
// bash opens like any file. On ext4 a truncating rewrite of a file with
// data costs ~180 µs (journalled orphan handling), and a snapshot and a
// command file were rewritten per command; a memfd's truncate is a few µs.
// The memfds belong to the Shell, not to a bash process, so that they
// outlive a bash killed outright. Where memfd_create fails the names are
// plain files.
type stateFiles struct {
	files map[string]*os.File
	size  map[string]int // what write last left in each
}

// The files in the state directory.
var stateNames = []string{"cmd", "snap0", "snap1", "opts", "exit", "init", "restore"}

func newStateFiles(dir string) (*stateFiles, error) {
	sf := &stateFiles{files: map[string]*os.File{}, size: map[string]int{}}
	for _, n := range stateNames {
		path := filepath.Join(dir, n)
		_ = os.Remove(path)
		f, err := memfd(n)
		if err == nil {
			target := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(f.Fd()))
			if err = os.Symlink(target, path); err != nil {
				f.Close()
			}
		}
		if err != nil {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		}
		if err != nil {
			sf.close()
			return nil, fmt.Errorf("bash: state file %s: %w", path, err)
		}
		sf.files[n] = f
	}
	return sf, nil
}

func memfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate("tether-bash-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// write replaces the content of file name (written by the Shell only, or
// emptied: bash writes snapshots, which the Shell only reads). It cuts the
// file only when the new content is shorter than the last.
func (sf *stateFiles) write(name string, b []byte) error {
	f := sf.files[name]
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("bash: write %s: %w", name, err)
	}
	if sf.size[name] > len(b) || len(b) == 0 {
		if err := f.Truncate(int64(len(b))); err != nil {
			return fmt.Errorf("bash: write %s: %w", name, err)
		}
	}
	sf.size[name] = len(b)
	return nil
}

// read returns the content of file name.
func (sf *stateFiles) read(name string) ([]byte, error) {
	f := sf.files[name]
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if n == len(b) {
		err = nil
	}
	return b[:n], err
}

func (sf *stateFiles) close() {
	for _, f := range sf.files {
		f.Close()
	}
}
