package upgrade

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
	"github.com/kbootstrap/kbootstrap/node"
)

// The online path: without --binaries, kubeadm, kubelet and kubectl come
// from the Kubernetes apt repository the node already uses (pkgs.k8s.io,
// as prepare-node and kubernetes.io's "Installing kubeadm" set it up),
// which is one repository per minor: the target's is the node's with its
// minor switched. Staging fetches the target's packages and, for the way
// back, the running ones into the stage directory with an apt
// configuration of its own (the node's apt state is not touched before the
// node's turn); the node's turn installs them with apt-get and switches
// the node's repository to the target's minor.

// SourcesList is the node's list of the Kubernetes repository, written by
// prepare-node and by kubernetes.io's install instructions.
const SourcesList = "/etc/apt/sources.list.d/kubernetes.list"

// DefaultPackageRepository is pkgs.k8s.io's base of the per-minor
// repositories (<base>/v1.34/deb/).
const DefaultPackageRepository = "https://pkgs.k8s.io/core:/stable:"

// aptSource is the line of a per-minor Kubernetes repository in a
// sources.list file.
type aptSource struct {
	line    string // the whole line
	uri     string // https://pkgs.k8s.io/core:/stable:/v1.33/deb/
	base    string // https://pkgs.k8s.io/core:/stable:
	minor   string // v1.33
	keyFile string // its signed-by ("": apt's trusted keys)
}

var perMinorURI = regexp.MustCompile(`^(.+)/(v[0-9]+\.[0-9]+)/deb/?$`)

// parseSources finds the one line of a per-minor Kubernetes repository
// (<base>/vX.Y/deb/) in the sources.list file named file.
func parseSources(file string, raw []byte) (aptSource, error) {
	var found []aptSource
	for _, line := range strings.Split(string(raw), "\n") {
		text, _, _ := strings.Cut(line, "#")
		f := strings.Fields(text)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		var opts []string
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 {
				o := f[0]
				f = f[1:]
				opts = append(opts, strings.Trim(o, "[]"))
				if strings.HasSuffix(o, "]") {
					break
				}
			}
		}
		if len(f) < 2 {
			continue
		}
		m := perMinorURI.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		s := aptSource{line: line, uri: f[0], base: m[1], minor: m[2]}
		for _, o := range opts {
			if k, ok := strings.CutPrefix(o, "signed-by="); ok {
				s.keyFile = k
			}
		}
		found = append(found, s)
	}
	switch len(found) {
	case 0:
		return aptSource{}, fmt.Errorf("%s: no deb line of a per-minor Kubernetes repository (<base>/vX.Y/deb/, as pkgs.k8s.io's)", file)
	case 1:
		return found[0], nil
	default:
		return aptSource{}, fmt.Errorf("%s: %d deb lines of per-minor Kubernetes repositories, want one", file, len(found))
	}
}

// minorOf is "v1.34" of v1.34.4.
func minorOf(v string) string {
	p := strings.SplitN(v, ".", 3)
	return p[0] + "." + p[1]
}

// repoURI is the repository of minor under base.
func repoURI(base, minor string) string {
	return strings.TrimSuffix(base, "/") + "/" + minor + "/deb/"
}

// switched is the sources.list raw with the line of s naming uri instead.
func (s aptSource) switched(raw []byte, uri string) []byte {
	return bytes.Replace(raw, []byte(s.line), []byte(strings.Replace(s.line, s.uri, uri, 1)), 1)
}

// packages is what a node's online upgrade reads and fetches.
type packages struct {
	src  aptSource
	list []byte // the node's SourcesList
	// installed: each of binaries' package version (1.33.13-1.1).
	installed map[string]string
	// uri is the target's repository, key its signing key as fetched.
	uri string
	key []byte
}

// packageFacts reads, for the online path, each node's Kubernetes
// repository and packages, and fetches the target repositories' keys from
// this machine; it returns what blocks, one line per node.
func (r *run) packageFacts(ctx context.Context, todo []*target) []string {
	var why []string
	type fetched struct {
		key []byte
		err error
	}
	keys := map[string]fetched{} // by repository: each key fetched once
	for _, t := range todo {
		p, err := r.readPackages(ctx, t)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", t.in.Name, err))
			continue
		}
		base := p.src.base
		if r.o.PackageRepository != "" {
			base = r.o.PackageRepository
		}
		p.uri = repoURI(base, minorOf(r.res.To))
		f, ok := keys[p.uri]
		if !ok {
			f.key, f.err = playbooks.FetchURL(ctx, p.uri+"Release.key")
			keys[p.uri] = f
		}
		if f.err != nil {
			why = append(why, fmt.Sprintf("%s: the signing key of %s: %v", t.in.Name, p.uri, f.err))
			continue
		}
		p.key, t.pkg = f.key, p
	}
	return why
}

func (r *run) readPackages(ctx context.Context, t *target) (*packages, error) {
	list, err := t.n.ReadFile(ctx, SourcesList)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (installed without the Kubernetes apt repository? give --binaries DIR)", SourcesList, err)
	}
	src, err := parseSources(SourcesList, list)
	if err != nil {
		return nil, err
	}
	res, err := t.n.Run(ctx, "dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\\n' "+strings.Join(binaries, " ")+" 2>/dev/null || true")
	if err != nil {
		return nil, err
	}
	p := &packages{src: src, list: list, installed: map[string]string{}}
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[1] == "installed" {
			p.installed[f[0]] = f[2]
		}
	}
	for _, b := range binaries {
		if p.installed[b] == "" {
			return nil, fmt.Errorf("package %s is not installed (the binaries were not installed from %s? give --binaries DIR)", b, src.uri)
		}
	}
	if up, _, _ := strings.Cut(p.installed["kubelet"], "-"); up != t.kubelet.String() {
		return nil, fmt.Errorf("package kubelet is %s but the kubelet reports v%s: it was replaced outside apt; give --binaries DIR", p.installed["kubelet"], t.kubelet)
	}
	return p, nil
}

// aptDir is where the packages of the target (or, with "-before", the
// running ones) are fetched on a node.
func aptDir(v, which string) string { return stageDir(v) + "/apt" + which }

// fetchScript fetches the packages want ("name=version", or
// "name=upstream" for its newest Debian revision) from the flat repository
// uri, signed by keyFile ("": apt's trusted keys), into dir/debs with an
// apt configuration of dir's own; the node's apt state stays as it is.
func fetchScript(dir, uri, keyFile string, want []string) string {
	opts := ""
	if keyFile != "" {
		opts = "[signed-by=" + keyFile + "] "
	}
	return fmt.Sprintf(`set -e
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
d=%[1]s; uri=%[2]s
a="-q -o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=$d/parts.d -o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o APT::Sandbox::User=root"
rm -rf "$d/lists" "$d/cache" "$d/debs"
mkdir -p "$d/parts.d" "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
printf 'deb %%s%%s /\n' %[3]s "$uri" > "$d/sources.list"
apt-get $a update >/dev/null
cd "$d/debs"
for w in %[4]s; do
  p=${w%%%%=*}; v=${w#*=}
  got=$(apt-cache $a madison "$p" | awk -F' *[|] *' -v v="$v" '$2 == v || index($2, v "-") == 1 {print $2}' | sort -V | tail -n 1)
  if [ -z "$got" ]; then
    echo "$uri has no package $p $v (it has: $(apt-cache $a madison "$p" | awk -F' *[|] *' '{print $2}' | tr '\n' ' '))" >&2
    exit 2
  fi
  apt-get $a download "$p=$got" >/dev/null
done`, node.ShellQuote(dir), node.ShellQuote(uri), node.ShellQuote(opts), strings.Join(want, " "))
}

// extractScript puts the binaries of the packages in dir/debs into stage,
// where the checks and `kubeadm upgrade plan` run them.
func extractScript(dir, stage string) string {
	return fmt.Sprintf(`set -e
d=%[1]s; s=%[2]s
rm -rf "$d/x"; mkdir "$d/x"
for f in "$d"/debs/*.deb; do dpkg-deb -x "$f" "$d/x"; done
for b in %[3]s; do install -m 0755 "$d/x/usr/bin/$b" "$s/$b"; done
rm -rf "$d/x"`, node.ShellQuote(dir), node.ShellQuote(stage), strings.Join(binaries, " "))
}

// installScript installs the packages of names from dir/debs with apt-get
// (a downgrade too: the way back) and holds them, as kubernetes.io's
// instructions do.
func installScript(dir string, names ...string) string {
	var debs []string
	for _, n := range names {
		debs = append(debs, node.ShellQuote(dir+"/debs/")+n+"_*.deb")
	}
	return fmt.Sprintf(`set -e
export DEBIAN_FRONTEND=noninteractive
apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends --allow-downgrades --allow-change-held-packages install %s >/dev/null
apt-mark hold %s >/dev/null`, strings.Join(debs, " "), strings.Join(names, " "))
}

// stagePackages fetches the target's packages and the running ones on
// every node of todo and extracts the target's binaries into stageDir.
func (r *run) stagePackages(ctx context.Context, todo []*target) error {
	return r.o.Status.Do(fmt.Sprintf("fetch kubeadm, kubelet, kubectl %s (and the running ones, the way back) on %d nodes", r.res.To, len(todo)), func() error {
		return eachTarget(ctx, todo, func(ctx context.Context, t *target) error {
			p := t.pkg
			dir := aptDir(r.res.To, "")
			key := dir + "/key" + playbooks.KeyringExt(p.key)
			if _, err := t.n.Run(ctx, "mkdir -p -m 0700 "+node.ShellQuote(dir)); err != nil {
				return fmt.Errorf("node %s: %w", t.in.Name, err)
			}
			if err := t.n.WriteFile(ctx, key, bytes.NewReader(p.key), node.WriteOptions{Mode: 0o644}); err != nil {
				return fmt.Errorf("node %s: %w", t.in.Name, err)
			}
			want := make([]string, len(binaries))
			old := make([]string, len(binaries))
			for i, b := range binaries {
				want[i] = b + "=" + strings.TrimPrefix(r.res.To, "v")
				old[i] = b + "=" + p.installed[b]
			}
			if _, err := t.n.Run(ctx, fetchScript(dir, p.uri, key, want)); err != nil {
				return fmt.Errorf("node %s: kubeadm, kubelet and kubectl %s from %s: %w", t.in.Name, r.res.To, p.uri, err)
			}
			if _, err := t.n.Run(ctx, extractScript(dir, stageDir(r.res.To))); err != nil {
				return fmt.Errorf("node %s: %w", t.in.Name, err)
			}
			if _, err := t.n.Run(ctx, fetchScript(aptDir(r.res.To, "-before"), p.src.uri, p.src.keyFile, old)); err != nil {
				return fmt.Errorf("node %s: the running packages (%s), for the way back, from %s: %w", t.in.Name, strings.Join(old, " "), p.src.uri, err)
			}
			return nil
		})
	})
}

// keyringBytes is key as the node's keyring file wants it: dearmored for a
// binary keyring (.gpg) when the repository serves it armored, as
// kubernetes.io's `gpg --dearmor` does.
func keyringBytes(file string, key []byte) ([]byte, error) {
	if !strings.HasSuffix(file, ".gpg") || playbooks.KeyringExt(key) != ".asc" {
		return key, nil
	}
	b, err := armor.Decode(bytes.NewReader(key))
	if err == nil {
		var raw []byte
		if raw, err = io.ReadAll(b.Body); err == nil {
			return raw, nil
		}
	}
	return nil, fmt.Errorf("dearmoring the key for %s: %w", file, err)
}

// switchSource points the node's Kubernetes repository at the target's
// minor (and its keyring at the target's key): the node's next `apt-get
// update` lists the packages it runs.
func (nr *nodeRun) switchSource(ctx context.Context) error {
	p, n := nr.t.pkg, nr.t.n
	if p.src.keyFile != "" {
		key, err := keyringBytes(p.src.keyFile, p.key)
		if err != nil {
			return err
		}
		if err := n.WriteFile(ctx, p.src.keyFile, bytes.NewReader(key), node.WriteOptions{Mode: 0o644}); err != nil {
			return err
		}
	}
	return n.WriteFile(ctx, SourcesList, bytes.NewReader(p.src.switched(p.list, p.uri)), node.WriteOptions{Mode: 0o644})
}

// backupAptScript adds to a node's backup (the shell of backup, $d) once,
// in $d/apt, the running packages fetched by stagePackages, the node's
// SourcesList and its keyring.
func (nr *nodeRun) backupAptScript() string {
	p := nr.t.pkg
	s := fmt.Sprintf(`if [ ! -e "$d/apt/done" ]; then
  rm -rf "$d/apt.tmp"; mkdir -p -m 0700 "$d/apt.tmp"
  cp -a %s "$d/apt.tmp/debs"
  cp -p %s "$d/apt.tmp/kubernetes.list"
`, node.ShellQuote(aptDir(nr.r.res.To, "-before")+"/debs"), SourcesList)
	if p.src.keyFile != "" {
		s += fmt.Sprintf("  cp -p %s \"$d/apt.tmp/keyring\"\n", node.ShellQuote(p.src.keyFile))
	}
	return s + `  touch "$d/apt.tmp/done"
  rm -rf "$d/apt"; mv "$d/apt.tmp" "$d/apt"
fi`
}

// rollbackScript puts back the packages of the backup dir with dpkg (the
// running ones, whatever apt thinks is installed), holds them, and puts
// back the node's repository and keyring (keyFile, "" when none).
func rollbackScript(dir, keyFile string) string {
	a := node.ShellQuote(dir + "/apt")
	s := fmt.Sprintf(`set -e
export DEBIAN_FRONTEND=noninteractive
dpkg --force-confdef --force-confold -i %[1]s/debs/*.deb >/dev/null
apt-mark hold %[2]s >/dev/null
cp -p %[1]s/kubernetes.list %[3]s`, a, strings.Join(binaries, " "), SourcesList)
	if keyFile != "" {
		s += fmt.Sprintf("\ncp -p %s/keyring %s", a, node.ShellQuote(keyFile))
	}
	return s
}

// rollbackPackages puts back the running packages, held, and the node's
// repository and keyring, from its backup dir.
func (nr *nodeRun) rollbackPackages(ctx context.Context, dir string) error {
	_, err := nr.t.n.Run(ctx, rollbackScript(dir, nr.t.pkg.src.keyFile))
	return err
}
