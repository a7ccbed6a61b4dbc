// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never half of either: a temporary file in the same
// directory, fsync, rename over the target, fsync of the directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, mode perm. The temporary file is
// created next to path (so the rename cannot cross file systems) with
// O_EXCL and a random name, so a symlink planted there is never followed.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// WriteNewFile is WriteFile for a file that must not be replaced (a key, a
// machine id): the temporary file is hard-linked to path instead of renamed,
// so when path already exists — another process won a race — it fails with
// an error wrapping fs.ErrExist and the existing file is left as it was.
func WriteNewFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, func(tmp, path string) error {
		err := os.Link(tmp, path)
		os.Remove(tmp)
		return err
	})
}

func write(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
	}
	if err = place(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	// The rename (or link) is durable once the directory is.
	d, derr := os.Open(dir)
	if derr != nil {
		return nil
	}
	d.Sync()
	d.Close()
	return nil
}
