package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/kbootstrap/kbootstrap/node"
)

// dirs are the directories audited on one node.
type dirs struct {
	PKI, Kubeconfig, Manifests string
	// KubeletPKI holds the kubelet's serving certificate ("" when not
	// audited).
	KubeletPKI string
	// PKIFromManifest lets the kube-apiserver manifest's --client-ca-file
	// choose the PKI directory (remote mode: kubeadm's certificatesDir).
	PKIFromManifest bool
	// Batch reads the files of each step with one command instead of one
	// read per file: for a connection that reads through sudo, where every
	// read is a command of its own.
	Batch bool
}

// fileData is one file as read from a node.
type fileData struct {
	Rel     string // as reported: relative to its directory
	Path    string // on the node
	Present bool
	Info    node.FileInfo
	HasInfo bool
	Data    []byte
	Err     error // reading failed for another reason than absence
}

// snapshot is everything read from one node.
type snapshot struct {
	Node      string
	Dirs      dirs
	Files     map[string]*fileData // by Rel
	APIServer *podFlags            // nil when there is no manifest
	Etcd      *podFlags
	// ManifestsSeen: the manifests directory exists.
	ManifestsSeen bool
	// ManifestErrs are manifests that could not be parsed.
	ManifestErrs map[string]error
	// Referenced are files named by kubeconfigs (by path on the node).
	Referenced map[string]*fileData
	// KubeletSeen: the kubelet's PKI directory exists. KubeletServing is
	// its serving certificate: kubelet-server-current.pem (cert and key,
	// from the cluster CA with serverTLSBootstrap), else kubelet.crt and
	// kubelet.key (self-signed); nil when neither is there.
	KubeletSeen                bool
	KubeletServing, KubeletKey *fileData
	// KubeletServingTarget is the newest kubelet-server-<time>.pem, the
	// file kubelet-server-current.pem links to, whose mode is judged.
	KubeletServingTarget *fileData
}

func (s *snapshot) file(rel string) *fileData {
	if f, ok := s.Files[rel]; ok {
		return f
	}
	return &fileData{Rel: rel}
}

// pkiFiles lists what kubeadm writes in the PKI directory.
func pkiFiles() []string {
	var out []string
	for _, c := range certSpecs() {
		out = append(out, c.Base+".crt", c.Base+".key")
	}
	return append(out, "sa.key", "sa.pub")
}

// gather reads a node's PKI, kubeconfigs and manifests. Only a failure to
// list a directory is an error; a file that cannot be read is recorded in
// its fileData.
func gather(ctx context.Context, n node.Node, d dirs, concurrency int) (*snapshot, error) {
	s := &snapshot{Node: n.Name(), Dirs: d, Files: map[string]*fileData{}, ManifestErrs: map[string]error{}, Referenced: map[string]*fileData{}}

	// Manifests first: they may say where the PKI lives.
	if d.Manifests != "" {
		list, ok, err := listDir(ctx, n, d.Manifests)
		if err != nil {
			return nil, err
		}
		s.ManifestsSeen = ok
		var reads []*fileData
		for _, name := range []string{"kube-apiserver.yaml", "etcd.yaml"} {
			if fi, ok := list[name]; ok {
				reads = append(reads, &fileData{Rel: name, Path: path.Join(d.Manifests, name), Present: true, Info: fi, HasInfo: true})
			}
		}
		read(ctx, n, reads, concurrency, d.Batch)
		for _, f := range reads {
			if f.Err != nil {
				s.ManifestErrs[f.Rel] = f.Err
				continue
			}
			p, err := parseManifest(f.Data)
			if err != nil {
				s.ManifestErrs[f.Rel] = err
				continue
			}
			if f.Rel == "etcd.yaml" {
				s.Etcd = p
			} else {
				s.APIServer = p
			}
		}
	}
	if d.PKIFromManifest && s.APIServer != nil {
		if ca := s.APIServer.Flags["client-ca-file"]; ca != "" && path.IsAbs(ca) {
			s.Dirs.PKI = path.Dir(ca)
		}
	}

	pkiList, _, err := listDir(ctx, n, s.Dirs.PKI)
	if err != nil {
		return nil, err
	}
	if fi, ok := pkiList["etcd"]; ok && fi.IsDir() {
		etcdList, _, err := listDir(ctx, n, path.Join(s.Dirs.PKI, "etcd"))
		if err != nil {
			return nil, err
		}
		for name, fi := range etcdList {
			pkiList["etcd/"+name] = fi
		}
	}
	kcList, _, err := listDir(ctx, n, s.Dirs.Kubeconfig)
	if err != nil {
		return nil, err
	}

	var reads []*fileData
	add := func(dir, rel string, list map[string]node.FileInfo) {
		f := &fileData{Rel: rel, Path: path.Join(dir, rel)}
		if fi, ok := list[rel]; ok && !fi.IsDir() {
			f.Present, f.Info, f.HasInfo = true, fi, true
			reads = append(reads, f)
		}
		s.Files[rel] = f
	}
	for _, rel := range pkiFiles() {
		add(s.Dirs.PKI, rel, pkiList)
	}
	for _, k := range kubeconfigSpecs() {
		add(s.Dirs.Kubeconfig, k.File, kcList)
	}
	if s.Dirs.KubeletPKI != "" {
		list, ok, err := listDir(ctx, n, s.Dirs.KubeletPKI)
		if err != nil {
			return nil, err
		}
		s.KubeletSeen = ok
		file := func(name string) *fileData {
			f := &fileData{Rel: path.Join(s.Dirs.KubeletPKI, name), Path: path.Join(s.Dirs.KubeletPKI, name), Present: true}
			f.Info, f.HasInfo = list[name], true
			reads = append(reads, f)
			return f
		}
		if _, ok := list["kubelet-server-current.pem"]; ok {
			s.KubeletServing = file("kubelet-server-current.pem")
			s.KubeletServing.HasInfo = false // a symlink: its target's mode counts
			var newest string
			for name, fi := range list {
				if strings.HasPrefix(name, "kubelet-server-2") && strings.HasSuffix(name, ".pem") && fi.Mode.IsRegular() && name > newest {
					newest = name
				}
			}
			if newest != "" {
				s.KubeletServingTarget = &fileData{Rel: path.Join(s.Dirs.KubeletPKI, newest), Path: path.Join(s.Dirs.KubeletPKI, newest), Present: true, Info: list[newest], HasInfo: true}
			}
		} else if _, ok := list["kubelet.crt"]; ok {
			s.KubeletServing = file("kubelet.crt")
			if _, ok := list["kubelet.key"]; ok {
				s.KubeletKey = file("kubelet.key")
			}
		}
	}
	read(ctx, n, reads, concurrency, d.Batch)

	// Files the kubeconfigs reference instead of embedding.
	var refs []*fileData
	for _, k := range kubeconfigSpecs() {
		f := s.Files[k.File]
		if f.Data == nil {
			continue
		}
		kc, err := LoadKubeconfig(f.Data)
		if err != nil {
			continue
		}
		for _, p := range []string{kc.CAFile, kc.ClientCertFile, kc.ClientKeyFile} {
			if p == "" {
				continue
			}
			if !path.IsAbs(p) {
				p = path.Join(s.Dirs.Kubeconfig, p)
			}
			if _, ok := s.Referenced[p]; !ok {
				r := &fileData{Rel: p, Path: p, Present: true}
				s.Referenced[p] = r
				refs = append(refs, r)
			}
		}
	}
	read(ctx, n, refs, concurrency, d.Batch)
	for _, r := range refs {
		if errors.Is(r.Err, fs.ErrNotExist) {
			r.Present, r.Err = false, nil
		}
	}
	return s, nil
}

// listDir lists dir; a missing directory is an empty listing (ok false).
func listDir(ctx context.Context, n node.Node, dir string) (map[string]node.FileInfo, bool, error) {
	out := map[string]node.FileInfo{}
	if dir == "" {
		return out, false, nil
	}
	list, err := n.ReadDir(ctx, dir)
	if err != nil {
		// Some implementations cannot tell absence from other failures
		// when listing; stat tells.
		if errors.Is(err, fs.ErrNotExist) {
			return out, false, nil
		}
		if _, serr := n.Stat(ctx, dir); errors.Is(serr, fs.ErrNotExist) {
			return out, false, nil
		}
		return nil, false, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, fi := range list {
		out[fi.Name] = fi
	}
	return out, true, nil
}

// read reads files in one batch command when batch is set (falling back to
// single reads if the batch fails), else concurrently.
func read(ctx context.Context, n node.Node, files []*fileData, concurrency int, batch bool) {
	if len(files) == 0 {
		return
	}
	if batch {
		if err := readBatch(ctx, n, files); err == nil {
			return
		}
		for _, f := range files {
			f.Data, f.Err = nil, nil
		}
	}
	readAll(ctx, n, files, concurrency)
}

// MaxFileSize bounds every file the audit reads: certificates, keys and
// kubeconfigs are a few KiB. A kubeconfig may name any path (/dev/zero, a
// log of gigabytes): that one gets ErrFileTooLarge or node.ErrNotRegular,
// never read.
const MaxFileSize = 1 << 20

// ErrFileTooLarge is a file larger than MaxFileSize.
var ErrFileTooLarge = fmt.Errorf("larger than %d MiB: not a certificate, key or kubeconfig", MaxFileSize>>20)

// readBatch reads every file with one shell command: for each file a header
// line, "F <size>" followed by the content, "L <size>" (larger than
// MaxFileSize, not sent), "X" (not a regular file), "N" (absent) or "E" (not
// readable), then the next. The output holds private keys: it is never
// logged.
func readBatch(ctx context.Context, n node.Node, files []*fileData) error {
	var script strings.Builder
	script.WriteString("for f in")
	for _, f := range files {
		script.WriteString(" " + node.ShellQuote(f.Path))
	}
	fmt.Fprintf(&script, `; do if [ -f "$f" ] && [ -r "$f" ]; then s=$(wc -c < "$f"); if [ "$s" -gt %d ]; then echo "L $s"; else printf 'F %%s\n' "$s"; head -c "$s" -- "$f"; fi; elif [ -f "$f" ]; then echo E; elif [ -e "$f" ]; then echo X; else echo N; fi; done`, MaxFileSize)
	res, err := n.Run(ctx, script.String(), node.HideOutput())
	if err != nil {
		return err
	}
	return parseBatch(res.Stdout, files)
}

// parseBatch splits readBatch's output among files.
func parseBatch(out []byte, files []*fileData) error {
	for _, f := range files {
		line, rest, ok := bytes.Cut(out, []byte("\n"))
		if !ok {
			return fmt.Errorf("batch read: output ends before %s", f.Path)
		}
		switch {
		case bytes.Equal(line, []byte("N")):
			f.Err = &fs.PathError{Op: "read", Path: f.Path, Err: fs.ErrNotExist}
		case bytes.Equal(line, []byte("E")):
			f.Err = &fs.PathError{Op: "read", Path: f.Path, Err: fs.ErrPermission}
		case bytes.Equal(line, []byte("X")):
			f.Err = &fs.PathError{Op: "read", Path: f.Path, Err: node.ErrNotRegular}
		case bytes.HasPrefix(line, []byte("L ")):
			f.Err = &fs.PathError{Op: "read", Path: f.Path, Err: ErrFileTooLarge}
		case bytes.HasPrefix(line, []byte("F ")):
			size, err := strconv.Atoi(strings.TrimSpace(string(line[2:])))
			if err != nil || size < 0 || size > len(rest) {
				return fmt.Errorf("batch read: bad header %q for %s", line, f.Path)
			}
			f.Data, rest = bytes.Clone(rest[:size]), rest[size:]
		default:
			return fmt.Errorf("batch read: bad header %q for %s", line, f.Path)
		}
		out = rest
	}
	if len(out) != 0 {
		return fmt.Errorf("batch read: %d unexpected bytes at the end", len(out))
	}
	return nil
}

// readAll reads files concurrently, at most concurrency at a time.
func readAll(ctx context.Context, n node.Node, files []*fileData, concurrency int) {
	if concurrency < 1 {
		concurrency = 1
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data, err := n.ReadFile(ctx, f.Path)
			if err != nil {
				f.Err = err
				return
			}
			if len(data) > MaxFileSize {
				f.Err = &fs.PathError{Op: "read", Path: f.Path, Err: ErrFileTooLarge}
				return
			}
			f.Data = data
		}()
	}
	wg.Wait()
}
