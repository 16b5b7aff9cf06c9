package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// RotateInto renames part to file, first shifting file, file.1, ... up by
// one so that keep files remain (keep <= 1: file is replaced). file
// exists at every moment if it existed before: it is hard-linked to file.1
// and then atomically replaced. The directory is fsynced.
func RotateInto(part, file string, keep int) (rotated []string, err error) {
	if keep > 1 {
		if _, err := os.Lstat(file); err == nil {
			if err := os.Remove(numbered(file, keep-1)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("rotate: %w", err)
			}
			for i := keep - 2; i >= 1; i-- {
				from, to := numbered(file, i), numbered(file, i+1)
				if err := os.Rename(from, to); err == nil {
					rotated = append(rotated, to)
				} else if !errors.Is(err, os.ErrNotExist) {
					return rotated, fmt.Errorf("rotate: %w", err)
				}
			}
			if err := os.Link(file, numbered(file, 1)); err != nil {
				// No hard links on this file system: a rename leaves a
				// short window without file, still never a partial one.
				if err := os.Rename(file, numbered(file, 1)); err != nil {
					return rotated, fmt.Errorf("rotate: %w", err)
				}
			}
			rotated = append(rotated, numbered(file, 1))
		}
	}
	if err := os.Rename(part, file); err != nil {
		return rotated, err
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	return rotated, nil
}

func numbered(file string, i int) string { return file + "." + strconv.Itoa(i) }
