package pki

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/kbootstrap/kbootstrap/node"
)

func TestReadBatch(t *testing.T) {
	dir := t.TempDir()
	bin := []byte("line one\n\x00\xffF 12\nN\n-----BEGIN CERTIFICATE-----\n")
	writeFile(t, filepath.Join(dir, "a file"), bin, 0o600)
	writeFile(t, filepath.Join(dir, "empty"), nil, 0o600)
	writeFile(t, filepath.Join(dir, "it's"), []byte("quoted"), 0o644)
	files := []*fileData{
		{Path: filepath.Join(dir, "a file")},
		{Path: filepath.Join(dir, "missing")},
		{Path: filepath.Join(dir, "empty")},
		{Path: filepath.Join(dir, "it's")},
	}
	if err := readBatch(context.Background(), node.NewLocal("t", nil), files); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files[0].Data, bin) || files[0].Err != nil {
		t.Errorf("binary file: %q %v", files[0].Data, files[0].Err)
	}
	if !errors.Is(files[1].Err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", files[1].Err)
	}
	if files[2].Data == nil || len(files[2].Data) != 0 || files[2].Err != nil {
		t.Errorf("empty file: %q %v", files[2].Data, files[2].Err)
	}
	if string(files[3].Data) != "quoted" {
		t.Errorf("quoted name: %q %v", files[3].Data, files[3].Err)
	}
}

// TestReadBoundedFiles: a path a kubeconfig may name that is no small
// regular file (/dev/zero, a directory, a file over MaxFileSize) is refused
// by name, in a batch and in single reads, never read whole.
func TestReadBoundedFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	writeFile(t, big, bytes.Repeat([]byte("x"), MaxFileSize+1), 0o644)
	writeFile(t, filepath.Join(dir, "ok"), []byte("fine"), 0o644)
	for _, batch := range []bool{true, false} {
		files := []*fileData{{Path: "/dev/zero"}, {Path: dir}, {Path: big}, {Path: filepath.Join(dir, "ok")}}
		read(context.Background(), node.NewLocal("t", nil), files, 2, batch)
		for i, want := range []error{node.ErrNotRegular, node.ErrNotRegular, ErrFileTooLarge, nil} {
			f := files[i]
			if !errors.Is(f.Err, want) || (want != nil && f.Data != nil) {
				t.Errorf("batch %v: %s: %d bytes, %v; want %v", batch, f.Path, len(f.Data), f.Err, want)
			}
		}
		if string(files[3].Data) != "fine" {
			t.Errorf("batch %v: ok: %q", batch, files[3].Data)
		}
	}
}

// A node that cannot run the batch command falls back to single reads.
func TestReadBatchFallback(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), []byte("content"), 0o600)
	files := []*fileData{{Path: "/f"}}
	read(context.Background(), &rootedNode{name: "t", root: dir, local: node.NewLocal("t", nil)}, files, 2, true)
	if string(files[0].Data) != "content" || files[0].Err != nil {
		t.Errorf("fallback: %q %v", files[0].Data, files[0].Err)
	}
}
