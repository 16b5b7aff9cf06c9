package renew

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// What `certs schedule` installs on a control plane.
const (
	NodeBinary        = "/usr/local/bin/kbootstrap"
	UnitName          = "kbootstrap-certs-renew"
	UnitDir           = "/etc/systemd/system"
	CronFile          = "/etc/cron.d/kbootstrap-certs-renew"
	CronLog           = "/var/log/kbootstrap-certs-renew.log"
	DefaultTextfile   = "/var/lib/node_exporter/textfile_collector/kbootstrap_certs_renew.prom"
	DefaultOnCalendar = "Mon *-*-* 03:00:00"
	DefaultCron       = "0 3 * * 1"
	DefaultStagger    = 30 * time.Minute
)

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	Inventory *inventory.Inventory
	// Nodes are the control planes to install on; each one's delay comes
	// from its place among all the inventory's control planes, so that a
	// partial run keeps the others' spacing.
	Nodes       []inventory.Node
	Connector   node.Connector
	Concurrency int

	// OnCalendar is the systemd timer's calendar ("" means
	// DefaultOnCalendar); Cron the crontab schedule where there is no
	// systemd ("" means DefaultCron).
	OnCalendar, Cron string
	// Within is the renewal window passed to --if-expiring-within (0: 30d).
	Within time.Duration
	// Stagger spaces the control planes: the i-th (from 0) waits i×Stagger
	// after the timer fires, then the timer's random delay of up to
	// Stagger/2, so two control planes start at least Stagger/2 apart.
	// 0 means DefaultStagger; a negative value means none.
	Stagger time.Duration
	// Binary is the Linux kbootstrap executable installed as NodeBinary;
	// "" means this very executable.
	Binary string
	// Textfile is the Prometheus textfile on the node ("" means
	// DefaultTextfile).
	Textfile string
	// Remove uninstalls the timer or cron entry instead.
	Remove bool

	Out    io.Writer
	Status *progress.Status
}

func (o ScheduleOptions) withDefaults() ScheduleOptions {
	if o.OnCalendar == "" {
		o.OnCalendar = DefaultOnCalendar
	}
	if o.Cron == "" {
		o.Cron = DefaultCron
	}
	if o.Within <= 0 {
		o.Within = 30 * 24 * time.Hour
	}
	if o.Stagger == 0 {
		o.Stagger = DefaultStagger
	}
	if o.Stagger < 0 {
		o.Stagger = 0
	}
	if o.Textfile == "" {
		o.Textfile = DefaultTextfile
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// validate refuses what would break the unit files or the cron entry.
func (o ScheduleOptions) validate() error {
	if !filepath.IsAbs(o.Textfile) {
		return fmt.Errorf("--textfile %s: an absolute path on the nodes is needed", o.Textfile)
	}
	if strings.ContainsAny(o.Textfile, " \t\n\"'\\%$;&|<>`") {
		return fmt.Errorf("--textfile %q: an absolute path without spaces, quotes or shell characters is needed", o.Textfile)
	}
	if strings.ContainsAny(o.OnCalendar, "\n\r") {
		return fmt.Errorf("--on-calendar %q: one line", o.OnCalendar)
	}
	return ValidateCron(o.Cron)
}

// ValidateCron checks a crontab schedule's shape: five fields, one line.
func ValidateCron(cron string) error {
	if strings.ContainsAny(cron, "\n\r") || len(strings.Fields(cron)) != 5 {
		return fmt.Errorf("--cron %q: five fields on one line (minute hour day-of-month month day-of-week)", cron)
	}
	return nil
}

// FormatWindow writes a window as --if-expiring-within takes it: "30d",
// "36h0m0s".
func FormatWindow(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// renewArgs is the renewal the timer runs on the node.
func (o ScheduleOptions) renewArgs() string {
	return fmt.Sprintf("%s certs renew --local --if-expiring-within %s --textfile %s", NodeBinary, FormatWindow(o.Within), o.Textfile)
}

// delay is the i-th control plane's fixed wait after the timer fires.
func (o ScheduleOptions) delay(i int) time.Duration { return time.Duration(i) * o.Stagger }

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// ServiceUnit is the oneshot service the timer starts on the i-th control
// plane.
func (o ScheduleOptions) ServiceUnit(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Installed by kbootstrap certs schedule; kbootstrap certs schedule --remove removes it.
[Unit]
Description=kbootstrap: renew this control plane's certificates expiring within %s
Documentation=https://github.com/kbootstrap/kbootstrap#cron-workflow
Wants=network-online.target
After=network-online.target containerd.service kubelet.service

[Service]
Type=oneshot
# A renewal restarts the static pods one at a time and waits on their health;
# the wait below keeps this control plane apart from the others.
TimeoutStartSec=infinity
`, FormatWindow(o.Within))
	if d := o.delay(i); d > 0 {
		fmt.Fprintf(&b, "ExecStartPre=/bin/sleep %d\n", seconds(d))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", o.renewArgs())
	return b.String()
}

// TimerUnit is the timer, the same on every control plane.
func (o ScheduleOptions) TimerUnit() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Installed by kbootstrap certs schedule; kbootstrap certs schedule --remove removes it.
[Unit]
Description=kbootstrap: certificate renewal (%s)
Documentation=https://github.com/kbootstrap/kbootstrap#cron-workflow

[Timer]
OnCalendar=%s
`, o.OnCalendar, o.OnCalendar)
	if r := o.Stagger / 2; r > 0 {
		fmt.Fprintf(&b, "RandomizedDelaySec=%d\n", seconds(r))
	}
	b.WriteString("Persistent=true\n\n[Install]\nWantedBy=timers.target\n")
	return b.String()
}

// CronEntry is the /etc/cron.d file of the i-th control plane on a node
// without systemd. Its random delay, jitter in [0, Stagger/2), is drawn once
// at install time (cron's sh has no $RANDOM) and kept by later runs.
func (o ScheduleOptions) CronEntry(i int, jitter time.Duration) string {
	cmd := o.renewArgs()
	if s := seconds(o.delay(i) + jitter); s > 0 {
		cmd = fmt.Sprintf("sleep %d && %s", s, cmd)
	}
	return fmt.Sprintf(`# Installed by kbootstrap certs schedule; kbootstrap certs schedule --remove removes it.
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
%s root %s >> %s 2>&1
`, o.Cron, cmd, CronLog)
}

// WorkstationCrontab is the crontab line that runs the renewal from the
// workstation over SSH instead, for `certs schedule --print`.
func WorkstationCrontab(cron, exe, inventoryFile string, within time.Duration, textfile, logFile string) string {
	cmd := fmt.Sprintf("%s -i %s certs renew --if-expiring-within %s", node.ShellQuote(exe), node.ShellQuote(inventoryFile), FormatWindow(within))
	if textfile != "" {
		cmd += " --textfile " + node.ShellQuote(textfile)
	}
	return fmt.Sprintf("%s %s >> %s 2>&1", cron, cmd, node.ShellQuote(logFile))
}

// ErrWrongBinary is returned when the kbootstrap to install cannot run on a
// node.
var ErrWrongBinary = errors.New("this kbootstrap cannot run on the node")

// linuxArch is the GOARCH of a Linux ELF executable.
func linuxArch(raw []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("not a Linux executable (%v)", err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("an ELF executable for %s", f.Machine)
}

// unameArch maps `uname -m` to GOARCH.
func unameArch(m string) string {
	switch m {
	case "x86_64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i686":
		return "386"
	case "armv7l", "armv6l":
		return "arm"
	}
	return m
}

// Schedule installs (or with Remove, removes) the renewal on each control
// plane: this kbootstrap as NodeBinary and a systemd timer, or a cron entry
// where the node has no systemd. Re-running converges: files are written
// only when they differ.
func Schedule(ctx context.Context, opts ScheduleOptions) error {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	var bin []byte
	var arch, sum string
	if !o.Remove {
		exe := o.Binary
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return err
			}
		}
		raw, err := os.ReadFile(exe)
		if err != nil {
			return fmt.Errorf("--binary: %w", err)
		}
		if arch, err = linuxArch(raw); err != nil {
			return fmt.Errorf("--binary %s: %w: pass --binary with a Linux build of kbootstrap", exe, err)
		}
		h := sha256.Sum256(raw)
		bin, sum = raw, hex.EncodeToString(h[:])
	}
	index := map[string]int{}
	for _, n := range o.Inventory.Nodes {
		if n.Role == inventory.RoleControlPlane {
			index[n.Name] = len(index)
		}
	}
	_, err := node.Parallel(ctx, o.Nodes, o.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		n, err := o.Connector.Connect(ctx, in)
		if err != nil {
			return struct{}{}, err
		}
		if !n.Privileged() {
			n = node.Sudo(n)
		}
		return struct{}{}, o.install(ctx, n, index[in.Name], bin, arch, sum)
	})
	return err
}

// changed writes file on n when its content differs; it reports whether it
// wrote.
func changed(ctx context.Context, n node.Node, file string, content []byte, mode os.FileMode) (bool, error) {
	old, err := n.ReadFile(ctx, file)
	if err == nil && bytes.Equal(old, content) {
		if fi, err := n.Stat(ctx, file); err == nil && fi.Mode.Perm() == mode {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := n.WriteFile(ctx, file, bytes.NewReader(content), node.WriteOptions{Mode: mode}); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	return true, nil
}

func (o ScheduleOptions) install(ctx context.Context, n node.Node, i int, bin []byte, arch, sum string) error {
	name := n.Name()
	res, err := n.Run(ctx, `uname -m; if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then echo systemd; elif [ -d /etc/cron.d ]; then echo cron; else echo none; fi`)
	if err != nil {
		return err
	}
	facts := strings.Fields(string(res.Stdout))
	if len(facts) != 2 {
		return fmt.Errorf("facts: unexpected output %q", res.Stdout)
	}
	machine, initSystem := unameArch(facts[0]), facts[1]

	if o.Remove {
		st := o.Status.Start(name + ": removing the renewal timer and cron entry")
		_, err := n.Run(ctx, fmt.Sprintf(`if [ -d /run/systemd/system ]; then systemctl disable --now %[1]s.timer 2>/dev/null || true; fi
rm -f %[2]s/%[1]s.timer %[2]s/%[1]s.service %[3]s
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi`, UnitName, UnitDir, CronFile))
		st.End(err)
		if err == nil {
			fmt.Fprintf(o.Out, "%s: renewal schedule removed (%s left in place)\n", name, NodeBinary)
		}
		return err
	}
	if initSystem == "none" {
		return errors.New("neither systemd nor /etc/cron.d: install cron, or run the renewal from the workstation (kbootstrap certs schedule --print)")
	}
	if machine != arch {
		return fmt.Errorf("%w: the node is linux/%s, this kbootstrap linux/%s: pass --binary with a linux/%s build", ErrWrongBinary, machine, arch, machine)
	}

	st := o.Status.Start(name + ": " + NodeBinary)
	res, err = n.Run(ctx, "sha256sum "+NodeBinary+" 2>/dev/null || true")
	if err == nil && !strings.HasPrefix(string(res.Stdout), sum+" ") {
		err = n.WriteFile(ctx, NodeBinary, bytes.NewReader(bin), node.WriteOptions{Mode: 0o755})
	}
	st.End(err)
	if err != nil {
		return err
	}

	if initSystem == "cron" {
		jitter := time.Duration(0)
		if half := int64(o.Stagger / 2 / time.Second); half > 0 {
			r, err := rand.Int(rand.Reader, big.NewInt(half))
			if err != nil {
				return err
			}
			jitter = time.Duration(r.Int64()) * time.Second
		}
		// Keep the delay drawn before: a re-run must not move the entry.
		if old, err := n.ReadFile(ctx, CronFile); err == nil {
			if j, ok := previousJitter(string(old), o, i); ok {
				jitter = j
			}
		}
		st := o.Status.Start(name + ": " + CronFile)
		wrote, err := changed(ctx, n, CronFile, []byte(o.CronEntry(i, jitter)), 0o644)
		st.End(err)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "%s: cron entry %s (%s, after %s): %s\n", name, CronFile, o.Cron, o.delay(i), verb(wrote))
		return nil
	}

	st = o.Status.Start(name + ": systemd timer " + UnitName + ".timer")
	err = o.installTimer(ctx, n, i)
	st.End(err)
	return err
}

func (o ScheduleOptions) installTimer(ctx context.Context, n node.Node, i int) error {
	if _, err := n.Run(ctx, "systemd-analyze calendar "+node.ShellQuote(o.OnCalendar)+" >/dev/null"); err != nil {
		return fmt.Errorf("--on-calendar %q: %w", o.OnCalendar, err)
	}
	svc, err := changed(ctx, n, UnitDir+"/"+UnitName+".service", []byte(o.ServiceUnit(i)), 0o644)
	if err != nil {
		return err
	}
	tmr, err := changed(ctx, n, UnitDir+"/"+UnitName+".timer", []byte(o.TimerUnit()), 0o644)
	if err != nil {
		return err
	}
	cmd := "systemctl enable --now " + UnitName + ".timer"
	if svc || tmr {
		cmd = "systemctl daemon-reload && " + cmd + " && systemctl restart " + UnitName + ".timer"
	}
	if _, err := n.Run(ctx, cmd); err != nil {
		return err
	}
	res, err := n.Run(ctx, "systemctl show -P NextElapseUSecRealtime "+UnitName+".timer")
	if err != nil {
		return err
	}
	next := strings.TrimSpace(string(res.Stdout))
	if next == "" {
		return fmt.Errorf("%s.timer is enabled but has no next run", UnitName)
	}
	fmt.Fprintf(o.Out, "%s: systemd timer %s.timer (%s, then %s + up to %s random): %s; next: %s\n",
		n.Name(), UnitName, o.OnCalendar, o.delay(i), o.Stagger/2, verb(svc || tmr), next)
	return nil
}

func verb(wrote bool) string {
	if wrote {
		return "installed"
	}
	return "unchanged"
}

// previousJitter recovers the random delay of an installed cron entry when
// its schedule and place are unchanged.
func previousJitter(old string, o ScheduleOptions, i int) (time.Duration, bool) {
	for _, line := range strings.Split(old, "\n") {
		rest, ok := strings.CutPrefix(line, o.Cron+" root sleep ")
		if !ok {
			continue
		}
		s, _, _ := strings.Cut(rest, " ")
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		j := time.Duration(secs)*time.Second - o.delay(i)
		if j >= 0 && j < o.Stagger/2 {
			return j, true
		}
	}
	return 0, false
}

// DefaultWorkstationLog is where --print's crontab line appends its output.
func DefaultWorkstationLog() string {
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".kbootstrap", "certs-renew.log")
	}
	return "kbootstrap-certs-renew.log"
}
