// Package atomicfile writes files on this machine so that a reader sees the
// old content or the new one, never a part: an exclusively created temporary
// file with an unpredictable name in the same directory, its mode set before
// the first byte, fsync, rename over the path (a symlink planted there is
// replaced, never followed), then fsync of the directory.
package atomicfile

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Options of Write.
type Options struct {
	// Mode of the file; 0 means 0644.
	Mode fs.FileMode
	// Chown sets the owner to UID:GID before the first byte.
	Chown    bool
	UID, GID int
	// MkdirMode, when set, creates missing parent directories with it.
	MkdirMode fs.FileMode
}

// Write replaces path with what r yields.
func Write(path string, r io.Reader, o Options) (err error) {
	mode := o.Mode
	if mode == 0 {
		mode = 0o644
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if o.MkdirMode != 0 {
		if err := os.MkdirAll(dir, o.MkdirMode); err != nil {
			return err
		}
	}
	// CreateTemp: O_CREATE|O_EXCL, mode 0600, a random name.
	f, err := os.CreateTemp(dir, "."+base+".kbtmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if o.Chown {
		if err = f.Chown(o.UID, o.GID); err != nil {
			return err
		}
	}
	if _, err = io.Copy(f, r); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteBytes is Write with the content in memory.
func WriteBytes(path string, data []byte, o Options) error {
	return Write(path, bytes.NewReader(data), o)
}
