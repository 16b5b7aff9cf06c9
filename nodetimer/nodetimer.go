package nodetimer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Where a job goes on a node.
const (
	NodeBinary = "/usr/local/bin/kbootstrap"
	UnitDir    = "/etc/systemd/system"
	CronDir    = "/etc/cron.d"
	cronPath   = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Job is kbootstrap run on a node on a schedule.
type Job struct {
	// Name names the units (Name.service, Name.timer) and the cron file.
	Name string
	// Header is the comment line every file starts with (who installed it,
	// how to remove it).
	Header string
	// Description of the service, and of the timer.
	Description, TimerDescription string
	// Documentation is a URL for the units.
	Documentation string
	// After are the units the service starts after (network-online.target
	// is always one).
	After []string
	// ConditionPath must exist for the job to run (e.g. the etcd manifest):
	// ConditionPathExists= for systemd, a test before the command for cron.
	ConditionPath string
	// ServiceLines are extra lines of the [Service] section (comments,
	// TimeoutStartSec=, Nice=).
	ServiceLines []string
	// Args are kbootstrap's arguments (after NodeBinary), one shell word
	// each as written: no quoting is added.
	Args string
	// OnCalendar is the timer's calendar; Cron the crontab schedule where
	// there is no systemd.
	OnCalendar, Cron string
	// Delay is a fixed wait after the timer fires (spacing nodes apart);
	// RandomDelay the most of a random one on top (systemd's
	// RandomizedDelaySec; for cron drawn once at install and kept).
	Delay, RandomDelay time.Duration
	// CronLog receives the cron job's output; "" sends it to syslog
	// (logger -t Name).
	CronLog string
	// Dirs are created (mode 0700) before the job is installed.
	Dirs []string
}

// Command is what the job runs.
func (j Job) Command() string { return NodeBinary + " " + j.Args }

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// ServiceUnit is the oneshot service.
func (j Job) ServiceUnit() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n[Unit]\nDescription=%s\n", j.Header, j.Description)
	if j.Documentation != "" {
		fmt.Fprintf(&b, "Documentation=%s\n", j.Documentation)
	}
	fmt.Fprintf(&b, "Wants=network-online.target\nAfter=%s\n", strings.Join(append([]string{"network-online.target"}, j.After...), " "))
	if j.ConditionPath != "" {
		fmt.Fprintf(&b, "ConditionPathExists=%s\n", j.ConditionPath)
	}
	b.WriteString("\n[Service]\nType=oneshot\n")
	for _, l := range j.ServiceLines {
		b.WriteString(l + "\n")
	}
	if d := j.Delay; d > 0 {
		fmt.Fprintf(&b, "ExecStartPre=/bin/sleep %d\n", seconds(d))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", j.Command())
	return b.String()
}

// TimerUnit is the timer.
func (j Job) TimerUnit() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n[Unit]\nDescription=%s\n", j.Header, j.TimerDescription)
	if j.Documentation != "" {
		fmt.Fprintf(&b, "Documentation=%s\n", j.Documentation)
	}
	fmt.Fprintf(&b, "\n[Timer]\nOnCalendar=%s\n", j.OnCalendar)
	if r := j.RandomDelay; r > 0 {
		fmt.Fprintf(&b, "RandomizedDelaySec=%d\n", seconds(r))
	}
	b.WriteString("Persistent=true\n\n[Install]\nWantedBy=timers.target\n")
	return b.String()
}

// CronFile is the job's file in /etc/cron.d.
func (j Job) CronFile() string { return CronDir + "/" + j.Name }

// CronEntry is the cron file with the random delay jitter (in [0,
// RandomDelay)) already drawn.
func (j Job) CronEntry(jitter time.Duration) string {
	cmd := j.Command()
	if s := seconds(j.Delay + jitter); s > 0 {
		cmd = fmt.Sprintf("sleep %d && %s", s, cmd)
	}
	if j.ConditionPath != "" {
		cmd = fmt.Sprintf("[ -e %s ] && %s", j.ConditionPath, cmd)
	}
	if j.CronLog != "" {
		cmd += " >> " + j.CronLog + " 2>&1"
	} else {
		cmd += " 2>&1 | logger -t " + j.Name
	}
	return fmt.Sprintf("%s\nSHELL=/bin/sh\n%s\n%s root %s\n", j.Header, cronPath, j.Cron, cmd)
}

// PreviousJitter recovers the random delay of an installed cron entry when
// its schedule and delay are unchanged.
func (j Job) PreviousJitter(old string) (time.Duration, bool) {
	for _, line := range strings.Split(old, "\n") {
		rest, ok := strings.CutPrefix(line, j.Cron+" root ")
		if !ok {
			continue
		}
		if j.ConditionPath != "" {
			rest, _ = strings.CutPrefix(rest, "[ -e "+j.ConditionPath+" ] && ")
		}
		rest, ok = strings.CutPrefix(rest, "sleep ")
		if !ok {
			return 0, false
		}
		s, _, _ := strings.Cut(rest, " ")
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		jt := time.Duration(secs)*time.Second - j.Delay
		if jt >= 0 && jt < j.RandomDelay {
			return jt, true
		}
	}
	return 0, false
}

// Validate refuses what would break the unit files or the cron entry.
func (j Job) Validate() error {
	if strings.ContainsAny(j.OnCalendar, "\n\r") {
		return fmt.Errorf("--on-calendar %q: one line", j.OnCalendar)
	}
	if err := ValidateCron(j.Cron); err != nil {
		return err
	}
	if strings.ContainsAny(j.Args, "\n\r%") {
		return fmt.Errorf("the job's command %q: one line without %%", j.Args)
	}
	return nil
}

// ValidateCron checks a crontab schedule's shape: five fields, one line.
func ValidateCron(cron string) error {
	if strings.ContainsAny(cron, "\n\r") || len(strings.Fields(cron)) != 5 {
		return fmt.Errorf("--cron %q: five fields on one line (minute hour day-of-month month day-of-week)", cron)
	}
	return nil
}

// ErrWrongBinary is returned when the kbootstrap to install cannot run on a
// node.
var ErrWrongBinary = errors.New("this kbootstrap cannot run on the node")

// Binary is the kbootstrap executable installed on the nodes.
type Binary struct {
	Path   string
	Arch   string // GOARCH of the Linux executable
	SHA256 string
	data   []byte
}

// LoadBinary reads path ("" means this very executable) and checks that it
// is a Linux executable.
func LoadBinary(path string) (*Binary, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		path = exe
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--binary: %w", err)
	}
	arch, err := LinuxArch(raw)
	if err != nil {
		return nil, fmt.Errorf("--binary %s: %w: pass --binary with a Linux build of kbootstrap", path, err)
	}
	h := sha256.Sum256(raw)
	return &Binary{Path: path, Arch: arch, SHA256: hex.EncodeToString(h[:]), data: raw}, nil
}

// RunsOn checks that b runs on a node with facts f.
func (b *Binary) RunsOn(f Facts) error {
	if f.Arch != b.Arch {
		return fmt.Errorf("%w: the node is linux/%s, this kbootstrap linux/%s: pass --binary with a linux/%s build", ErrWrongBinary, f.Arch, b.Arch, f.Arch)
	}
	return nil
}

// LinuxArch is the GOARCH of a Linux ELF executable.
func LinuxArch(raw []byte) (string, error) {
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

// Printer receives one line per thing done (progress.Status is one).
type Printer interface {
	Printf(format string, args ...any)
}

// Stepper starts a step of progress (progress.Status).
type Stepper interface {
	Printer
	Do(title string, f func() error) error
}

// Facts are what Install needs to know of a node.
type Facts struct {
	Arch string // GOARCH
	Init string // systemd, cron or none
}

// GatherFacts reads the node's architecture and how it can run a timer.
func GatherFacts(ctx context.Context, n node.Node) (Facts, error) {
	res, err := n.Run(ctx, `uname -m; if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then echo systemd; elif [ -d `+CronDir+` ]; then echo cron; else echo none; fi`)
	if err != nil {
		return Facts{}, err
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) != 2 {
		return Facts{}, fmt.Errorf("facts: unexpected output %q", res.Stdout)
	}
	return Facts{Arch: unameArch(f[0]), Init: f[1]}, nil
}

// Install puts bin and the job on n (privileged), changing only what
// differs, and prints one line saying what it did. Without systemd it
// installs a cron entry; with neither it fails saying so.
func Install(ctx context.Context, n node.Node, j Job, bin *Binary, st Stepper) error {
	if err := j.Validate(); err != nil {
		return err
	}
	name := n.Name()
	f, err := GatherFacts(ctx, n)
	if err != nil {
		return err
	}
	if f.Init == "none" {
		return errors.New("neither systemd nor " + CronDir + ": install cron, or run the job from the workstation")
	}
	if err := bin.RunsOn(f); err != nil {
		return err
	}
	if err := st.Do(name+": "+NodeBinary, func() error { return installBinary(ctx, n, bin) }); err != nil {
		return err
	}
	for _, d := range j.Dirs {
		if _, err := n.Run(ctx, "install -d -m 0700 "+node.ShellQuote(d)); err != nil {
			return err
		}
	}
	if f.Init == "cron" {
		jitter := time.Duration(0)
		if half := int64(j.RandomDelay / time.Second); half > 0 {
			r, err := rand.Int(rand.Reader, big.NewInt(half))
			if err != nil {
				return err
			}
			jitter = time.Duration(r.Int64()) * time.Second
		}
		// Keep the delay drawn before: a re-run must not move the entry.
		if old, err := n.ReadFile(ctx, j.CronFile()); err == nil {
			if jt, ok := j.PreviousJitter(string(old)); ok {
				jitter = jt
			}
		}
		var wrote bool
		err := st.Do(name+": "+j.CronFile(), func() error {
			var err error
			wrote, err = WriteIfChanged(ctx, n, j.CronFile(), []byte(j.CronEntry(jitter)), 0o644)
			return err
		})
		if err != nil {
			return err
		}
		st.Printf("%s: cron entry %s (%s, after %s): %s", name, j.CronFile(), j.Cron, j.Delay, verb(wrote))
		return nil
	}
	return st.Do(name+": systemd timer "+j.Name+".timer", func() error { return installTimer(ctx, n, j, st) })
}

// InstallBinary puts bin at NodeBinary on n (privileged) unless it is
// there already, after checking that it runs on the node's architecture:
// the one way kbootstrap goes onto a node, for a timer or for a command
// that runs there (restore).
func InstallBinary(ctx context.Context, n node.Node, bin *Binary) error {
	f, err := GatherFacts(ctx, n)
	if err != nil {
		return err
	}
	if err := bin.RunsOn(f); err != nil {
		return err
	}
	return installBinary(ctx, n, bin)
}

func installBinary(ctx context.Context, n node.Node, bin *Binary) error {
	res, err := n.Run(ctx, "sha256sum "+NodeBinary+" 2>/dev/null || true")
	if err != nil {
		return err
	}
	if strings.HasPrefix(string(res.Stdout), bin.SHA256+" ") {
		return nil
	}
	if _, err := n.Run(ctx, "install -d -m 0755 /usr/local/bin"); err != nil {
		return err
	}
	return n.WriteFile(ctx, NodeBinary, bytes.NewReader(bin.data), node.WriteOptions{Mode: 0o755})
}

func installTimer(ctx context.Context, n node.Node, j Job, st Printer) error {
	if _, err := n.Run(ctx, "systemd-analyze calendar "+node.ShellQuote(j.OnCalendar)+" >/dev/null"); err != nil {
		return fmt.Errorf("--on-calendar %q: %w", j.OnCalendar, err)
	}
	svc, err := WriteIfChanged(ctx, n, UnitDir+"/"+j.Name+".service", []byte(j.ServiceUnit()), 0o644)
	if err != nil {
		return err
	}
	tmr, err := WriteIfChanged(ctx, n, UnitDir+"/"+j.Name+".timer", []byte(j.TimerUnit()), 0o644)
	if err != nil {
		return err
	}
	// A cron entry of an earlier install on this node goes.
	if _, err := n.Run(ctx, "rm -f "+j.CronFile()); err != nil {
		return err
	}
	cmd := "systemctl enable --now " + j.Name + ".timer"
	if svc || tmr {
		cmd = "systemctl daemon-reload && " + cmd + " && systemctl restart " + j.Name + ".timer"
	}
	if _, err := n.Run(ctx, cmd); err != nil {
		return err
	}
	res, err := n.Run(ctx, "systemctl show -P NextElapseUSecRealtime "+j.Name+".timer")
	if err != nil {
		return err
	}
	next := strings.TrimSpace(string(res.Stdout))
	if next == "" {
		return fmt.Errorf("%s.timer is enabled but has no next run", j.Name)
	}
	st.Printf("%s: systemd timer %s.timer (%s, then %s + up to %s random): %s; next: %s",
		n.Name(), j.Name, j.OnCalendar, j.Delay, j.RandomDelay, verb(svc || tmr), next)
	return nil
}

// Remove uninstalls the job's timer, service and cron entry from n; the
// binary stays (other jobs may use it).
func Remove(ctx context.Context, n node.Node, name string) error {
	_, err := n.Run(ctx, fmt.Sprintf(`if [ -d /run/systemd/system ]; then systemctl disable --now %[1]s.timer 2>/dev/null || true; fi
rm -f %[2]s/%[1]s.timer %[2]s/%[1]s.service %[3]s/%[1]s
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi`, name, UnitDir, CronDir))
	return err
}

// WriteIfChanged writes file on n when its content or mode differs; it
// reports whether it wrote.
func WriteIfChanged(ctx context.Context, n node.Node, file string, content []byte, mode os.FileMode) (bool, error) {
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

func verb(wrote bool) string {
	if wrote {
		return "installed"
	}
	return "unchanged"
}

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	Nodes       []inventory.Node
	Connector   node.Connector
	Concurrency int
	// Job is the job on each node (the same, or spaced apart by Delay).
	Job func(in inventory.Node) Job
	// Binary is the Linux kbootstrap to install ("" means this executable).
	Binary string
	// Remove uninstalls the job instead (the binary stays).
	Remove bool
	// What names the job in the progress lines ("renewal"); Kept says what
	// a removal leaves in place.
	What, Kept string
	Status     Stepper
}

// Schedule installs (or with Remove, removes) the job on every node, in
// parallel up to Concurrency, through sudo for a non-root user.
func Schedule(ctx context.Context, o ScheduleOptions) error {
	var bin *Binary
	if !o.Remove {
		var err error
		if bin, err = LoadBinary(o.Binary); err != nil {
			return err
		}
	}
	_, err := node.Parallel(ctx, o.Nodes, o.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		j := o.Job(in)
		n, err := o.Connector.Connect(ctx, in)
		if err != nil {
			return struct{}{}, err
		}
		if !n.Privileged() {
			n = node.Sudo(n)
		}
		if o.Remove {
			err := o.Status.Do(in.Name+": removing the "+o.What+" timer and cron entry", func() error { return Remove(ctx, n, j.Name) })
			if err == nil {
				o.Status.Printf("%s: %s schedule removed (%s left in place)", in.Name, o.What, o.Kept)
			}
			return struct{}{}, err
		}
		return struct{}{}, Install(ctx, n, j, bin, o.Status)
	})
	return err
}
