package nodetimer

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Kept is a job that keeps its output in a directory on every node (etcd
// snapshot schedule, backup schedule): where, how many, and when.
type Kept struct {
	// Dir on the nodes (0700) holds the Keep newest files.
	Dir  string
	Keep int
	// OnCalendar (systemd) and Cron (no systemd); RandomDelay spreads the
	// nodes' runs (0: the default; negative: none).
	OnCalendar, Cron string
	RandomDelay      time.Duration
}

// Or fills k's unset fields from def.
func (k Kept) Or(def Kept) Kept {
	if k.Dir == "" {
		k.Dir = def.Dir
	}
	if k.Keep == 0 {
		k.Keep = def.Keep
	}
	if k.OnCalendar == "" {
		k.OnCalendar = def.OnCalendar
	}
	if k.Cron == "" {
		k.Cron = def.Cron
	}
	if k.RandomDelay == 0 {
		k.RandomDelay = def.RandomDelay
	}
	return k
}

// Check refuses a Dir that cannot stand in a unit's command line as it is
// and a Keep under 1.
func (k Kept) Check() error {
	if !path.IsAbs(k.Dir) || strings.ContainsAny(k.Dir, " \t\n\"'\\%$;&|<>`*?") {
		return fmt.Errorf("--dir %q: an absolute path on the nodes without spaces, quotes or shell characters is needed", k.Dir)
	}
	if k.Keep < 1 {
		return fmt.Errorf("--keep %d: must be 1 or more", k.Keep)
	}
	return nil
}

// Into sets j's schedule and directory from k.
func (k Kept) Into(j Job) Job {
	j.OnCalendar, j.Cron = k.OnCalendar, k.Cron
	j.RandomDelay = max(k.RandomDelay, 0) // negative: none
	j.Dirs = []string{k.Dir}
	return j
}
