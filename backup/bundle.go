// Package backup is kbootstrap's backup bundle: one file holding a verified
// etcd snapshot, the cluster's PKI, kubeadm's ClusterConfiguration, the
// versions and the etcd member list, with a manifest of sha256 sums; age
// encrypted when asked (a passphrase or a recipient), so that the file then
// holds no private key in the clear.
//
// A bundle is a tar stream: the files first, manifest.json last (its sums
// are known only once every file went through), so writing and verifying
// both take one pass in constant memory, however large the snapshot.
package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// Format is the bundle format this package writes and reads.
const Format = 1

// Names of the entries a bundle holds besides the PKI (under PKIDir).
const (
	ManifestName      = "manifest.json"
	SnapshotName      = "etcd/snapshot.db"
	ClusterConfigName = "kubeadm/cluster-configuration.yaml"
	// PKIDir holds the files of /etc/kubernetes/pki, by their path there.
	PKIDir = "pki/"
)

// Manifest describes a bundle: what it was taken from and every file in it.
type Manifest struct {
	Format            int       `json:"format"`
	Cluster           string    `json:"cluster"`
	Created           time.Time `json:"created"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	EtcdVersion       string    `json:"etcdVersion"`
	// SnapshotRevision is etcd's revision the snapshot was taken at.
	SnapshotRevision int64    `json:"snapshotRevision"`
	Members          []Member `json:"members"`
	Files            []File   `json:"files"`
}

// Member is an etcd member when the snapshot was taken.
type Member struct {
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
}

// File is one entry of a bundle with its size and sha256.
type File struct {
	Name   string      `json:"name"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
}

// Entry is a file to write into a bundle: Size bytes read from Body.
type Entry struct {
	Name string
	Mode fs.FileMode
	Size int64
	Body io.Reader
}

// Write writes a bundle of entries described by m (its Files are filled in)
// to w. An entry whose Body does not yield exactly Size bytes is an error.
func Write(w io.Writer, m Manifest, entries []Entry) (*Manifest, error) {
	m.Format = Format
	m.Files = nil
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	for _, e := range entries {
		if err := checkName(e.Name); err != nil {
			return nil, err
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("bundle: %s twice", e.Name)
		}
		seen[e.Name] = true
		mode := e.Mode.Perm()
		if mode == 0 {
			mode = 0o600
		}
		hdr := &tar.Header{Name: e.Name, Mode: int64(mode), Size: e.Size, ModTime: m.Created, Format: tar.FormatPAX, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", e.Name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(e.Body, e.Size))
		if err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", e.Name, err)
		}
		if n != e.Size {
			return nil, fmt.Errorf("bundle: %s: %d bytes, want %d", e.Name, n, e.Size)
		}
		m.Files = append(m.Files, File{Name: e.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode})
	}
	raw, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return nil, err
	}
	raw = append(raw, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(raw)), ModTime: m.Created, Format: tar.FormatPAX, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(raw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkName refuses names that could leave the directory a bundle is
// extracted into, or that collide with the manifest.
func checkName(name string) error {
	switch {
	case name == "" || name == ManifestName:
		return fmt.Errorf("bundle: entry name %q is reserved or empty", name)
	case path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../"):
		return fmt.Errorf("bundle: entry name %q is not a clean relative path", name)
	}
	return nil
}

// ErrCorrupt is the error of a bundle whose content does not match its
// manifest, or that is not a bundle at all.
var ErrCorrupt = errors.New("the bundle is damaged or not a kbootstrap bundle")

// Visit reads a bundle from r, calling visit for each entry with its
// content (which visit may read in part or not at all), checks every entry
// against the manifest (size and sha256, none missing, none unlisted), and
// returns the manifest. Errors name the entry and wrap ErrCorrupt.
func Visit(r io.Reader, visit func(name string, body io.Reader) error) (*Manifest, error) {
	tr := tar.NewReader(r)
	got := map[string]File{}
	var order []string
	var m *Manifest
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if m != nil {
			return nil, fmt.Errorf("%w: %s after %s (the manifest comes last)", ErrCorrupt, hdr.Name, ManifestName)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, hdr.Name)
		}
		if hdr.Name == ManifestName {
			raw, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, ManifestName, err)
			}
			m = &Manifest{}
			if err := json.Unmarshal(raw, m); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, ManifestName, err)
			}
			continue
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if _, dup := got[hdr.Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrCorrupt, hdr.Name)
		}
		h := sha256.New()
		body := io.TeeReader(corruptOnError{tr}, h)
		if visit != nil {
			if err := visit(hdr.Name, body); err != nil {
				return nil, fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
		// What visit left unread still counts.
		if _, err := io.Copy(h, tr); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, hdr.Name, err)
		}
		got[hdr.Name] = File{Name: hdr.Name, Size: hdr.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
		order = append(order, hdr.Name)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: no %s", ErrCorrupt, ManifestName)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %d, this kbootstrap reads %d", ErrCorrupt, m.Format, Format)
	}
	var errs []error
	listed := map[string]bool{}
	for _, f := range m.Files {
		listed[f.Name] = true
		g, ok := got[f.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: %s is listed in the manifest but missing", ErrCorrupt, f.Name))
		case g.Size != f.Size:
			errs = append(errs, fmt.Errorf("%w: %s holds %d bytes, the manifest says %d", ErrCorrupt, f.Name, g.Size, f.Size))
		case g.SHA256 != f.SHA256:
			errs = append(errs, fmt.Errorf("%w: %s: sha256 %s, the manifest says %s", ErrCorrupt, f.Name, g.SHA256, f.SHA256))
		}
	}
	for _, name := range order {
		if !listed[name] {
			errs = append(errs, fmt.Errorf("%w: %s is not in the manifest", ErrCorrupt, name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// corruptOnError marks a failed read of the bundle (cut short, damaged) as
// ErrCorrupt for visit's callers.
type corruptOnError struct{ r io.Reader }

func (c corruptOnError) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}
