package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const ipForwardFile = "/proc/sys/net/ipv4/ip_forward"

// ipForwardMarker holds the value of ip_forward before the first lab turned it on.
var ipForwardMarker = filepath.Join(globalDir, "ip_forward.orig")

type ipLink struct {
	Name     string `json:"ifname"`
	Flags    []string
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

// hostLinks lists the links of the host's network namespace with their addresses.
// A dump that links changed under (another lab going down) is retried: ip
// then says "Dump was interrupted and may be inconsistent." before its JSON.
func hostLinks(ctx context.Context) ([]ipLink, error) {
	for attempt := 1; ; attempt++ {
		out, err := run(ctx, nil, "ip", "-d", "-j", "addr", "show")
		if err != nil {
			return nil, err
		}
		var links []ipLink
		jerr := json.Unmarshal(out, &links)
		if jerr == nil {
			return links, nil
		}
		if attempt >= 10 || !bytes.Contains(out, []byte("Dump was interrupted")) {
			return nil, fmt.Errorf("ip -j addr show: %w: %.200s", jerr, out)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func linkExists(name string) bool {
	_, err := os.Lstat("/sys/class/net/" + name)
	return err == nil
}

// ensureNetwork creates the lab's bridges, NAT and forwarding rules, and turns on ip_forward.
func ensureNetwork(ctx context.Context, cfg Config, needSecond bool, log *logger) error {
	start := time.Now()
	unlock, err := globalLock(ctx)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer unlock()

	br0, br1 := bridgeName(cfg.ID, 0), bridgeName(cfg.ID, 1)
	subnet, _ := parseSubnet(cfg.Subnet)
	hostIP, err := hostAddr(cfg.Subnet, 1)
	if err != nil {
		return err
	}
	links, err := hostLinks(ctx)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, l := range links {
		if l.Name == br0 {
			continue
		}
		for _, a := range l.AddrInfo {
			if a.Family != "inet" {
				continue
			}
			p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
			if err == nil && p.Overlaps(subnet) {
				return fmt.Errorf("lab %s: subnet %s is already in use on this machine by %s (%s/%d): give this lab another Subnet",
					cfg.ID, cfg.Subnet, l.Name, a.Local, a.PrefixLen)
			}
		}
	}
	if !linkExists(br0) {
		if _, err := run(ctx, nil, "ip", "link", "add", br0, "type", "bridge"); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if _, err := run(ctx, nil, "ip", "addr", "replace", hostIP.String()+"/"+prefixLen(cfg.Subnet), "dev", br0); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if _, err := run(ctx, nil, "ip", "link", "set", br0, "up"); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if needSecond {
		if !linkExists(br1) {
			if _, err := run(ctx, nil, "ip", "link", "add", br1, "type", "bridge"); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
		}
		// No host address on the second bridge, not even an IPv6 link-local one.
		disableIPv6(br1)
		if _, err := run(ctx, nil, "ip", "link", "set", br1, "up"); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}

	if err := enableIPForward(); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	c := ruleComment(cfg.ID)
	rules := [][]string{
		{"nat", "POSTROUTING", "-s", subnet.String(), "!", "-o", br0, "-m", "comment", "--comment", c, "-j", "MASQUERADE"},
		{"filter", "FORWARD", "-i", br0, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
		{"filter", "FORWARD", "-o", br0, "-m", "comment", "--comment", c, "-j", "ACCEPT"},
	}
	if needSecond {
		rules = append(rules, []string{"filter", "FORWARD", "-i", br1, "-o", br1, "-m", "comment", "--comment", c, "-j", "ACCEPT"})
	}
	for _, r := range rules {
		spec := append([]string{"iptables", "-w", "-t", r[0], "-C", r[1]}, r[2:]...)
		if _, err := run(ctx, nil, spec...); err == nil {
			continue
		}
		spec = append([]string{"iptables", "-w", "-t", r[0], "-I", r[1], "1"}, r[2:]...)
		if _, err := run(ctx, nil, spec...); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	log.step(start, "network %s %s (host %s)%s ready", br0, cfg.Subnet, hostIP, map[bool]string{true: ", " + br1 + " " + cfg.Subnet2 + " (no host address)"}[needSecond])
	return nil
}

func disableIPv6(link string) {
	os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("1"), 0o644)
}

// enableIPForward turns on IPv4 forwarding, recording the original value the first time.
// Called with the global lock held.
func enableIPForward() error {
	b, err := os.ReadFile(ipForwardFile)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if _, err := os.Stat(ipForwardMarker); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(ipForwardMarker, b, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(ipForwardFile, []byte("1"), 0o644)
}

// restoreIPForward puts ip_forward back to what it was before the first lab, when no lab (of any
// ID) has a bridge any more. Called with the global lock held.
func restoreIPForward(ctx context.Context) error {
	orig, err := os.ReadFile(ipForwardMarker)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	links, err := hostLinks(ctx)
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.LinkInfo.Kind == "bridge" && labBridgeRE.MatchString(l.Name) {
			return nil // another lab is up
		}
	}
	if err := os.WriteFile(ipForwardFile, []byte(strings.TrimSpace(string(orig))), 0o644); err != nil {
		return err
	}
	return os.Remove(ipForwardMarker)
}

// netnsMu serializes "ip netns add" in this process; the global lock does it across processes
// (concurrent first uses of /run/netns can stack its bind mount).
var netnsMu sync.Mutex

// ensureNodeNetwork creates the node's network namespace and its veth pairs, addresses and routes.
func ensureNodeNetwork(ctx context.Context, cfg Config, n *nodeState) error {
	ns := netnsName(cfg.ID, n.Name)
	if !netnsExists(ns) {
		netnsMu.Lock()
		err := func() error {
			unlock, err := globalLock(ctx)
			if err != nil {
				return err
			}
			defer unlock()
			// A plain file of that name (left in a /run that is not a tmpfs, after a reboot)
			// would make "ip netns add" fail.
			os.Remove("/run/netns/" + ns)
			_, err = run(ctx, nil, "ip", "netns", "add", ns)
			return err
		}()
		netnsMu.Unlock()
		if err != nil {
			return fmt.Errorf("lab: node %s: %w", n.Name, err)
		}
	}
	var host, inside strings.Builder
	fmt.Fprintf(&inside, "link set lo up\n")
	for j, k := range n.Networks {
		hv, eth := vethName(cfg.ID, n.Index, k), fmt.Sprintf("eth%d", j)
		if !linkExists(hv) {
			// A half-made pair from a crash cannot exist (veth pairs die together), but an
			// interface of that name in the namespace could if the host end was deleted by hand.
			run(ctx, nil, "ip", "-n", ns, "link", "del", eth)
			fmt.Fprintf(&host, "link add %s type veth peer name %s netns %s\n", hv, eth, ns)
		}
		state := "up"
		if n.Partitioned {
			state = "down"
		}
		fmt.Fprintf(&host, "link set %s master %s %s\n", hv, bridgeName(cfg.ID, k), state)
		fmt.Fprintf(&inside, "addr replace %s/%s dev %s\nlink set %s up\n", n.Addresses[j], prefixLen(cfg.subnetFor(k)), eth, eth)
	}
	if len(n.Networks) > 0 && n.Networks[0] == 0 {
		gw, _ := hostAddr(cfg.Subnet, 1)
		fmt.Fprintf(&inside, "route replace default via %s dev eth0\n", gw)
	}
	if _, err := run(ctx, strings.NewReader(host.String()), "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("lab: node %s: %w", n.Name, err)
	}
	for _, k := range n.Networks {
		if k == 1 {
			disableIPv6(vethName(cfg.ID, n.Index, k))
		}
	}
	if _, err := run(ctx, strings.NewReader(inside.String()), "ip", "-n", ns, "-batch", "-"); err != nil {
		return fmt.Errorf("lab: node %s: %w", n.Name, err)
	}
	return nil
}

// netnsExists reports whether /run/netns/ns is a mounted network namespace.
func netnsExists(ns string) bool {
	var fs syscall.Statfs_t
	return syscall.Statfs("/run/netns/"+ns, &fs) == nil && fs.Type == nsfsMagic
}

const nsfsMagic = 0x6e736673

// setLinks sets the host ends of the node's veth pairs up or down.
func setLinks(ctx context.Context, cfg Config, n *nodeState, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	for _, k := range n.Networks {
		if _, err := run(ctx, nil, "ip", "link", "set", vethName(cfg.ID, n.Index, k), state); err != nil {
			return fmt.Errorf("lab: node %s: %w", n.Name, err)
		}
	}
	return nil
}
