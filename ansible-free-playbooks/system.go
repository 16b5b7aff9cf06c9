package playbooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// sysctlModule sets a kernel parameter in a drop-in file (for boots to come)
// and live (for now).
type sysctlModule struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
	State string `yaml:"state"` // present (default) or absent (from the file only)
	// File is the drop-in (default /etc/sysctl.d/90-kbootstrap.conf).
	File string `yaml:"sysctl_file"`
	// Reload sets the live value too (default true).
	Reload *bool `yaml:"reload"`
}

var sysctlName = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

func (m *sysctlModule) validate(v validation) error {
	switch {
	case m.Name == "":
		return errors.New("name: missing")
	case !v.templated(m.Name) && !sysctlName.MatchString(m.Name):
		return fmt.Errorf("name %q: not a sysctl name", m.Name)
	}
	switch m.State {
	case "", "present":
		if m.Value == "" {
			return errors.New("value: missing")
		}
	case "absent":
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want present or absent", m.State)
		}
	}
	return nil
}

func (m *sysctlModule) run(ctx context.Context, e *env) (Result, error) {
	file := m.File
	if file == "" {
		file = "/etc/sysctl.d/90-kbootstrap.conf"
	}
	procPath := "/proc/sys/" + strings.ReplaceAll(m.Name, ".", "/")
	name := strings.ReplaceAll(m.Name, "/", ".")
	reload := m.Reload == nil || *m.Reload
	// One command reads both the live value and the drop-in.
	res, err := e.run(ctx, fmt.Sprintf("if [ -r %[1]s ]; then echo live; cat %[1]s; else echo none; fi; echo kb:sep; if [ -f %[2]s ]; then echo present; cat -- %[2]s; else echo missing; fi", node.ShellQuote(procPath), node.ShellQuote(file)))
	if err != nil {
		return Result{}, scriptError(res, err)
	}
	live, fileOut, _ := strings.Cut(string(res.Stdout), "kb:sep\n")
	liveKind, liveValue, _ := strings.Cut(live, "\n")
	fileKind, content, _ := strings.Cut(fileOut, "\n")
	if fileKind != "present" {
		content = ""
	}
	var changes []string
	next := sysctlEdit(content, name, m.Value, m.State == "absent")
	if next != content || (fileKind != "present" && m.State != "absent") {
		if e.check {
			changes = append(changes, file)
		} else {
			c, err := putFile(ctx, e, file, []byte(next), attrs{}, true)
			if err != nil {
				return Result{}, err
			}
			if len(c) > 0 {
				changes = append(changes, file)
			}
		}
	}
	if reload && m.State != "absent" {
		if liveKind != "live" {
			return Result{}, fmt.Errorf("%s: no such kernel parameter (%s is missing)", name, procPath)
		}
		want := strings.Join(strings.Fields(m.Value), " ")
		if have := strings.Join(strings.Fields(liveValue), " "); have != want {
			changes = append(changes, fmt.Sprintf("live %s -> %s", have, want))
			if !e.check {
				if res, err := e.run(ctx, fmt.Sprintf("printf '%%s\\n' %s > %s", node.ShellQuote(m.Value), node.ShellQuote(procPath))); err != nil {
					return Result{}, fmt.Errorf("set %s live: %w", name, scriptError(res, err))
				}
			}
		}
	}
	return changed(changes, name+" = "+m.Value), nil
}

// sysctlEdit sets (or removes) name in a sysctl.d file's content.
func sysctlEdit(content, name, value string, remove bool) string {
	var lines []string
	if content != "" {
		lines = strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	}
	want := name + " = " + value
	var out []string
	found := false
	for _, l := range lines {
		k, _, ok := strings.Cut(l, "=")
		k = strings.TrimSpace(k)
		if ok && !strings.HasPrefix(k, "#") && !strings.HasPrefix(k, ";") && strings.ReplaceAll(k, "/", ".") == name {
			if remove || found {
				continue
			}
			found = true
			out = append(out, want)
			continue
		}
		out = append(out, l)
	}
	if !found && !remove {
		out = append(out, want)
	}
	if len(out) == len(lines) && strings.Join(out, "\n") == strings.Join(lines, "\n") {
		return content
	}
	return joinLines(out)
}

// modprobeModule loads (or unloads) a kernel module and makes that last
// across boots through modules-load.d (and modprobe.d for params).
type modprobeModule struct {
	Name   string `yaml:"name"`
	State  string `yaml:"state"` // present (default) or absent
	Params string `yaml:"params"`
	// Persistent writes /etc/modules-load.d/NAME.conf (default true).
	Persistent *bool `yaml:"persistent"`
}

var moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (m *modprobeModule) validate(v validation) error {
	switch {
	case m.Name == "":
		return errors.New("name: missing")
	case !v.templated(m.Name) && !moduleName.MatchString(m.Name):
		return fmt.Errorf("name %q: not a kernel module name", m.Name)
	}
	switch m.State {
	case "", "present", "absent":
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want present or absent", m.State)
		}
	}
	return nil
}

func (m *modprobeModule) run(ctx context.Context, e *env) (Result, error) {
	persistent := m.Persistent == nil || *m.Persistent
	state := m.State
	if state == "" {
		state = "present"
	}
	options := ""
	if m.Params != "" {
		options = "options " + m.Name + " " + m.Params
	}
	var b strings.Builder
	fmt.Fprintf(&b, "m=%s params=%s state=%s persistent=%t options=%s\n", node.ShellQuote(m.Name), node.ShellQuote(m.Params), node.ShellQuote(state), persistent, node.ShellQuote(options))
	b.WriteString(checkFlag(e.check))
	b.WriteString(`mu=$(printf %s "$m" | tr - _)
loaded() { [ -d "/sys/module/$mu" ] || grep -qs "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin"; }
# put FILE CONTENT: atomically, when different.
put() {
  if [ "$(cat -- "$1" 2>/dev/null)" != "$2" ] || [ ! -f "$1" ]; then
    echo "kb:changed $1"
    [ "$check" = 1 ] && return 0
    mkdir -p -- "$(dirname -- "$1")" && printf '%s\n' "$2" > "$1.kbtmp" && mv -f -- "$1.kbtmp" "$1" || exit 3
  fi
}
drop() { if [ -e "$1" ]; then echo "kb:changed removed $1"; [ "$check" = 1 ] || rm -f -- "$1" || exit 3; fi; }
if [ "$state" = present ]; then
  if ! loaded; then
    echo "kb:changed loaded"
    if [ "$check" != 1 ]; then
      # shellcheck disable=SC2086
      modprobe -- "$m" $params || exit 3
    fi
  fi
  if [ "$persistent" = true ]; then
    put "/etc/modules-load.d/$m.conf" "$m"
    if [ -n "$options" ]; then put "/etc/modprobe.d/$m.conf" "$options"; else drop "/etc/modprobe.d/$m.conf"; fi
  fi
else
  if [ -d "/sys/module/$mu" ]; then echo "kb:changed unloaded"; [ "$check" = 1 ] || modprobe -r -- "$m" || exit 3; fi
  drop "/etc/modules-load.d/$m.conf"
  drop "/etc/modprobe.d/$m.conf"
fi
`)
	changes, _, err := e.script(ctx, b.String())
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Name), nil
}

// aptModule installs or removes Debian packages, optionally from a
// repository it adds with its signing key.
type aptModule struct {
	Name  strList `yaml:"name"` // "pkg" or "pkg=version", one or a list
	State string  `yaml:"state"`
	// UpdateCache runs apt-get update before installing when the lists are
	// older than CacheValidTime (default 1h), or always when a repository
	// was just added. With no package it only refreshes stale lists.
	UpdateCache        bool     `yaml:"update_cache"`
	CacheValidTime     string   `yaml:"cache_valid_time"`
	InstallRecommends  bool     `yaml:"install_recommends"`
	Purge              bool     `yaml:"purge"`
	Repo               *aptRepo `yaml:"repo"`
	AllowDowngrade     bool     `yaml:"allow_downgrade"`
	AllowChangeHeldPkg bool     `yaml:"allow_change_held_packages"`
}

// aptRepo is a repository with its signing key, written to
// /etc/apt/sources.list.d/NAME.list and /etc/apt/keyrings/NAME.{asc,gpg}.
type aptRepo struct {
	Name       string   `yaml:"name"`
	URI        string   `yaml:"uri"`
	Suite      string   `yaml:"suite"`
	Components []string `yaml:"components"`
	Arch       string   `yaml:"arch"`
	Key        string   `yaml:"key"`     // the key itself (armored)
	KeySrc     string   `yaml:"key_src"` // a local file holding it
	KeyURL     string   `yaml:"key_url"` // fetched by the workstation
}

var pkgName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:-]+)?$`)

func (m *aptModule) validate(v validation) error {
	if len(m.Name) == 0 && !m.UpdateCache && m.Repo == nil {
		return errors.New("name: missing (or update_cache: true, or repo)")
	}
	for _, p := range m.Name {
		if !v.templated(p) && !pkgName.MatchString(p) {
			return fmt.Errorf("name: %q is not a package name (pkg or pkg=version)", p)
		}
	}
	switch m.State {
	case "", "present", "absent":
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want present or absent", m.State)
		}
	}
	if m.CacheValidTime != "" && !v.templated(m.CacheValidTime) {
		if _, err := time.ParseDuration(m.CacheValidTime); err != nil {
			return fmt.Errorf("cache_valid_time: %w", err)
		}
	}
	if r := m.Repo; r != nil {
		switch {
		case r.Name == "" || r.URI == "" || r.Suite == "":
			return errors.New("repo: name, uri and suite are required")
		case !v.templated(r.Name) && !moduleName.MatchString(r.Name):
			return fmt.Errorf("repo: name %q: letters, digits, - and _ only", r.Name)
		}
		n := 0
		for _, k := range []string{r.Key, r.KeySrc, r.KeyURL} {
			if k != "" {
				n++
			}
		}
		if n != 1 {
			return errors.New("repo: give exactly one of key, key_src and key_url")
		}
	}
	return nil
}

func (m *aptModule) run(ctx context.Context, e *env) (Result, error) {
	var changes []string
	repoChanged := false
	if m.Repo != nil {
		c, err := m.Repo.ensure(ctx, e)
		if err != nil {
			return Result{}, fmt.Errorf("repo %s: %w", m.Repo.Name, err)
		}
		changes = append(changes, c...)
		repoChanged = len(c) > 0
	}
	valid := time.Hour
	if m.CacheValidTime != "" {
		valid, _ = time.ParseDuration(m.CacheValidTime)
	}
	state := m.State
	if state == "" {
		state = "present"
	}
	var opts []string
	if !m.InstallRecommends {
		opts = append(opts, "--no-install-recommends")
	}
	if m.AllowDowngrade {
		opts = append(opts, "--allow-downgrades")
	}
	if m.AllowChangeHeldPkg {
		opts = append(opts, "--allow-change-held-packages")
	}
	remove := "remove"
	if m.Purge {
		remove = "purge"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pkgs=%s state=%s update=%t force_update=%t valid=%d install_opts=%s remove=%s\n",
		node.ShellQuote(strings.Join(m.Name, " ")), node.ShellQuote(state), m.UpdateCache, repoChanged && !e.check, int(valid.Seconds()), node.ShellQuote(strings.Join(opts, " ")), remove)
	b.WriteString(checkFlag(e.check))
	b.WriteString(`export DEBIAN_FRONTEND=noninteractive
apt_opts="-q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
todo=
for p in $pkgs; do
  n=${p%%=*}; v=
  case "$p" in *=*) v=${p#*=} ;; esac
  line=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$n" 2>/dev/null) || line=
  st=${line%% *}; ver=${line#* }
  if [ "$state" = present ]; then
    if [ "$st" != installed ] || { [ -n "$v" ] && [ "$ver" != "$v" ]; }; then todo="$todo $p"; fi
  elif [ "$st" = installed ] || [ "$st" = half-installed ] || [ "$st" = unpacked ] || { [ "$remove" = purge ] && [ "$st" = config-files ]; }; then
    todo="$todo $n"
  fi
done
stamp=/var/lib/apt/periodic/kbootstrap-update-success-stamp
stale=1
if [ -f "$stamp" ] && [ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -lt "$valid" ]; then stale=0; fi
update() {
  apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null || exit 3
  mkdir -p /var/lib/apt/periodic && touch "$stamp"
}
if [ -z "$todo" ]; then
  if [ "$force_update" = true ]; then update
  elif [ -z "$pkgs" ] && [ "$update" = true ] && [ "$stale" = 1 ]; then
    echo "kb:changed cache updated"; [ "$check" = 1 ] || update
  fi
  exit 0
fi
if [ "$state" = present ]; then echo "kb:changed installed$todo"; else echo "kb:changed removed$todo"; fi
[ "$check" = 1 ] && exit 0
if [ "$state" = present ]; then
  if [ "$force_update" = true ] || { [ "$update" = true ] && [ "$stale" = 1 ]; }; then update; fi
  # shellcheck disable=SC2086
  apt-get $apt_opts $install_opts install $todo >/dev/null || exit 3
else
  # shellcheck disable=SC2086
  apt-get $apt_opts $remove $todo >/dev/null || exit 3
fi
`)
	c, _, err := e.script(ctx, b.String())
	if err != nil {
		return Result{}, err
	}
	changes = append(changes, c...)
	return changed(changes, strings.Join(m.Name, " ")), nil
}

// ensure writes the repository's key and list files.
func (r *aptRepo) ensure(ctx context.Context, e *env) ([]string, error) {
	key := []byte(r.Key)
	switch {
	case r.KeySrc != "":
		b, err := e.readLocal(r.KeySrc)
		if err != nil {
			return nil, fmt.Errorf("key_src: %w", err)
		}
		key = b
	case r.KeyURL != "":
		b, err := FetchURL(ctx, r.KeyURL)
		if err != nil {
			return nil, fmt.Errorf("key_url: %w", err)
		}
		key = b
	}
	keyFile := "/etc/apt/keyrings/" + r.Name + KeyringExt(key)
	opts := "signed-by=" + keyFile
	if r.Arch != "" {
		opts = "arch=" + r.Arch + " " + opts
	}
	line := fmt.Sprintf("deb [%s] %s %s", opts, r.URI, r.Suite)
	if len(r.Components) > 0 {
		line += " " + strings.Join(r.Components, " ")
	}
	var changes []string
	c, err := putFile(ctx, e, keyFile, key, attrs{Mode: "0644"}, true)
	if err != nil {
		return nil, err
	}
	if len(c) > 0 {
		changes = append(changes, keyFile)
	}
	listFile := "/etc/apt/sources.list.d/" + r.Name + ".list"
	c, err = putFile(ctx, e, listFile, []byte(line+"\n"), attrs{Mode: "0644"}, true)
	if err != nil {
		return nil, err
	}
	if len(c) > 0 {
		changes = append(changes, listFile)
	}
	return changes, nil
}

// KeyringExt is the extension apt wants for a signed-by file holding key:
// .asc for an armored key, .gpg for a binary one.
func KeyringExt(key []byte) string {
	if bytes.Contains(key, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		return ".asc"
	}
	return ".gpg"
}

// FetchURL GETs url from this machine (the workstation), as key_url does:
// at most 1 MiB, in 30 s, and only a 200 answer.
func FetchURL(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// serviceModule drives a systemd unit.
type serviceModule struct {
	Name         string `yaml:"name"`
	State        string `yaml:"state"` // started, stopped, restarted, reloaded
	Enabled      *bool  `yaml:"enabled"`
	DaemonReload bool   `yaml:"daemon_reload"`
}

func (m *serviceModule) validate(v validation) error {
	if m.Name == "" {
		return errors.New("name: missing")
	}
	switch m.State {
	case "", "started", "stopped", "restarted", "reloaded":
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want started, stopped, restarted or reloaded", m.State)
		}
	}
	if m.State == "" && m.Enabled == nil && !m.DaemonReload {
		return errors.New("give state, enabled or daemon_reload")
	}
	return nil
}

func (m *serviceModule) run(ctx context.Context, e *env) (Result, error) {
	enabled := ""
	if m.Enabled != nil {
		enabled = fmt.Sprint(*m.Enabled)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "u=%s state=%s enabled=%s daemon_reload=%t\n", node.ShellQuote(m.Name), node.ShellQuote(m.State), enabled, m.DaemonReload)
	b.WriteString(checkFlag(e.check))
	b.WriteString(`command -v systemctl >/dev/null 2>&1 || { echo "systemctl not found: the service module needs systemd" >&2; exit 3; }
if [ "$daemon_reload" = true ] && [ "$check" != 1 ]; then systemctl daemon-reload || exit 3; fi
if [ -n "$enabled" ]; then
  cur=$(systemctl is-enabled -- "$u" 2>/dev/null)
  case "$enabled:$cur" in
  true:enabled|true:enabled-runtime|true:static|true:alias|true:indirect|true:generated) ;;
  true:*) echo "kb:changed enabled"; [ "$check" = 1 ] || systemctl enable -- "$u" >/dev/null 2>&1 || systemctl enable -- "$u" || exit 3 ;;
  false:enabled|false:enabled-runtime) echo "kb:changed disabled"; [ "$check" = 1 ] || systemctl disable -- "$u" >/dev/null 2>&1 || systemctl disable -- "$u" || exit 3 ;;
  esac
fi
case "$state" in
started) systemctl is-active --quiet -- "$u" || { echo "kb:changed started"; [ "$check" = 1 ] || systemctl start -- "$u" || exit 3; } ;;
stopped) if systemctl is-active --quiet -- "$u"; then echo "kb:changed stopped"; [ "$check" = 1 ] || systemctl stop -- "$u" || exit 3; fi ;;
restarted) echo "kb:changed restarted"; [ "$check" = 1 ] || systemctl restart -- "$u" || exit 3 ;;
reloaded) echo "kb:changed reloaded"; [ "$check" = 1 ] || systemctl reload -- "$u" || exit 3 ;;
esac
`)
	changes, _, err := e.script(ctx, b.String())
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Name), nil
}
