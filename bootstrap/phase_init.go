package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// initLocalPhases are kubeadm init's phases (kubeadm v1.34) that work on the
// node itself: checks, certificates, kubeconfigs, static pod manifests and
// the kubelet. wait-control-plane follows; the phases after it only talk to
// the API server, and each converges when run again (kubeadm creates or
// updates what it uploads), so an init that stopped in one of them is
// resumed by kubeadm init again without these.
var initLocalPhases = []string{"preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start"}

// initResumes bounds how often one run resumes a kubeadm init that stopped
// after its control plane came up (each attempt polls the API for up to
// kubeadm's 1-minute API call timeout).
const initResumes = 2

// failedInitPhase returns the phase kubeadm init names in "error execution
// phase upload-config/kubeadm: ..." on the standard error carried by err.
func failedInitPhase(err error) (string, bool) {
	var ee *node.ExitError
	if !errors.As(err, &ee) {
		return "", false
	}
	m := failedPhaseRE.FindStringSubmatch(ee.Stderr)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var failedPhaseRE = regexp.MustCompile(`error execution phase ([a-z0-9/-]+)`)

// resumableInitPhase reports whether kubeadm init stopped in phase after its
// control plane came up (after wait-control-plane).
func resumableInitPhase(phase string) bool {
	top, _, _ := strings.Cut(phase, "/")
	return top != "wait-control-plane" && !slices.Contains(initLocalPhases, top)
}

type initPhase struct{ run, resume bool }

func (p *initPhase) Name() string { return "init" }

func (p *initPhase) Title() string { return "kubeadm init" }

func (p *initPhase) Prepare(_ context.Context, c *run) error {
	p.run = !c.formed || c.initIncomplete
	p.resume = c.initIncomplete
	if p.run && !p.resume {
		f := c.facts[c.first]
		if f.Joined || f.ControlPlane {
			return fmt.Errorf("node %s: no admin.conf, but it holds kubelet.conf or control-plane manifests (a failed init?): `kbootstrap reset --host %s` first", c.first, c.first)
		}
	}
	return nil
}

func (p *initPhase) ShouldRun() bool { return p.run }

func (p *initPhase) Plan() []string {
	if p.resume {
		return []string{"first control plane: its kubeadm init stopped after the control plane came up (no " + kubeadmConfigMap + " ConfigMap): kubeadm " + kubeadmInitArgs(true)}
	}
	return []string{"first control plane: kubeadm " + kubeadmInitArgs(false) + " (InitConfiguration with a new bootstrap token and certificate key, mode 0600, removed afterwards)"}
}

// initConfigPath is where init writes the first control plane's kubeadm
// configuration (secrets: 0600, removed after use).
const initConfigPath = ConfigDir + "/kubeadm-init.yaml"

// kubeadmInitArgs is the kubeadm init command line with initConfigPath:
// the whole init, or only its phases from wait-control-plane on (resume).
func kubeadmInitArgs(resume bool) string {
	args := "init --config " + initConfigPath + " --upload-certs"
	if resume {
		args += " --skip-phases " + strings.Join(initLocalPhases, ",")
	}
	return args
}

func (p *initPhase) Run(ctx context.Context, c *run) error {
	name := c.first
	title := "Initializing control plane " + name
	if p.resume {
		title = "Resuming kubeadm init on " + name + " (no " + kubeadmConfigMap + " ConfigMap: it stopped after the control plane came up)"
	}
	st := c.status().Start(title)
	err := func() error {
		token, err := NewToken()
		if err != nil {
			return err
		}
		key, err := NewCertificateKey()
		if err != nil {
			return err
		}
		c.addSecret(token, key)
		c.certKey = key
		in, _ := c.inv.Node(name)
		cfg, err := InitConfig(c.cluster, NodeParams{Name: name, Address: in.InternalIP()}, InitParams{Token: token, TokenTTL: ownTokenTTL, CertificateKey: key})
		if err != nil {
			return err
		}
		if err := c.writeSecretFile(ctx, name, initConfigPath, cfg); err != nil {
			return err
		}
		defer c.removeSecretFile(ctx, name, initConfigPath)
		if err := c.kubeadmInit(ctx, name, p.resume); err != nil {
			return err
		}
		c.addChanged(1)
		c.formed, c.initIncomplete = true, false
		c.facts[name].InCluster, c.facts[name].Admin = true, true
		return nil
	}()
	st.End(err)
	if err != nil {
		return err
	}
	return c.ensureNetwork(ctx, false)
}

// kubeadmInit runs kubeadm init with initConfigPath on name, or only its
// phases from wait-control-plane on when resume. An init that stops after
// its control plane came up (kubeadm gives each API call a minute: a load
// balancer not passing requests yet, an API server slow to serve writes) is
// resumed so, up to initResumes times.
func (c *run) kubeadmInit(ctx context.Context, name string, resume bool) error {
	_, err := c.kubeadmWatched(ctx, name, kubeadmInitArgs(resume))
	for attempt := 1; err != nil && attempt <= initResumes && ctx.Err() == nil; attempt++ {
		phase, ok := failedInitPhase(err)
		if !ok || !resumableInitPhase(phase) {
			break
		}
		c.status().Printf("• node %s: kubeadm init stopped in phase %s, after the control plane came up: running its phases from wait-control-plane on again (%d of %d)", name, phase, attempt, initResumes)
		c.log.Warn("kubeadm init resumed", "node", name, "phase", phase, "error", err)
		_, err = c.kubeadm(ctx, name, kubeadmInitArgs(true))
	}
	return err
}

// writeSecretFile writes a file holding secrets: mode 0600 in ConfigDir
// (0700).
func (c *run) writeSecretFile(ctx context.Context, name, path string, content []byte) error {
	n := c.nodes[name]
	if _, err := n.Run(ctx, "install -d -m 0700 "+ConfigDir); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	if err := n.WriteFile(ctx, path, bytes.NewReader(content), node.WriteOptions{Mode: 0o600}); err != nil {
		return fmt.Errorf("node %s: write %s: %w", name, path, err)
	}
	return nil
}
