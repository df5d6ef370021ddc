// Command podlet is a fake Kubernetes node for tests on machines without a
// container runtime. It registers a Node, binds every unscheduled pod to it,
// and runs each pod's containers as local processes inside a network namespace
// of their own (a veth pair on a host bridge whose subnet is blackholed on the
// host, so nothing leaves the machine). Container images are mapped to local
// binaries (see images.go). Pods reach the API server at the node address with a
// ServiceAccount token, as in-cluster clients expect (see incluster.go). It reports
// pod status (Ready, pod IPs), serves the kubelet's /containerLogs API for
// `kubectl logs`, and removes every process, namespace and link it made when it exits.
//
// `podlet dns ...` runs the small DNS server that stands in for coredns;
// `podlet bind-exec ...` starts a container process with its token mounted.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

type config struct {
	kubeconfig  string
	nodeName    string
	bridge      string
	podCIDR     netip.Prefix // on the bridge; the node owns the first address
	blackhole   netip.Prefix // routed to nowhere on the host
	kubeletPort int
	stateDir    string
	binDir      string
	imageDir    string
	tokenTTL    time.Duration
	workers     int
}

type podlet struct {
	cfg      config
	client   kubernetes.Interface
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	net      *network
	images   imageMap
	self     string // this binary, for bind-exec
	apiPort  int    // the API server's port, served on the node address
	caPEM    []byte // cluster CA for pods' ca.crt

	mu   sync.Mutex
	pods map[string]*podState // key: namespace/name
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dns" {
		dnsMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "bind-exec" {
		bindExecMain(os.Args[2:])
		return
	}
	var cfg config
	var podCIDR, blackhole string
	klog.InitFlags(nil)
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster")
	flag.StringVar(&cfg.nodeName, "node-name", "loom-node", "name of the Node to register")
	flag.StringVar(&cfg.bridge, "bridge", "loombr0", "host bridge for pod veths")
	flag.StringVar(&podCIDR, "pod-cidr", "10.244.0.1/20", "node address and pod subnet on the bridge")
	flag.StringVar(&blackhole, "blackhole", "10.244.0.0/16", "range blackholed on the host (must contain the pod subnet and the service range)")
	flag.IntVar(&cfg.kubeletPort, "kubelet-port", 10250, "port of the kubelet API (logs), on the node address")
	flag.StringVar(&cfg.stateDir, "state-dir", "/run/loom-k8s/podlet", "per-pod volumes and logs")
	flag.StringVar(&cfg.binDir, "bin-dir", "", "directory with echo-basic and podlet binaries (default: this binary's directory)")
	flag.StringVar(&cfg.imageDir, "image-dir", "", "directory of extra image binaries: an image not built in runs DIR/<last element of its repository>")
	flag.DurationVar(&cfg.tokenTTL, "token-expiration", time.Hour, "lifetime of the ServiceAccount tokens requested for pods (at least 10m)")
	flag.IntVar(&cfg.workers, "workers", 8, "parallel pod workers")
	flag.Parse()
	var err error
	if cfg.podCIDR, err = netip.ParsePrefix(podCIDR); err != nil || !cfg.podCIDR.Addr().Is4() {
		klog.Fatalf("bad --pod-cidr %q: %v", podCIDR, err)
	}
	if cfg.blackhole, err = netip.ParsePrefix(blackhole); err != nil || !cfg.blackhole.Contains(cfg.podCIDR.Addr()) || cfg.blackhole.Bits() > cfg.podCIDR.Bits() {
		klog.Fatalf("bad --blackhole %q: must be an IPv4 prefix containing --pod-cidr", blackhole)
	}
	if cfg.tokenTTL < 10*time.Minute {
		klog.Fatalf("bad --token-expiration %s: the API server's minimum is 10m", cfg.tokenTTL)
	}
	if cfg.binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			klog.Fatal(err)
		}
		cfg.binDir = exe[:strings.LastIndex(exe, "/")]
	}
	if err := run(cfg); err != nil {
		klog.Fatal(err)
	}
}

func run(cfg config) error {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 100
	caPEM := rc.CAData
	if len(caPEM) == 0 && rc.CAFile != "" {
		if caPEM, err = os.ReadFile(rc.CAFile); err != nil {
			return err
		}
	}
	api, err := url.Parse(rc.Host)
	if err != nil || api.Host == "" {
		return fmt.Errorf("API server URL %q in the kubeconfig: %v", rc.Host, err)
	}
	port := api.Port()
	if port == "" {
		port = "443"
	}
	apiTarget := net.JoinHostPort(api.Hostname(), port)
	apiPort, _ := strconv.Atoi(port)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	netw, err := newNetwork(cfg.bridge, cfg.podCIDR, cfg.blackhole)
	if err != nil {
		return err
	}
	if err := netw.setup(); err != nil {
		return fmt.Errorf("network setup: %w", err)
	}
	if err := os.MkdirAll(cfg.stateDir, 0o755); err != nil {
		return err
	}
	created, err := ensureMountPoint()
	if err != nil {
		return fmt.Errorf("mount point for ServiceAccount tokens: %w", err)
	}
	defer func() { // after shutdown: remove the empty directories made above
		for _, d := range created {
			_ = os.Remove(d)
		}
	}()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	p := &podlet{
		cfg:     cfg,
		client:  client,
		net:     netw,
		images:  defaultImages(cfg.binDir, cfg.imageDir),
		self:    self,
		apiPort: apiPort,
		caPEM:   caPEM,
		pods:    map[string]*podState{},
	}
	p.queue = workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 5*time.Second))
	defer p.shutdown()

	if err := p.registerNode(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	go p.heartbeat(ctx)

	srvErr := make(chan error, 2)
	go func() {
		if err := p.serveKubeletAPI(ctx); err != nil {
			srvErr <- fmt.Errorf("kubelet API: %w", err)
		}
	}()
	go func() {
		if err := p.serveAPIRelay(ctx, apiTarget); err != nil {
			srvErr <- fmt.Errorf("API relay: %w", err)
		}
	}()

	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.Everything())
	p.informer = cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 5*time.Minute, cache.Indexers{})
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			p.queue.Add(key)
		}
	}
	if _, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	go p.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced) {
		return fmt.Errorf("pod informer did not sync")
	}
	for i := 0; i < cfg.workers; i++ {
		go func() {
			for p.processNext(ctx) {
			}
		}()
	}
	klog.Infof("podlet ready: node %s, address %s, pod subnet %s, kubelet API :%d", cfg.nodeName, cfg.podCIDR.Addr(), cfg.podCIDR.Masked(), cfg.kubeletPort)
	select {
	case <-ctx.Done():
		klog.Info("signal received, shutting down")
		return nil
	case err := <-srvErr:
		return err
	}
}

func (p *podlet) processNext(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	requeue, err := p.sync(ctx, key)
	switch {
	case err != nil:
		klog.Warningf("pod %s: %v", key, err)
		p.queue.AddRateLimited(key)
	case requeue > 0:
		p.queue.Forget(key)
		p.queue.AddAfter(key, requeue)
	default:
		p.queue.Forget(key)
	}
	return true
}

// shutdown stops every pod and removes the namespaces and links made for them.
func (p *podlet) shutdown() {
	p.queue.ShutDown()
	p.mu.Lock()
	states := make([]*podState, 0, len(p.pods))
	for _, st := range p.pods {
		states = append(states, st)
	}
	p.pods = map[string]*podState{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, st := range states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.stop(2 * time.Second)
			p.net.teardown(st.sandbox)
		}()
	}
	wg.Wait()
	p.net.cleanupAll()
	klog.Infof("stopped %d pods and removed their network namespaces", len(states))
}

func (p *podlet) registerNode(ctx context.Context) error {
	nodeIP := p.cfg.podCIDR.Addr().String()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.cfg.nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": p.cfg.nodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "loom-podlet",
			},
		},
	}
	nodes := p.client.CoreV1().Nodes()
	existing, err := nodes.Get(ctx, p.cfg.nodeName, metav1.GetOptions{})
	if err != nil {
		if existing, err = nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return err
		}
	} else if len(existing.Spec.Taints) > 0 || existing.Spec.Unschedulable {
		existing.Spec.Taints, existing.Spec.Unschedulable = nil, false
		if existing, err = nodes.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	res := corev1.ResourceList{}
	for k, v := range map[corev1.ResourceName]string{"cpu": "16", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"} {
		res[k] = mustQuantity(v)
	}
	now := metav1.Now()
	existing.Status = corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Phase:       corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP},
			{Type: corev1.NodeHostName, Address: p.cfg.nodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(p.cfg.kubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.36.3-loom-podlet",
			ContainerRuntimeVersion: "loom-podlet://1", OSImage: "loom podlet (local processes)",
		},
		Conditions: nodeConditions(now),
	}
	_, err = nodes.UpdateStatus(ctx, existing, metav1.UpdateOptions{})
	return err
}

func nodeConditions(now metav1.Time) []corev1.NodeCondition {
	c := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return []corev1.NodeCondition{
		c(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
		c(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
		c(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
		c(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
	}
}

func (p *podlet) heartbeat(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := p.client.CoreV1().Nodes().Get(ctx, p.cfg.nodeName, metav1.GetOptions{})
		if err != nil {
			klog.Warningf("heartbeat: %v", err)
			continue
		}
		now := metav1.Now()
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = now
		}
		if _, err := p.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			klog.Warningf("heartbeat: %v", err)
		}
	}
}
