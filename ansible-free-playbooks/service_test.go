package playbooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// fakeSystemctl keeps unit states as files in $FAKE_SYSTEMD and logs every
// state-changing call: enough to check that the service module asks before
// it acts. The real thing is tested on lab nodes once they run systemd.
const fakeSystemctl = `#!/bin/sh
d=$FAKE_SYSTEMD
cmd=$1; shift
[ "$1" = "--quiet" ] && shift
[ "$1" = "--" ] && shift
u=$1
case $cmd in
is-enabled) if [ -e "$d/$u.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
is-active) [ -e "$d/$u.active" ] ;;
enable) touch "$d/$u.enabled"; echo "enable $u" >> "$d/log" ;;
disable) rm -f "$d/$u.enabled"; echo "disable $u" >> "$d/log" ;;
start) touch "$d/$u.active"; echo "start $u" >> "$d/log" ;;
stop) rm -f "$d/$u.active"; echo "stop $u" >> "$d/log" ;;
restart|reload) touch "$d/$u.active"; echo "$cmd $u" >> "$d/log" ;;
daemon-reload) echo daemon-reload >> "$d/log" ;;
esac
`

func TestServiceAgainstFakeSystemctl(t *testing.T) {
	bin, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("FAKE_SYSTEMD", state)
	log := func() string { b, _ := os.ReadFile(filepath.Join(state, "log")); return string(b) }
	cases := []struct {
		name, task        string
		first, second     HostStats
		logFirst, logNext string
	}{
		{"started and enabled", "service: {name: web, state: started, enabled: true, daemon_reload: true}",
			HostStats{OK: 1, Changed: 1}, HostStats{OK: 1}, "daemon-reload\nenable web\nstart web\n", "daemon-reload\n"},
		{"stopped and disabled", "service: {name: web, state: stopped, enabled: false}",
			HostStats{OK: 1, Changed: 1}, HostStats{OK: 1}, "disable web\nstop web\n", ""},
		{"restarted always", "service: {name: web, state: restarted}",
			HostStats{OK: 1, Changed: 1}, HostStats{OK: 1, Changed: 1}, "restart web\n", "restart web\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			play := "name: t\nhosts: all\ngather_facts: false\ntasks:\n  - name: svc\n    " + c.task + "\n"
			os.Remove(filepath.Join(state, "log"))
			recap, ev, err := runYAML(t, play, nil, true)
			if err != nil || *recap.Hosts["h1"] != (HostStats{OK: 1, Changed: 1}) || log() != "" {
				t.Fatalf("check: %v %+v log %q\n%s", err, recap.Hosts["h1"], log(), ev)
			}
			for i, want := range []struct {
				stats HostStats
				log   string
			}{{c.first, c.logFirst}, {c.second, c.logNext}} {
				os.Remove(filepath.Join(state, "log"))
				recap, ev, err := runYAML(t, play, nil, false)
				if err != nil || *recap.Hosts["h1"] != want.stats || log() != want.log {
					t.Errorf("run %d: %v %+v log %q, want %+v %q\n%s", i+1, err, recap.Hosts["h1"], log(), want.stats, want.log, ev)
				}
			}
		})
	}
}

// brokenConnector cannot reach one node.
type brokenConnector struct{ down string }

func (c brokenConnector) Connect(ctx context.Context, n inventory.Node) (node.Node, error) {
	if n.Name == c.down {
		return nil, errors.New("dial tcp: connection refused")
	}
	return localConnector{}.Connect(ctx, n)
}

func TestUnreachableHostFailsAlone(t *testing.T) {
	pb, err := Parse("p.yaml", []byte("name: t\nhosts: all\ntasks:\n  - name: a\n    debug: {msg: hi}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	recap, err := Run(context.Background(), pb, Options{Inventory: testInventory("h1", "h2"), Connector: brokenConnector{down: "h2"}, Reporter: ev})
	nes := node.NodeErrors(err)
	if len(nes) != 1 || nes[0].Node != "h2" || !strings.Contains(err.Error(), "connect: dial tcp: connection refused") {
		t.Fatalf("error %v", err)
	}
	if *recap.Hosts["h1"] != (HostStats{OK: 1}) || *recap.Hosts["h2"] != (HostStats{Failed: 1}) {
		t.Errorf("recap h1 %+v h2 %+v", recap.Hosts["h1"], recap.Hosts["h2"])
	}
}

func TestTaskTimeout(t *testing.T) {
	play := "name: t\nhosts: all\ngather_facts: false\ntasks:\n  - name: slow\n    shell: exec sleep 5\n    timeout: 200ms\n"
	_, _, err := runYAML(t, play, nil, false)
	if err == nil || !strings.Contains(err.Error(), `task "slow": timed out after 200ms`) {
		t.Errorf("error %v", err)
	}
}
