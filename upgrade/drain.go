package upgrade

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubectl/pkg/drain"
)

// cordonedBy marks a Node this upgrade cordoned, so that a later run
// uncordons one an interrupted run left cordoned, and never one its admin
// cordoned.
const cordonedBy = "kbootstrap.io/upgrade-cordoned"

func (nr *nodeRun) helper(ctx context.Context, out io.Writer) *drain.Helper {
	return &drain.Helper{
		Ctx:                 ctx,
		Client:              nr.r.cs,
		Force:               false, // a bare pod stops the drain: it would be lost
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true,
		GracePeriodSeconds:  -1,
		Timeout:             nr.r.o.DrainTimeout,
		Out:                 out,
		ErrOut:              out,
	}
}

// drain cordons the node (marking it as this upgrade's) and evicts its pods
// through the eviction API, which honours PodDisruptionBudgets; past
// DrainTimeout it fails naming the pods still there.
func (nr *nodeRun) drain(ctx context.Context) error {
	t := nr.t
	return nr.r.o.Status.Do(t.in.Name+": cordon and drain", func() error {
		n, err := nr.r.cs.CoreV1().Nodes().Get(ctx, t.in.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !n.Spec.Unschedulable {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, cordonedBy)
			if _, err := nr.r.cs.CoreV1().Nodes().Patch(ctx, t.in.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return err
			}
		}
		h := nr.helper(ctx, io.Discard)
		if err := drain.RunCordonOrUncordon(h, n, true); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
		if err := drain.RunNodeDrain(h, t.in.Name); err != nil {
			return fmt.Errorf("drain: %w%s", err, nr.blocking(context.WithoutCancel(ctx)))
		}
		return nil
	})
}

// blocking names the pods a drain left on the node and the
// PodDisruptionBudgets that hold them.
func (nr *nodeRun) blocking(ctx context.Context) string {
	pods, err := nr.r.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nr.t.in.Name})
	if err != nil {
		return ""
	}
	pdbs, _ := nr.r.cs.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
	var left []string
	for _, p := range pods.Items {
		if owned(p, "DaemonSet") || p.Annotations[corev1.MirrorPodAnnotationKey] != "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		s := p.Namespace + "/" + p.Name
		if pdbs != nil {
			for _, b := range pdbs.Items {
				sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
				if b.Namespace == p.Namespace && err == nil && sel.Matches(labels.Set(p.Labels)) {
					s += fmt.Sprintf(" (PodDisruptionBudget %s: %d disruptions allowed)", b.Name, b.Status.DisruptionsAllowed)
				}
			}
		}
		left = append(left, s)
	}
	if len(left) == 0 {
		return ""
	}
	return "; pods still on the node: " + strings.Join(left, ", ")
}

func owned(p corev1.Pod, kind string) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == kind {
			return true
		}
	}
	return false
}

// uncordon makes the node schedulable again if this upgrade cordoned it.
func (nr *nodeRun) uncordon(ctx context.Context) error {
	return nr.r.uncordonLeft(ctx, nr.t)
}

// uncordonLeft uncordons t when a run of upgrade cordoned it (its mark),
// and removes the mark.
func (r *run) uncordonLeft(ctx context.Context, t *target) error {
	n, err := r.cs.CoreV1().Nodes().Get(ctx, t.in.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if n.Annotations[cordonedBy] == "" {
		return nil
	}
	return r.o.Status.Do(t.in.Name+": uncordon", func() error {
		h := (&nodeRun{r: r, t: t}).helper(ctx, io.Discard)
		if err := drain.RunCordonOrUncordon(h, n, false); err != nil {
			return err
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, cordonedBy)
		_, err := r.cs.CoreV1().Nodes().Patch(ctx, t.in.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
}
