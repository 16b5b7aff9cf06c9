package lab

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The lab's stand-in for pkgs.k8s.io: nothing routes out of the lab, so the
// packages kubeadm, kubelet and kubectl of each version the lab builds are
// made here from its binaries (dpkg-deb), with the files and dependencies
// the official packages have, in a flat repository per minor laid out as
// pkgs.k8s.io's (<base>/v1.34/deb/{InRelease,Release.key,Packages,...}),
// signed by a key of the lab's own (gpg), and served over HTTP on the lab's
// host address.

// AptPackages are one version's packages.
type AptPackages struct {
	Version  string // v1.34.4
	Revision string // the Debian revision, 1.1 as pkgs.k8s.io's
	// Bin holds kubeadm, kubelet and kubectl of Version.
	Bin string
}

// AptBase is where the per-minor repositories are under an AptRepo's root,
// as on pkgs.k8s.io.
const AptBase = "core:/stable:"

// debSpecs are the official packages' contents and dependencies (the lab's
// nodes have each dependency; cri-tools and kubernetes-cni are the lab's
// own, not packages).
var debSpecs = []struct {
	name, depends, description string
	units                      map[string]string // path in the package: prepare-node's template
}{
	{"kubeadm", "kubelet (>= 1.19.0), kubectl (>= 1.19.0)", "Command-line utility for administering a Kubernetes cluster",
		map[string]string{"usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": "10-kubeadm.conf.tmpl"}},
	{"kubelet", "iptables (>= 1.4.21), iproute2, socat, util-linux, mount, ebtables, ethtool, conntrack", "Node agent for Kubernetes clusters",
		map[string]string{"usr/lib/systemd/system/kubelet.service": "kubelet.service.tmpl"}},
	{"kubectl", "", "Command-line utility for interacting with a Kubernetes cluster", nil},
}

// AptRepo writes under root a signed flat repository per minor of pkgs
// (several versions of one minor share it). The packages are built once per
// binary and cached under the lab's cache, as is the signing key.
func AptRepo(ctx context.Context, root string, pkgs ...AptPackages) error {
	cache := filepath.Join(cacheDir(), "apt")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	unlock, err := flock(ctx, filepath.Join(cache, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	gpgHome, err := aptKey(ctx, cache)
	if err != nil {
		return err
	}
	minors := map[string]bool{}
	for _, p := range pkgs {
		v := strings.Split(strings.TrimPrefix(p.Version, "v"), ".")
		if len(v) != 3 {
			return fmt.Errorf("lab: apt repository: version %q: want vX.Y.Z", p.Version)
		}
		dir := filepath.Join(root, AptBase, "v"+v[0]+"."+v[1], "deb")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, s := range debSpecs {
			deb, err := buildDeb(ctx, cache, p, s.name, s.depends, s.description, s.units)
			if err != nil {
				return err
			}
			dst := filepath.Join(dir, filepath.Base(deb))
			os.Remove(dst)
			if err := os.Link(deb, dst); err != nil {
				return err
			}
		}
		minors[dir] = true
	}
	for dir := range minors {
		if err := aptIndex(ctx, dir, gpgHome); err != nil {
			return err
		}
	}
	return nil
}

// aptKey makes the lab's signing key once (gpg, no passphrase) and returns
// its GnuPG home.
func aptKey(ctx context.Context, cache string) (string, error) {
	home := filepath.Join(cache, "gnupg")
	if _, err := os.Stat(filepath.Join(home, "Release.key")); err == nil {
		return home, nil
	}
	tmp := home + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	defer exec.Command("gpgconf", "--homedir", tmp, "--kill", "all").Run()
	if _, err := run(ctx, nil, "gpg", "--homedir", tmp, "--batch", "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", "kbootstrap lab apt repository <lab@kbootstrap.invalid>", "ed25519", "sign", "never"); err != nil {
		return "", fmt.Errorf("lab: apt repository key: %w", err)
	}
	if _, err := run(ctx, nil, "gpg", "--homedir", tmp, "--batch", "--armor", "--export", "-o", filepath.Join(tmp, "Release.key")); err != nil {
		return "", err
	}
	exec.Command("gpgconf", "--homedir", tmp, "--kill", "all").Run()
	os.RemoveAll(home)
	return home, os.Rename(tmp, home)
}

// buildDeb builds (or finds cached) the package name of p: its binary in
// /usr/bin and its systemd files, rendered from prepare-node's templates
// as the official packages have them.
func buildDeb(ctx context.Context, cache string, p AptPackages, name, depends, description string, units map[string]string) (string, error) {
	bin := filepath.Join(p.Bin, name)
	st, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("lab: apt repository: %w", err)
	}
	version := strings.TrimPrefix(p.Version, "v") + "-" + p.Revision
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s %d %d %s", name, version, depends, st.Size(), st.ModTime().UnixNano(), bin)
	files := map[string][]byte{}
	for path, tmpl := range units {
		b, err := os.ReadFile(filepath.Join(RepoRoot(), "ansible-free-playbooks/playbooks/prepare-node", tmpl))
		if err != nil {
			return "", err
		}
		files[path] = []byte(strings.ReplaceAll(string(b), "{{ .vars.bin_dir }}", "/usr/bin"))
		fmt.Fprintf(h, " %s %x", path, sha256.Sum256(b))
	}
	deb := filepath.Join(cache, "debs", hex.EncodeToString(h.Sum(nil))[:16], fmt.Sprintf("%s_%s_amd64.deb", name, version))
	if _, err := os.Stat(deb); err == nil {
		return deb, nil
	}
	tree, err := os.MkdirTemp(cache, "deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tree)
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: kbootstrap lab <lab@kbootstrap.invalid>\nSection: admin\nPriority: optional\nHomepage: https://kubernetes.io\n", name, version)
	if depends != "" {
		control += "Depends: " + depends + "\n"
	}
	files["DEBIAN/control"] = []byte(control + "Description: " + description + "\n Built by the kbootstrap lab from its own build of " + p.Version + ".\n")
	for path, b := range files {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(path)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tree, path), b, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755); err != nil {
		return "", err
	}
	if _, err := run(ctx, nil, "install", "-m", "0755", bin, filepath.Join(tree, "usr/bin", name)); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(deb), 0o755); err != nil {
		return "", err
	}
	// gzip -1: a few seconds for the three, where dpkg-deb's default xz
	// takes minutes.
	if _, err := run(ctx, nil, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, deb+".tmp"); err != nil {
		return "", fmt.Errorf("lab: apt repository: %s: %w", deb, err)
	}
	return deb, os.Rename(deb+".tmp", deb)
}

// aptIndex writes the Packages, Release, InRelease and Release.gpg of the
// flat repository dir, and its Release.key.
func aptIndex(ctx context.Context, dir, gpgHome string) error {
	debs, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil {
		return err
	}
	sort.Strings(debs)
	var packages bytes.Buffer
	for _, deb := range debs {
		control, err := exec.CommandContext(ctx, "dpkg-deb", "-f", deb).Output()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(deb)
		if err != nil {
			return err
		}
		packages.Write(bytes.TrimRight(control, "\n"))
		fmt.Fprintf(&packages, "\nFilename: %s\nSize: %d\nSHA256: %x\n\n", filepath.Base(deb), len(b), sha256.Sum256(b))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(packages.Bytes())
	zw.Close()
	index := map[string][]byte{"Packages": packages.Bytes(), "Packages.gz": gz.Bytes()}
	release := fmt.Sprintf("Origin: kbootstrap lab\nLabel: kbootstrap lab\nArchitectures: amd64\nDate: %s\nSHA256:\n", time.Now().UTC().Format(time.RFC1123Z))
	for _, name := range []string{"Packages", "Packages.gz"} {
		release += fmt.Sprintf(" %x %d %s\n", sha256.Sum256(index[name]), len(index[name]), name)
	}
	index["Release"] = []byte(release)
	key, err := os.ReadFile(filepath.Join(gpgHome, "Release.key"))
	if err != nil {
		return err
	}
	index["Release.key"] = key
	for name, b := range index {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	defer exec.Command("gpgconf", "--homedir", gpgHome, "--kill", "all").Run()
	rel := filepath.Join(dir, "Release")
	for _, args := range [][]string{
		{"--clearsign", "-o", filepath.Join(dir, "InRelease"), rel},
		{"--armor", "--detach-sign", "-o", filepath.Join(dir, "Release.gpg"), rel},
	} {
		if _, err := run(ctx, nil, append([]string{"gpg", "--homedir", gpgHome, "--batch", "--yes", "--passphrase", "", "--pinentry-mode", "loopback"}, args...)...); err != nil {
			return fmt.Errorf("lab: apt repository %s: signing: %w", dir, err)
		}
	}
	return nil
}

// HostAddr is this machine's address on the lab's bridge, which every node
// reaches.
func (l *Lab) HostAddr() (netip.Addr, error) { return hostAddr(l.Config.Subnet, 1) }

// ServeAptRepo serves root over HTTP on the lab's host address and returns
// its URL (http://10.x.y.1:port) and a function that stops it.
func (l *Lab) ServeAptRepo(root string) (string, func(), error) {
	ip, err := l.HostAddr()
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}
