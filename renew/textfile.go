package renew

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
)

// Results of a run, as the textfile's result label gives them.
const (
	ResultRenewed = "renewed" // at least one node renewed, none failed
	ResultNothing = "nothing" // nothing due
	ResultLocked  = "locked"  // another live run held a node's lock
	ResultFailed  = "failed"  // a node failed (restored or not)
)

// Result names a run's outcome from its error and the nodes it renewed.
func Result(err error, renewed []string) string {
	switch {
	case errors.Is(err, ErrLocked):
		return ResultLocked
	case err != nil:
		return ResultFailed
	case len(renewed) > 0:
		return ResultRenewed
	}
	return ResultNothing
}

const lastSuccessMetric = "kbootstrap_certs_renew_last_success_timestamp_seconds"

// writeTextfile writes the run's metrics to o.Textfile (0644, atomically).
func (o Options) writeTextfile(start time.Time, renewed []string, runErr error) error {
	end := o.Now()
	result := Result(runErr, renewed)
	lastSuccess := previousGauge(o.Textfile, lastSuccessMetric)
	if runErr == nil {
		lastSuccess = end.Unix()
	}
	var b bytes.Buffer
	gauge := func(name, help string, value int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, value)
	}
	gauge("kbootstrap_certs_renew_last_run_timestamp_seconds", "When the last certs renew run ended, as a Unix time.", end.Unix())
	gauge("kbootstrap_certs_renew_last_run_duration_seconds", "How long the last certs renew run took.", int64(end.Sub(start).Round(time.Second)/time.Second))
	success := int64(0)
	if runErr == nil {
		success = 1
	}
	gauge("kbootstrap_certs_renew_last_run_success", "1 when the last certs renew run succeeded (renewed, or nothing was due), else 0.", success)
	gauge("kbootstrap_certs_renew_last_run_renewed_nodes", "Control planes the last certs renew run renewed.", int64(len(renewed)))
	if lastSuccess > 0 {
		gauge(lastSuccessMetric, "When a certs renew run last succeeded, as a Unix time.", lastSuccess)
	}
	name := "kbootstrap_certs_renew_last_run_result"
	fmt.Fprintf(&b, "# HELP %s The last certs renew run's outcome: renewed, nothing (nothing due), locked (another run held a lock) or failed.\n# TYPE %s gauge\n", name, name)
	for _, r := range []string{ResultRenewed, ResultNothing, ResultLocked, ResultFailed} {
		v := 0
		if r == result {
			v = 1
		}
		fmt.Fprintf(&b, "%s{result=%q} %d\n", name, r, v)
	}
	return atomicfile.Write(o.Textfile, &b, atomicfile.Options{Mode: 0o644, MkdirMode: 0o755})
}

// previousGauge reads an unlabelled gauge from a previous textfile; 0 when
// absent or unreadable.
func previousGauge(file, name string) int64 {
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}
