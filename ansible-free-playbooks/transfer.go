package playbooks

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"

	"github.com/kbootstrap/kbootstrap/node"
)

// localFiles caches what a run learns about local files (hashes, image
// references), so that 30 hosts do not hash the same binary 30 times.
type localFiles struct {
	mu   sync.Mutex
	sums map[string]localSum
	refs map[string][]string
}

type localSum struct {
	size  int64
	mtime time.Time
	sum   string
}

// resolve returns the file system and the path in it of a local path
// named by a module: absolute, or relative to the playbook's directory.
func (e *env) resolve(p string) (fs.FS, string, error) {
	if e.fs != nil && !filepath.IsAbs(p) {
		return e.fs, path.Clean(filepath.ToSlash(p)), nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, "", err
	}
	return os.DirFS("/"), strings.TrimPrefix(filepath.ToSlash(abs), "/"), nil
}

// sum returns the sha256 of a local file, cached by size and mtime.
func (c *localFiles) sum(fsys fs.FS, p string, fi fs.FileInfo) (string, error) {
	key := fmt.Sprintf("%T:%v:%s", fsys, fsys, p)
	c.mu.Lock()
	s, ok := c.sums[key]
	c.mu.Unlock()
	if ok && s.size == fi.Size() && s.mtime.Equal(fi.ModTime()) {
		return s.sum, nil
	}
	f, err := fsys.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	c.mu.Lock()
	c.sums[key] = localSum{size: fi.Size(), mtime: fi.ModTime(), sum: sum}
	c.mu.Unlock()
	return sum, nil
}

// uploadModule copies a local directory (or one file) of binaries or image
// tarballs to a directory on the node, sending only the files whose sha256
// or mode differs.
type uploadModule struct {
	Src  string `yaml:"src"`
	Dest string `yaml:"dest"`
	// Mode of every file; default: the local file's permission bits.
	Mode string `yaml:"mode"`
}

func (m *uploadModule) validate(v validation) error {
	switch {
	case m.Src == "":
		return errors.New("src: missing")
	case m.Dest == "":
		return errors.New("dest: missing")
	}
	return attrs{Mode: m.Mode}.validate(v)
}

type localFile struct {
	rel  string // path under dest
	path string // in fsys
	mode fs.FileMode
	sum  string
}

func (m *uploadModule) files(e *env) (fs.FS, []localFile, error) {
	fsys, root, err := e.resolve(m.Src)
	if err != nil {
		return nil, nil, err
	}
	var want fs.FileMode
	if m.Mode != "" {
		want, _ = parseMode(m.Mode)
	}
	var out []localFile
	add := func(p, rel string) error {
		fi, err := fs.Stat(fsys, p)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		sum, err := e.local.sum(fsys, p, fi)
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm()
		if want != 0 {
			mode = want
		}
		out = append(out, localFile{rel: rel, path: p, mode: mode, sum: sum})
		return nil
	}
	fi, err := fs.Stat(fsys, root)
	if err != nil {
		return nil, nil, fmt.Errorf("src: %w", err)
	}
	if !fi.IsDir() {
		return fsys, out, add(root, path.Base(root))
	}
	err = fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		return add(p, rel)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("src: %w", err)
	}
	return fsys, out, nil
}

func (m *uploadModule) run(ctx context.Context, e *env) (Result, error) {
	fsys, files, err := m.files(e)
	if err != nil {
		return Result{}, err
	}
	if len(files) == 0 {
		return Result{Status: StatusOK, Msg: "no files in " + m.Src}, nil
	}
	// One command hashes what is already there.
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s 2>/dev/null || exit 0\nfor f in", node.ShellQuote(m.Dest))
	for _, f := range files {
		b.WriteString(" " + node.ShellQuote(f.rel))
	}
	b.WriteString(`; do if [ -f "$f" ] && [ ! -L "$f" ]; then printf '%s %s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$(stat -c %a -- "$f")" "$f"; fi; done` + "\n")
	res, err := e.run(ctx, b.String(), node.HideOutput())
	if err != nil {
		return Result{}, scriptError(res, err)
	}
	have := parseHashListing(string(res.Stdout))
	var send, chmod []localFile
	for _, f := range files {
		r, ok := have[f.rel]
		switch {
		case !ok || r.sum != f.sum:
			send = append(send, f)
		case r.mode != strconv.FormatUint(uint64(f.mode), 8):
			chmod = append(chmod, f)
		}
	}
	if len(send) == 0 && len(chmod) == 0 {
		return Result{Status: StatusOK, Msg: fmt.Sprintf("%d files", len(files))}, nil
	}
	msg := fmt.Sprintf("%d of %d files sent", len(send), len(files))
	if len(chmod) > 0 {
		msg += fmt.Sprintf(", %d modes fixed", len(chmod))
	}
	if e.check {
		return Result{Status: StatusChanged, Msg: strings.Replace(msg, "sent", "to send", 1)}, nil
	}
	// Directories and modes in one command, then the files.
	b.Reset()
	dirs := map[string]bool{m.Dest: true}
	for _, f := range send {
		dirs[path.Join(m.Dest, path.Dir(f.rel))] = true
	}
	b.WriteString("set -e\nmkdir -p --")
	for _, d := range slices.Sorted(mapsKeys(dirs)) {
		b.WriteString(" " + node.ShellQuote(d))
	}
	b.WriteString("\n")
	for _, f := range chmod {
		fmt.Fprintf(&b, "chmod %o -- %s\n", f.mode, node.ShellQuote(path.Join(m.Dest, f.rel)))
	}
	if res, err := e.run(ctx, b.String()); err != nil {
		return Result{}, scriptError(res, err)
	}
	for _, f := range send {
		if err := writeLocal(ctx, e, fsys, f.path, path.Join(m.Dest, f.rel), f.mode); err != nil {
			return Result{}, err
		}
	}
	return Result{Status: StatusChanged, Msg: msg}, nil
}

func writeLocal(ctx context.Context, e *env, fsys fs.FS, src, dest string, mode fs.FileMode) error {
	f, err := fsys.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	r := io.Reader(f)
	if fi, err := f.Stat(); err == nil {
		// Let the node layer know the size without buffering the file.
		r = &sizedFile{Reader: bufio.NewReaderSize(f, 1<<20), n: int(fi.Size())}
	}
	if err := e.n.WriteFile(ctx, dest, r, node.WriteOptions{Mode: mode}); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	return nil
}

// sizedFile is a reader that knows how many bytes it holds.
type sizedFile struct {
	io.Reader
	n int
}

func (s *sizedFile) Len() int { return s.n }

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fetchModule copies a file from the node to the workstation: into
// DEST/HOST/SRC, or to DEST itself with flat. Local copies are 0600 (they
// may hold keys).
type fetchModule struct {
	Src  string `yaml:"src"`
	Dest string `yaml:"dest"`
	Flat bool   `yaml:"flat"`
}

func (m *fetchModule) validate(v validation) error {
	switch {
	case m.Src == "":
		return errors.New("src: missing")
	case m.Dest == "":
		return errors.New("dest: missing")
	}
	return nil
}

func (m *fetchModule) run(ctx context.Context, e *env) (Result, error) {
	local := filepath.Join(m.Dest, e.host.Name, filepath.FromSlash(m.Src))
	if m.Flat {
		local = m.Dest
		if strings.HasSuffix(m.Dest, "/") {
			local = filepath.Join(m.Dest, path.Base(m.Src))
		}
	}
	data, err := e.n.ReadFile(ctx, m.Src)
	if e.check && errors.Is(err, fs.ErrNotExist) {
		// An earlier task may create it.
		return Result{Status: StatusSkipped, Msg: m.Src + " does not exist (yet)"}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("read %s: %w", m.Src, err)
	}
	if old, err := os.ReadFile(local); err == nil && bytes.Equal(old, data) {
		return Result{Status: StatusOK, Msg: local}, nil
	}
	if e.check {
		return Result{Status: StatusChanged, Msg: local}, nil
	}
	if err := writeLocalFile(local, data); err != nil {
		return Result{}, err
	}
	return Result{Status: StatusChanged, Msg: local}, nil
}

// writeLocalFile writes a workstation file atomically, 0600.
func writeLocalFile(p string, data []byte) error {
	return atomicfile.WriteBytes(p, data, atomicfile.Options{Mode: 0o600, MkdirMode: 0o700})
}

// waitForModule waits for a TCP port (dialled from the node's side) or a
// path on the node.
type waitForModule struct {
	Host    string `yaml:"host"` // default 127.0.0.1
	Port    string `yaml:"port"`
	Path    string `yaml:"path"`
	State   string `yaml:"state"`   // started (default) or stopped for a port, present or absent for a path
	Timeout string `yaml:"timeout"` // default 60s
	Delay   string `yaml:"delay"`   // wait this long first
}

func (m *waitForModule) validate(v validation) error {
	if (m.Port == "") == (m.Path == "") {
		return errors.New("give exactly one of port and path")
	}
	if m.Port != "" && !v.templated(m.Port) {
		if p, err := strconv.Atoi(m.Port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("port %q: not a TCP port", m.Port)
		}
	}
	for _, d := range []string{m.Timeout, m.Delay} {
		if d != "" && !v.templated(d) {
			if _, err := time.ParseDuration(d); err != nil {
				return err
			}
		}
	}
	switch m.State {
	case "", "started", "stopped", "present", "absent":
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want started, stopped, present or absent", m.State)
		}
	}
	return nil
}

func (m *waitForModule) run(ctx context.Context, e *env) (Result, error) {
	if e.check {
		return Result{Status: StatusSkipped, Msg: "not waited for in check mode"}, nil
	}
	timeout := 60 * time.Second
	if m.Timeout != "" {
		timeout, _ = time.ParseDuration(m.Timeout)
	}
	if m.Delay != "" {
		d, _ := time.ParseDuration(m.Delay)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if m.Path != "" {
		want := "-e"
		if m.State == "absent" {
			want = "! -e"
		}
		tries := int(timeout / (200 * time.Millisecond))
		msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, m.Path)
		cmd := fmt.Sprintf("i=0; while [ $i -lt %d ]; do if [ %s %s ]; then exit 0; fi; sleep 0.2; i=$((i+1)); done; printf '%%s\\n' %s >&2; exit 3",
			tries, want, node.ShellQuote(m.Path), node.ShellQuote(msg))
		if res, err := e.run(ctx, cmd); err != nil {
			return Result{}, scriptError(res, err)
		}
		return Result{Status: StatusOK, Msg: m.Path}, nil
	}
	host := m.Host
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, m.Port)
	stopped := m.State == "stopped"
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := e.n.Dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
		}
		if (err == nil) != stopped {
			return Result{Status: StatusOK, Msg: addr}, nil
		}
		if time.Now().After(deadline) {
			if stopped {
				return Result{}, fmt.Errorf("%s still accepts connections after %s", addr, timeout)
			}
			return Result{}, fmt.Errorf("%s did not accept a connection within %s: %w", addr, timeout, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
}

// imageImportModule imports image tarballs into containerd (ctr -n k8s.io
// images import), skipping images already present.
type imageImportModule struct {
	Src         string  `yaml:"src"`    // a local tarball or a directory of *.tar
	Path        string  `yaml:"path"`   // a tarball already on the node
	Images      strList `yaml:"images"` // default: the references in the tarball
	Namespace   string  `yaml:"namespace"`
	Snapshotter string  `yaml:"snapshotter"`
}

func (m *imageImportModule) validate(v validation) error {
	switch {
	case (m.Src == "") == (m.Path == ""):
		return errors.New("give exactly one of src (local) and path (on the node)")
	case m.Path != "" && len(m.Images) == 0:
		return errors.New("images: required with path (the references the tarball holds)")
	}
	return nil
}

type tarball struct {
	fsys fs.FS
	path string
	refs []string
}

func (m *imageImportModule) tarballs(e *env) ([]tarball, error) {
	if m.Path != "" {
		return []tarball{{path: m.Path, refs: m.Images}}, nil
	}
	fsys, root, err := e.resolve(m.Src)
	if err != nil {
		return nil, err
	}
	fi, err := fs.Stat(fsys, root)
	if err != nil {
		return nil, fmt.Errorf("src: %w", err)
	}
	paths := []string{root}
	if fi.IsDir() {
		entries, err := fs.ReadDir(fsys, root)
		if err != nil {
			return nil, fmt.Errorf("src: %w", err)
		}
		paths = nil
		for _, d := range entries {
			if !d.IsDir() && (strings.HasSuffix(d.Name(), ".tar") || strings.HasSuffix(d.Name(), ".tar.gz")) {
				paths = append(paths, path.Join(root, d.Name()))
			}
		}
	}
	var out []tarball
	for _, p := range paths {
		refs := m.Images
		if len(refs) == 0 {
			if refs, err = e.local.imageRefs(fsys, p); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		out = append(out, tarball{fsys: fsys, path: p, refs: refs})
	}
	return out, nil
}

func (m *imageImportModule) run(ctx context.Context, e *env) (Result, error) {
	tbs, err := m.tarballs(e)
	if err != nil {
		return Result{}, err
	}
	ns := m.Namespace
	if ns == "" {
		ns = "k8s.io"
	}
	ctr := "ctr -n " + node.ShellQuote(ns)
	res, err := e.run(ctx, ctr+" images ls -q", node.HideOutput())
	if err != nil {
		return Result{}, fmt.Errorf("list images: %w", scriptError(res, err))
	}
	present := map[string]bool{}
	for _, l := range strings.Fields(string(res.Stdout)) {
		present[l] = true
	}
	var missing []tarball
	var names []string
	for _, tb := range tbs {
		for _, r := range tb.refs {
			if !present[normalizeRef(r)] {
				missing = append(missing, tb)
				names = append(names, normalizeRef(r))
				break
			}
		}
	}
	if len(missing) == 0 {
		return Result{Status: StatusOK, Msg: fmt.Sprintf("%d images present", len(tbs))}, nil
	}
	msg := "imported " + strings.Join(names, " ")
	if e.check {
		return Result{Status: StatusChanged, Msg: "would import " + strings.Join(names, " ")}, nil
	}
	importArgs := ctr + " images import"
	if m.Snapshotter != "" {
		importArgs += " --snapshotter " + node.ShellQuote(m.Snapshotter)
	}
	for _, tb := range missing {
		if tb.fsys == nil {
			if res, err := e.run(ctx, importArgs+" "+node.ShellQuote(tb.path)+" >/dev/null"); err != nil {
				return Result{}, fmt.Errorf("import %s: %w", tb.path, scriptError(res, err))
			}
			continue
		}
		// A local tarball goes to ctr on its standard input: no copy on
		// the node at a path another user could create or swap first.
		f, err := tb.fsys.Open(tb.path)
		if err != nil {
			return Result{}, err
		}
		res, err := e.run(ctx, importArgs+" - >/dev/null", node.Stdin(bufio.NewReaderSize(f, 1<<20)))
		f.Close()
		if err != nil {
			return Result{}, fmt.Errorf("import %s: %w", tb.path, scriptError(res, err))
		}
	}
	return Result{Status: StatusChanged, Msg: msg}, nil
}

// imageRefs reads the image references of a docker-archive or OCI tarball.
func (c *localFiles) imageRefs(fsys fs.FS, p string) ([]string, error) {
	key := fmt.Sprintf("%T:%v:%s", fsys, fsys, p)
	c.mu.Lock()
	refs, ok := c.refs[key]
	c.mu.Unlock()
	if ok {
		return refs, nil
	}
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch path.Clean(h.Name) {
		case "manifest.json":
			var mf []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&mf); err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			for _, m := range mf {
				refs = append(refs, m.RepoTags...)
			}
		case "index.json":
			var idx struct {
				Manifests []struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"manifests"`
			}
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
			for _, m := range idx.Manifests {
				if n := m.Annotations["io.containerd.image.name"]; n != "" {
					refs = append(refs, n)
				}
			}
		}
	}
	if len(refs) == 0 {
		return nil, errors.New("no image reference in the tarball (give images:)")
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	c.mu.Lock()
	c.refs[key] = refs
	c.mu.Unlock()
	return refs, nil
}

// normalizeRef spells a reference the way containerd lists it
// (busybox → docker.io/library/busybox:latest).
func normalizeRef(r string) string {
	name, digest, hasDigest := strings.Cut(r, "@")
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !hasSlash {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	if hasDigest {
		return name + "@" + digest
	}
	if i := strings.LastIndexByte(name, ':'); i < strings.LastIndexByte(name, '/') || i < 0 {
		name += ":latest"
	}
	return name
}

// remoteFile is a file upload found on the node.
type remoteFile struct{ sum, mode string }

// parseHashListing reads upload's listing: "SHA256 MODE NAME" per line.
func parseHashListing(out string) map[string]remoteFile {
	have := map[string]remoteFile{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) == 3 {
			have[f[2]] = remoteFile{f[0], f[1]}
		}
	}
	return have
}
