package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Names of everything the podlet creates on the host; ci/k8s/down removes the same.
const (
	netnsPrefix = "loom-pod-" // + pod IP index
	vethPrefix  = "loomv"     // host end; + pod IP index
	peerPrefix  = "loomp"     // pod end before it is renamed eth0 inside the namespace
)

// network owns the host bridge and hands out pod sandboxes (netns + veth + IP).
type network struct {
	bridge    string
	node      netip.Prefix // node address / pod subnet
	blackhole netip.Prefix

	mu   sync.Mutex
	used map[int]bool // offsets in the pod subnet
}

// sandbox is one pod's network namespace.
type sandbox struct {
	idx   int
	ip    netip.Addr
	netns string
	veth  string
}

func newNetwork(bridge string, node, blackhole netip.Prefix) (*network, error) {
	if node.Bits() > 28 {
		return nil, fmt.Errorf("pod subnet %s too small", node)
	}
	return &network{bridge: bridge, node: node, blackhole: blackhole, used: map[int]bool{}}, nil
}

func ip(args ...string) error {
	cmd := exec.Command("ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ipOut(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).Output()
	return string(out), err
}

// setup creates the bridge with the node address and the blackhole route, after
// removing whatever an earlier podlet may have left behind.
func (n *network) setup() error {
	n.cleanupAll()
	if _, err := ipOut("link", "show", n.bridge); err != nil {
		if err := ip("link", "add", n.bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+n.bridge+"/disable_ipv6", []byte("1"), 0o644)
	if out, _ := ipOut("-4", "addr", "show", "dev", n.bridge); !strings.Contains(out, " "+n.node.String()+" ") {
		if err := ip("addr", "replace", n.node.String(), "dev", n.bridge); err != nil {
			return err
		}
	}
	if err := ip("link", "set", n.bridge, "up"); err != nil {
		return err
	}
	// Everything in the blackhole range that is not a live pod fails at once, and
	// nothing in it is ever routed off the machine.
	if err := ip("route", "replace", "blackhole", n.blackhole.Masked().String()); err != nil {
		return err
	}
	return nil
}

// cleanupAll kills processes in, and deletes, every namespace and veth with our prefixes.
func (n *network) cleanupAll() {
	out, _ := ipOut("netns", "list")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], netnsPrefix) {
			killNetnsPids(f[0])
			_ = ip("netns", "del", f[0])
		}
	}
	out, _ = ipOut("-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			if strings.HasPrefix(name, vethPrefix) || strings.HasPrefix(name, peerPrefix) {
				_ = ip("link", "del", name)
			}
		}
	}
}

func killNetnsPids(ns string) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL} {
		out, _ := ipOut("netns", "pids", ns)
		for _, s := range strings.Fields(out) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				_ = syscall.Kill(pid, sig)
			}
		}
	}
	time.Sleep(50 * time.Millisecond)
}

func (n *network) allocate() (*sandbox, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	size := 1 << (32 - n.node.Bits())
	baseInt := u32(n.node.Masked().Addr())
	nodeOff := int(u32(n.node.Addr()) - baseInt)
	for off := 1; off < size-1; off++ {
		if off == nodeOff || n.used[off] {
			continue
		}
		n.used[off] = true
		v := baseInt + uint32(off)
		addr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		return &sandbox{idx: off, ip: addr, netns: fmt.Sprintf("%s%d", netnsPrefix, off), veth: fmt.Sprintf("%s%d", vethPrefix, off)}, nil
	}
	return nil, fmt.Errorf("pod subnet %s exhausted", n.node.Masked())
}

// create builds the namespace: a veth pair with the host end on the bridge and
// eth0 inside with the pod IP. There is no default route inside, so a pod can
// reach the node and other pods, and nothing else.
func (n *network) create(sb *sandbox) error {
	peer := fmt.Sprintf("%s%d", peerPrefix, sb.idx)
	steps := [][]string{
		{"netns", "add", sb.netns},
		{"link", "add", sb.veth, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", sb.netns},
		{"link", "set", sb.veth, "master", n.bridge},
		{"link", "set", sb.veth, "up"},
		{"-n", sb.netns, "link", "set", peer, "name", "eth0"},
		// A MAC derived from the IP: a pod that gets a recycled IP keeps the MAC the node's
		// neighbour cache already holds for it (with a fresh random MAC, the stale entry
		// made the new pod unreachable until the kernel re-probed, tens of seconds later).
		{"-n", sb.netns, "link", "set", "eth0", "address", macFor(sb.ip)},
		{"-n", sb.netns, "addr", "add", netip.PrefixFrom(sb.ip, n.node.Bits()).String(), "dev", "eth0"},
		{"-n", sb.netns, "link", "set", "eth0", "up"},
		{"-n", sb.netns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			n.teardown(sb)
			return err
		}
	}
	return nil
}

func (n *network) teardown(sb *sandbox) {
	if sb == nil {
		return
	}
	killNetnsPids(sb.netns)
	if err := ip("link", "del", sb.veth); err != nil && !strings.Contains(err.Error(), "Cannot find") {
		klog.V(2).Infof("%v", err)
	}
	if err := ip("netns", "del", sb.netns); err != nil && !strings.Contains(err.Error(), "No such file") {
		klog.V(2).Infof("%v", err)
	}
	n.mu.Lock()
	delete(n.used, sb.idx)
	n.mu.Unlock()
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// macFor is a locally administered unicast MAC holding the IPv4 address: 02:00:a.b.c.d.
func macFor(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}
