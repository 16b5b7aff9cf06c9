// Command mkimages writes the container images a kubeadm cluster pulls, for clusters that cannot
// pull: one single-layer image per binary, built with go-containerregistry, saved as docker
// archives (`ctr -n k8s.io images import FILE` loads them) tagged exactly as
// `kubeadm config images list` prints.
//
//	mkimages -bin DIR -out DIR [-iptables-root /] IMAGE...
//
// DIR holds the static binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
// kube-proxy, etcd, etcdctl, etcdutl, coredns, pause). kube-proxy's image also carries Debian's
// iptables (nft) taken from -iptables-root: the binaries, the xtables modules and their shared
// libraries, found with ldd. Each image is written to OUT/<repository>_<tag>.tar with / and :
// replaced by _ (registry.k8s.io_kube-apiserver_v1.34.4.tar).
package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the fixed creation time of every image and file, for reproducible digests.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// spec says what goes into the image of a repository (by its last path element).
type spec struct {
	bins map[string]string // binary name in -bin -> path in the image
	// optional are binaries put in the image when -bin holds them: etcd's
	// image of the lab's previous minor has no etcdctl and etcdutl (their
	// version is not served by the module proxy).
	optional   map[string]string
	entrypoint []string
	iptables   bool
	// hostBins are the host's binaries copied at the same path, each with
	// the shared libraries ldd names for it.
	hostBins []string
	// files are literal files of the image.
	files map[string]string
}

var specs = map[string]spec{
	"kube-apiserver":          {bins: map[string]string{"kube-apiserver": "/usr/local/bin/kube-apiserver"}},
	"kube-controller-manager": {bins: map[string]string{"kube-controller-manager": "/usr/local/bin/kube-controller-manager"}},
	"kube-scheduler":          {bins: map[string]string{"kube-scheduler": "/usr/local/bin/kube-scheduler"}},
	"kube-proxy":              {bins: map[string]string{"kube-proxy": "/usr/local/bin/kube-proxy"}, iptables: true},
	"etcd": {bins: map[string]string{"etcd": "/usr/local/bin/etcd"},
		optional: map[string]string{"etcdctl": "/usr/local/bin/etcdctl", "etcdutl": "/usr/local/bin/etcdutl"}},
	"coredns": {bins: map[string]string{"coredns": "/coredns"}, entrypoint: []string{"/coredns"}},
	"pause":   {bins: map[string]string{"pause": "/pause"}, entrypoint: []string{"/pause"}},
	// agnhost as Kubernetes' e2e image (test/images/agnhost/Dockerfile): /agnhost, entrypoint /agnhost.
	"agnhost": {bins: map[string]string{"agnhost": "/agnhost"}, entrypoint: []string{"/agnhost"}},
	// kube-router as its upstream image (/usr/local/bin/kube-router, the entrypoint), with what it
	// runs: iptables (nft, as kube-proxy's), ipset, and iproute2's ip with the routing tables file it
	// appends its table to.
	"kube-router": {bins: map[string]string{"kube-router": "/usr/local/bin/kube-router"}, entrypoint: []string{"/usr/local/bin/kube-router"},
		iptables: true, hostBins: []string{"/usr/sbin/ipset", "/usr/bin/ip"},
		files: map[string]string{"/etc/iproute2/rt_tables": "255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n"}},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "mkimages: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "", "directory holding the static binaries")
	out := flag.String("out", "", "directory to write the image archives to")
	iptRoot := flag.String("iptables-root", "/", "root filesystem to take iptables (for kube-proxy) from")
	flag.Parse()
	if *bin == "" || *out == "" || flag.NArg() == 0 {
		return errors.New("usage: mkimages -bin DIR -out DIR [-iptables-root /] IMAGE...")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, ref := range flag.Args() {
		t := time.Now()
		file, err := build(ref, *bin, *out, *iptRoot)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		fi, _ := os.Stat(file)
		fmt.Printf("mkimages: %s -> %s (%.1f MB, %.1fs)\n", ref, file, float64(fi.Size())/1e6, time.Since(t).Seconds())
	}
	return nil
}

// FileName is the archive name of an image reference.
func FileName(ref string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar"
}

func build(ref, binDir, outDir, iptRoot string) (string, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return "", err
	}
	sp, ok := specs[path.Base(tag.RepositoryStr())]
	if !ok {
		return "", fmt.Errorf("no recipe for repository %s", tag.RepositoryStr())
	}
	layerFile, err := os.CreateTemp(outDir, ".layer-*.tar")
	if err != nil {
		return "", err
	}
	defer os.Remove(layerFile.Name())
	lw := newLayerWriter(layerFile)
	lw.dir("/tmp", 0o1777)
	lw.dir("/etc", 0o755)
	lw.file("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"), 0o644)
	lw.file("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	bins := maps.Clone(sp.bins)
	for b, p := range sp.optional {
		if _, err := os.Stat(filepath.Join(binDir, b)); err == nil {
			bins[b] = p
		}
	}
	names := make([]string, 0, len(bins))
	for b := range bins {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		if err := lw.hostFile(filepath.Join(binDir, b), bins[b], 0o755); err != nil {
			return "", err
		}
	}
	if sp.iptables {
		if err := addIptables(lw, iptRoot); err != nil {
			return "", fmt.Errorf("iptables: %w", err)
		}
	}
	if err := addHostBins(lw, iptRoot, sp.hostBins); err != nil {
		return "", err
	}
	fileNames := make([]string, 0, len(sp.files))
	for f := range sp.files {
		fileNames = append(fileNames, f)
	}
	sort.Strings(fileNames)
	for _, f := range fileNames {
		lw.file(f, []byte(sp.files[f]), 0o644)
	}
	if err := lw.close(); err != nil {
		return "", err
	}
	if err := layerFile.Close(); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromFile(layerFile.Name(), tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = []string{pathEnv}
	cf.Config.Entrypoint = sp.entrypoint
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.kbootstrap.lab": "true"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: epoch}); err != nil {
		return "", err
	}
	dst := filepath.Join(outDir, FileName(ref))
	tmp := dst + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return dst, os.Rename(tmp, dst)
}

// addIptables copies Debian's iptables-nft into the layer: xtables-nft-multi, the command names
// kube-proxy runs, the xtables extensions and every shared library ldd names for them.
func addIptables(lw *layerWriter, root string) error {
	multi := "/usr/sbin/xtables-nft-multi"
	if _, err := os.Stat(filepath.Join(root, multi)); err != nil {
		return fmt.Errorf("%s: %w (apt-get install iptables)", filepath.Join(root, multi), err)
	}
	files := []string{multi}
	extDir := "/usr/lib/x86_64-linux-gnu/xtables"
	exts, _ := filepath.Glob(filepath.Join(root, extDir, "*.so"))
	if len(exts) == 0 {
		return fmt.Errorf("no xtables extensions in %s", filepath.Join(root, extDir))
	}
	for _, e := range exts {
		files = append(files, strings.TrimPrefix(e, strings.TrimSuffix(root, "/")))
	}
	libs := map[string]bool{}
	for _, f := range files {
		deps, err := lddDeps(filepath.Join(root, f), root)
		if err != nil {
			return err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	for l := range libs {
		files = append(files, l)
	}
	files = append(files, "/etc/protocols", "/etc/services", "/etc/ethertypes")
	sort.Strings(files)
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			if strings.HasPrefix(f, "/etc/") {
				continue
			}
			return err
		}
		if err := lw.hostPath(root, f); err != nil {
			return err
		}
	}
	for _, cmd := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
		"ip6tables-restore", "iptables-nft", "iptables-nft-save", "iptables-nft-restore", "ip6tables-nft",
		"ip6tables-nft-save", "ip6tables-nft-restore"} {
		lw.symlink("/usr/sbin/"+cmd, "xtables-nft-multi")
	}
	return lw.err
}

// addHostBins copies the host's binaries (symlinks resolved: the image holds
// each at the path given) and every shared library ldd names for them.
func addHostBins(lw *layerWriter, root string, bins []string) error {
	libs := map[string]bool{}
	for _, b := range bins {
		real, err := filepath.EvalSymlinks(filepath.Join(root, b))
		if err != nil {
			return fmt.Errorf("%s: %w (apt-get install the package that holds it)", b, err)
		}
		if err := lw.hostFile(real, b, 0o755); err != nil {
			return err
		}
		deps, err := lddDeps(real, root)
		if err != nil {
			return err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	names := make([]string, 0, len(libs))
	for l := range libs {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		if err := lw.hostPath(root, l); err != nil {
			return err
		}
	}
	return lw.err
}

var lddRE = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// lddDeps lists the shared libraries (absolute paths, as the loader names them) of an ELF file.
func lddDeps(file, root string) ([]string, error) {
	if root != "/" && root != "" {
		return nil, fmt.Errorf("ldd of files under %s: only -iptables-root / is supported", root)
	}
	out, err := exec.Command("ldd", file).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", file, err)
	}
	var deps []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := lddRE.FindStringSubmatch(line); m != nil {
			deps = append(deps, m[1])
		}
	}
	return deps, nil
}

// layerWriter writes a layer tar, creating parent directories once.
type layerWriter struct {
	tw   *tar.Writer
	seen map[string]bool
	err  error
}

func newLayerWriter(w io.Writer) *layerWriter {
	return &layerWriter{tw: tar.NewWriter(w), seen: map[string]bool{"/": true}}
}

func (l *layerWriter) header(h *tar.Header) {
	if l.err != nil {
		return
	}
	p := path.Clean(h.Name)
	if l.seen[p] {
		return
	}
	l.parents(path.Dir(p))
	l.seen[p] = true
	h.Name = strings.TrimPrefix(p, "/")
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	h.ModTime, h.Format = epoch, tar.FormatPAX
	l.err = l.tw.WriteHeader(h)
}

func (l *layerWriter) parents(dir string) {
	if l.seen[dir] {
		return
	}
	l.header(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755})
}

func (l *layerWriter) dir(p string, mode int64) {
	l.header(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: mode})
}

func (l *layerWriter) symlink(p, target string) {
	l.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777})
}

func (l *layerWriter) file(p string, data []byte, mode int64) {
	if l.err != nil || l.seen[path.Clean(p)] {
		return
	}
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))})
	if l.err == nil {
		_, l.err = l.tw.Write(data)
	}
}

// hostFile copies a host file (following symlinks) to p in the layer.
func (l *layerWriter) hostFile(src, p string, mode int64) error {
	if l.err != nil || l.seen[path.Clean(p)] {
		return l.err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: fi.Size()})
	if l.err == nil {
		_, l.err = io.Copy(l.tw, f)
	}
	return l.err
}

// hostPath copies the file at p under root into the layer at the same path, reproducing every
// symlink met on the way (/lib -> usr/lib, /usr/sbin/iptables -> /etc/alternatives/...).
func (l *layerWriter) hostPath(root, p string) error {
	for hops := 0; hops < 40; hops++ {
		parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
		resolved := false
		for i := range parts {
			cur := "/" + strings.Join(parts[:i+1], "/")
			fi, err := os.Lstat(filepath.Join(root, cur))
			if err != nil {
				return err
			}
			if fi.Mode()&os.ModeSymlink == 0 {
				continue
			}
			target, err := os.Readlink(filepath.Join(root, cur))
			if err != nil {
				return err
			}
			l.symlink(cur, target)
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			p = path.Join(append([]string{target}, parts[i+1:]...)...)
			resolved = true
			break
		}
		if !resolved {
			fi, err := os.Stat(filepath.Join(root, p))
			if err != nil {
				return err
			}
			if fi.IsDir() {
				l.dir(p, int64(fi.Mode().Perm()))
				return l.err
			}
			return l.hostFile(filepath.Join(root, p), p, int64(fi.Mode().Perm()))
		}
	}
	return fmt.Errorf("%s: too many symlinks", p)
}

func (l *layerWriter) close() error {
	if l.err != nil {
		return l.err
	}
	return l.tw.Close()
}
