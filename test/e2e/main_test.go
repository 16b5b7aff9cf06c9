package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

var (
	// repoRoot is the product module's directory.
	repoRoot string
	// kbBinary is the kbootstrap binary built for this run.
	kbBinary string
	// skipReason is why lab tests cannot run on this machine ("" when they can).
	skipReason string

	labsMu sync.Mutex
	labs   = map[string]*lab.Lab{}
	// labErr remembers a lab that failed to come up, so every test reports
	// it instead of retrying.
	labErr = map[string]error{}
	// labLocks are the shared locks this process holds on its labs.
	labLocks = map[string]*os.File{}
	// heavyLabs are the heavy shared labs up (labSpec.heavy).
	heavyLabs = map[string]bool{}
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	skipReason = labPrerequisites()
	tmp, err := os.MkdirTemp("", "kbootstrap-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kbBinary = filepath.Join(tmp, "kbootstrap")
	build := exec.Command("go", "build", "-o", kbBinary, "./cmd/kbootstrap")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kbootstrap:", err)
		os.Exit(1)
	}
	code := m.Run()
	labsMu.Lock()
	ids := make([]string, 0, len(labs))
	for id := range labs {
		ids = append(ids, id)
	}
	labsMu.Unlock()
	for _, id := range ids {
		if err := downLab(id); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(tmp)
	os.Exit(code)
}

// downLab takes lab id down unless KBOOTSTRAP_KEEP_LAB is set or another
// test process still uses it (it holds the lab's shared lock).
func downLab(id string) error {
	labsMu.Lock()
	defer labsMu.Unlock()
	return downLabLocked(id)
}

// downLabLocked is downLab with labsMu held.
func downLabLocked(id string) error {
	delete(heavyLabs, id)
	l, ok := labs[id]
	if !ok || os.Getenv("KBOOTSTRAP_KEEP_LAB") != "" {
		return nil
	}
	lock := labLocks[id]
	delete(labs, id)
	delete(labLocks, id)
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Fprintf(os.Stderr, "lab %s left up: another test process uses it\n", id)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.Down(ctx); err != nil {
		return fmt.Errorf("lab %s down: %w", id, err)
	}
	return nil
}

// labPrerequisites says what this machine lacks to run lab nodes.
func labPrerequisites() string {
	if os.Geteuid() != 0 {
		return "lab tests need root (network, mount and PID namespaces); CI runs them as root"
	}
	for _, tool := range []string{"ip", "unshare", "nsenter", "debootstrap", "ssh-keygen", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("lab tests need %s (run .ci/run's apt-get install line)", tool)
		}
	}
	return ""
}

// labSpec is a lab a test asks for; labs with the same ID are shared.
type labSpec struct {
	id      string
	subnet  string
	subnet2 string
	nodes   []lab.NodeSpec
	// kubernetes makes VM-like nodes (systemd, containerd; lab.Config.Kubernetes).
	kubernetes bool
	// dedicated labs serve one test and go down when it ends, so that a
	// cluster's control plane does not load the machine for the tests after.
	dedicated bool
	// heavy shared labs run a control plane of their own: they go down when
	// a dedicated lab comes up (their tests come first in go test's order;
	// a test after that asks for one brings it up again).
	heavy bool
}

// sharedSpec is the lab most tests use: three control-plane nodes.
var sharedSpec = labSpec{
	id: "e2e", subnet: "10.79.0.0/24", subnet2: "10.80.0.0/24",
	nodes: []lab.NodeSpec{{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"}},
}

// sharedLab returns the lab of three control planes cp1..cp3, bringing it up
// on first use; it skips the test when the machine cannot run labs.
func sharedLab(t *testing.T) *lab.Lab { return labFor(t, sharedSpec) }

func labFor(t *testing.T, spec labSpec) *lab.Lab {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	labsMu.Lock()
	defer labsMu.Unlock()
	if l, ok := labs[spec.id]; ok {
		return l
	}
	if err, ok := labErr[spec.id]; ok {
		t.Fatalf("lab %s did not come up: %v", spec.id, err)
	}
	if spec.dedicated {
		for id := range heavyLabs {
			if err := downLabLocked(id); err != nil {
				t.Error(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := lab.Config{
		ID:      spec.id,
		Dir:     filepath.Join(repoRoot, ".lab", "test-"+spec.id),
		Subnet:  spec.subnet,
		Subnet2: spec.subnet2,
		Nodes:   spec.nodes,
		Log:     testLogWriter{},

		Kubernetes: spec.kubernetes,
	}
	if bin := artifactsBin(); bin != "" {
		cfg.ArtifactsDir = bin
	}
	// Several test processes (go test runs packages in parallel; developers
	// run tests side by side) may share a lab: each holds a shared lock while
	// it runs, and only the last one out takes it down. Up is idempotent: a
	// lab left by a crashed run is reused, stopped nodes are started.
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(cfg.Dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	labLocks[spec.id] = lock
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		labErr[spec.id] = err
		t.Fatalf("lab %s up: %v", spec.id, err)
	}
	labs[spec.id] = l
	if spec.heavy {
		heavyLabs[spec.id] = true
	}
	if spec.dedicated {
		t.Cleanup(func() {
			if err := downLab(spec.id); err != nil {
				t.Error(err)
			}
		})
	}
	return l
}

// artifactsBin is the directory of upstream binaries (kubeadm, etcd, ...),
// or "" when they were not built.
func artifactsBin() string {
	for _, d := range []string{os.Getenv("KBOOTSTRAP_ARTIFACTS_BIN"), filepath.Join(repoRoot, ".lab", "artifacts", "bin")} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "kubeadm")); err == nil {
			return d
		}
	}
	return ""
}

type testLogWriter struct{}

func (testLogWriter) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

// result is one run of the kbootstrap binary.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// kb runs the kbootstrap binary with args; -i is the shared lab's inventory
// unless args give one.
func kb(t *testing.T, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	r := kbRun(t, nil, args...)
	return r.stdout, r.stderr, r.code
}

// kbRun runs the binary with extra environment and its timing.
func kbRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return kbRunWatch(t, env, nil, args...)
}

// lineWriter hands each whole line written to it to f.
type lineWriter struct {
	buf []byte
	f   func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.f(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// kbRunWatch is kbRun that also hands each line of standard output to
// onLine (when not nil) as the binary prints it.
func kbRunWatch(t *testing.T, env []string, onLine func(string), args ...string) result {
	t.Helper()
	var f func(string, *os.Process)
	if onLine != nil {
		f = func(line string, _ *os.Process) { onLine(line) }
	}
	return kbRunProc(t, env, f, args...)
}

// kbRunProc is kbRunWatch whose onLine also gets the running process (to
// signal it).
func kbRunProc(t *testing.T, env []string, onLine func(string, *os.Process), args ...string) result {
	t.Helper()
	hasInv := false
	for _, a := range args {
		if a == "-i" || a == "--inventory" || strings.HasPrefix(a, "--inventory=") {
			hasInv = true
		}
	}
	if !hasInv && len(args) > 0 && args[0] != "version" {
		args = append([]string{"-i", sharedLab(t).InventoryFile}, args...)
	}
	// A bound for a run that hangs; an upgrade interrupted during its
	// second control plane (finishing it first) runs 10 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kbBinary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if onLine != nil {
		cmd.Stdout = io.MultiWriter(&out, &lineWriter{f: func(line string) { onLine(line, cmd.Process) }})
	}
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("kbootstrap %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("kbootstrap %s → exit %d in %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

var (
	helperOnce sync.Once
	helperBin  string
	helperErr  error
)

// kbHelper runs the nodewriter test helper (built once) against inv.
func kbHelper(t *testing.T, inv string, args ...string) result {
	helperOnce.Do(func() {
		helperBin = filepath.Join(filepath.Dir(kbBinary), "nodewriter")
		cmd := exec.Command("go", "build", "-o", helperBin, "./e2e/nodewriter")
		cmd.Dir = filepath.Join(repoRoot, "test")
		if out, err := cmd.CombinedOutput(); err != nil {
			helperErr = fmt.Errorf("build nodewriter: %v\n%s", err, out)
		}
	})
	if helperErr != nil {
		return result{code: -1, stderr: helperErr.Error()}
	}
	cmd := exec.Command(helperBin, append([]string{inv}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code, r.stderr = -1, err.Error()
	}
	return r
}

// prepareNodes runs the air-gapped prepare-node on the Kubernetes nodes of
// inv, as a user would: the artifacts' binaries and images; containerd's
// cgroup driver (cgroupfs in the lab's containers) and restrict_oom_score_adj
// (the lab's bounding set lacks CAP_SYS_RESOURCE) from the nodes' facts.
func prepareNodes(t *testing.T, inv string) result {
	t.Helper()
	images := filepath.Join(filepath.Dir(artifactsBin()), "images")
	r := kbRun(t, nil, "-i", inv, "playbook", "run", "prepare-node", "--binaries", artifactsBin(), "--images", images)
	if r.code != 0 {
		t.Fatalf("prepare-node: exit %d", r.code)
	}
	return r
}
