package bash

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// stateFiles are the files the Shell and bash exchange (the command text,
// the state snapshots, the init and restore scripts). Each is a memfd the
// Shell holds, which bash opens by its /proc/PID/fd path: on ext4 a
// truncating rewrite of a file with data costs ~180 µs (journalled orphan
// handling), and the command file and a snapshot were rewritten per
// command; a memfd's truncate costs a few µs, and no name is made in the
// state directory (seven symlinks cost 1-7 ms of a session's start on a
// busy ext4). The memfds belong to the Shell, not to a bash process, so that
// they outlive a bash killed outright. Where memfd_create fails they are
// plain files in the state directory.
type stateFiles struct {
	files map[string]*os.File
	paths map[string]string // what bash opens
	size  map[string]int    // what write last left in each
}

var stateNames = []string{"cmd", "snap0", "snap1", "opts", "exit", "init", "restore"}

func newStateFiles(dir string) (*stateFiles, error) {
	sf := &stateFiles{files: map[string]*os.File{}, paths: map[string]string{}, size: map[string]int{}}
	for _, n := range stateNames {
		f, err := memfd(n)
		path := ""
		if err == nil {
			path = "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(f.Fd()))
		} else {
			path = filepath.Join(dir, n)
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		}
		if err != nil {
			sf.close()
			return nil, fmt.Errorf("bash: state file %s: %w", path, err)
		}
		sf.files[n], sf.paths[n] = f, path
	}
	return sf, nil
}

// path is the path bash opens file name by.
func (sf *stateFiles) path(name string) string { return sf.paths[name] }

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
