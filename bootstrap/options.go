package bootstrap

import (
	"io"
	"log/slog"
	"time"

	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Options configure Init and Join.
type Options struct {
	Inventory *inventory.Inventory
	Connector node.Connector
	// Nodes limits which nodes are joined (--host, --role); nil means all.
	// Facts are gathered from every node of the inventory.
	Nodes       []inventory.Node
	Concurrency int // workers joined at once; < 1 means 20
	DryRun      bool
	// SkipPhases names phases not to run (see PhaseNames).
	SkipPhases []string
	// KubeconfigOut is where admin.conf is written (mode 0600), its server
	// set to the control-plane endpoint; "" means ./<name>.kubeconfig.
	KubeconfigOut string
	// Status prints one line per step (and the plan of a dry run).
	Status *progress.Status
	// Stream prints kubeadm's output, "cp1: " prefixed and redacted.
	Stream   bool
	Redactor *node.Redactor
	Logger   *slog.Logger
	// ReadyTimeout bounds each wait for a Node to be Ready and an etcd
	// member to be healthy; 0 means 5 minutes.
	ReadyTimeout time.Duration
	// Out receives the closing summary (nil: discarded).
	Out io.Writer
}

// Result is what a run did.
type Result struct {
	// Changed counts the changes made (0: the cluster was already as the
	// inventory says).
	Changed int
	// Kubeconfig is the file written.
	Kubeconfig string
	// Took is the whole run; KubeadmTime the sum of every kubeadm
	// invocation's duration; WaitTime the time spent waiting, after the
	// joins, for etcd members to be healthy and Nodes Ready.
	Took, KubeadmTime, WaitTime time.Duration
}
