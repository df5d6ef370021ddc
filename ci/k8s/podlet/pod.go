package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// errWaiting marks a pod that cannot start yet (a Secret or ConfigMap it needs is
// missing); the pod is retried, as a kubelet would.
var errWaiting = errors.New("waiting")

type podState struct {
	key     string
	uid     types.UID
	dir     string
	sandbox *sandbox
	p       *podlet

	mu         sync.Mutex
	started    bool
	startTime  metav1.Time
	waitReason string // why containers are not started yet
	waitMsg    string
	containers []*container
	stopping   bool
	stopCh     chan struct{}
	wg         sync.WaitGroup

	tokenIssued, tokenExpiry time.Time // ServiceAccount token (see incluster.go)
}

type container struct {
	spec     corev1.Container
	bin      string
	args     []string
	env      []string
	saDir    string // bind-mounted at saMountPath when set
	logPath  string
	probe    probeTarget
	mu       sync.Mutex
	pid      int
	running  bool
	ready    bool
	restarts int32
	started  metav1.Time
	lastExit *corev1.ContainerStateTerminated
	failure  string // set when the container cannot run at all (unmapped image)
}

type probeTarget struct {
	port    int  // port to probe for readiness; 0 = ready once started
	http    bool // GET path instead of a bare dial; 2xx and 3xx are ready
	https   bool
	path    string
	headers []corev1.HTTPHeader
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// sync reconciles one pod key; the duration asks for a later retry.
func (p *podlet) sync(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := p.informer.GetIndexer().GetByKey(key)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	st := p.pods[key]
	p.mu.Unlock()
	if !exists {
		if st != nil {
			p.remove(key, st, 0)
		}
		return 0, nil
	}
	pod := obj.(*corev1.Pod)
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp != nil {
			return 0, nil
		}
		return 0, p.bind(ctx, pod)
	}
	if pod.Spec.NodeName != p.cfg.nodeName {
		if st != nil {
			p.remove(key, st, 0)
		}
		return 0, nil
	}
	if st != nil && st.uid != pod.UID { // replaced by a pod of the same name
		p.remove(key, st, 0)
		st = nil
	}
	if pod.DeletionTimestamp != nil {
		grace := 2 * time.Second
		if g := pod.DeletionGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < grace {
			grace = time.Duration(*g) * time.Second
		}
		if st != nil {
			p.remove(key, st, grace)
		}
		zero := int64(0)
		err := p.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, err
		}
		return 0, nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	if st == nil {
		sb, err := p.net.allocate()
		if err != nil {
			return 0, err
		}
		if err := p.net.create(sb); err != nil {
			p.net.teardown(sb)
			return 0, err
		}
		st = &podState{
			key: key, uid: pod.UID, sandbox: sb, p: p, stopCh: make(chan struct{}),
			dir:       filepath.Join(p.cfg.stateDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
			startTime: metav1.Now(),
		}
		p.mu.Lock()
		p.pods[key] = st
		p.mu.Unlock()
		klog.Infof("pod %s: sandbox %s, IP %s", key, sb.netns, sb.ip)
	}
	var requeue time.Duration
	if !st.isStarted() {
		if err := st.start(ctx, pod); err != nil {
			if !errors.Is(err, errWaiting) {
				_ = p.reportStatus(ctx, pod, st) // shows the error as the waiting message
				return 0, err
			}
			requeue = 2 * time.Second
		}
	}
	return requeue, p.reportStatus(ctx, pod, st)
}

func (p *podlet) bind(ctx context.Context, pod *corev1.Pod) error {
	err := p.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: p.cfg.nodeName},
	}, metav1.CreateOptions{})
	if err != nil && (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) {
		return nil // already bound or gone; the informer will tell
	}
	return err
}

func (p *podlet) remove(key string, st *podState, grace time.Duration) {
	p.mu.Lock()
	if p.pods[key] == st {
		delete(p.pods, key)
	}
	p.mu.Unlock()
	st.stop(grace)
	p.net.teardown(st.sandbox)
	_ = os.RemoveAll(st.dir)
	klog.Infof("pod %s: stopped, sandbox %s removed", key, st.sandbox.netns)
}

func (st *podState) isStarted() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.started
}

func (st *podState) setWaiting(reason, msg string) {
	st.mu.Lock()
	st.waitReason, st.waitMsg = reason, msg
	st.mu.Unlock()
}

// start materialises volumes and env and launches every container.
func (st *podState) start(ctx context.Context, pod *corev1.Pod) error {
	volDirs, err := st.materializeVolumes(ctx, pod)
	if err != nil {
		st.setWaiting("ContainerCreating", err.Error())
		return err
	}
	saDir, err := st.serviceAccountDir(ctx, pod)
	if err != nil {
		st.setWaiting("CreateContainerConfigError", err.Error())
		return err
	}
	var cs []*container
	for i := range pod.Spec.Containers {
		c, err := st.prepareContainer(ctx, pod, &pod.Spec.Containers[i], volDirs, saDir)
		if err != nil {
			st.setWaiting("CreateContainerConfigError", err.Error())
			return err
		}
		cs = append(cs, c)
	}
	st.mu.Lock()
	st.containers, st.started, st.waitReason, st.waitMsg = cs, true, "", ""
	st.mu.Unlock()
	if saDir != "" {
		st.wg.Add(1)
		go st.refreshToken(pod, saDir)
	}
	for _, c := range cs {
		if c.failure != "" {
			klog.Warningf("pod %s container %s: %s", st.key, c.spec.Name, c.failure)
			continue
		}
		st.wg.Add(1)
		go st.supervise(c)
	}
	return nil
}

func (st *podState) materializeVolumes(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	core := st.p.client.CoreV1()
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(st.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		dirs[v.Name] = dir
		var data map[string][]byte
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			s, err := core.Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && v.Secret.Optional != nil && *v.Secret.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: secret %q for volume %q: %v", errWaiting, v.Secret.SecretName, v.Name, err)
			}
			data, items = s.Data, v.Secret.Items
		case v.ConfigMap != nil:
			cm, err := core.ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: configmap %q for volume %q: %v", errWaiting, v.ConfigMap.Name, v.Name, err)
			}
			data = map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
			items = v.ConfigMap.Items
		case v.EmptyDir != nil:
			continue
		default:
			klog.Warningf("pod %s: volume %q of an unsupported type is an empty directory", st.key, v.Name)
			continue
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				return nil, fmt.Errorf("%w: key %q missing for volume %q", errWaiting, it.Key, v.Name)
			}
			path := filepath.Join(dir, filepath.Clean("/"+it.Path))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return dirs, nil
}

func (st *podState) prepareContainer(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, volDirs map[string]string, saDir string) (*container, error) {
	c := &container{spec: *spec, logPath: filepath.Join(st.dir, "logs", spec.Name+".log")}
	if err := os.MkdirAll(filepath.Dir(c.logPath), 0o755); err != nil {
		return nil, err
	}
	img, ok := st.p.images.lookup(spec.Image)
	if !ok {
		c.failure = fmt.Sprintf("image %q has no local binary (podlet maps the conformance suite's images, and others to an executable named after the repository's last element in --image-dir %q)", spec.Image, st.p.cfg.imageDir)
		return c, nil
	}
	c.bin = img.bin
	if !ownsSAMount(spec) {
		c.saDir = saDir
	}

	// Mount paths become per-pod directories: rewrite any env or arg value that
	// starts with one (longest first), instead of bind mounts.
	type mount struct{ path, dir string }
	var mounts []mount
	for _, m := range spec.VolumeMounts {
		if d, ok := volDirs[m.Name]; ok {
			mounts = append(mounts, mount{strings.TrimSuffix(m.MountPath, "/"), filepath.Join(d, m.SubPath)})
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].path) > len(mounts[j].path) })
	rewrite := func(s string) string {
		for _, m := range mounts {
			if s == m.path || strings.HasPrefix(s, m.path+"/") {
				return m.dir + s[len(m.path):]
			}
		}
		return s
	}

	env, err := st.resolveEnv(ctx, pod, spec)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	c.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + pod.Name}
	for _, kv := range st.p.apiEnv() {
		vars[kv[0]] = kv[1]
		c.env = append(c.env, kv[0]+"="+kv[1])
	}
	for _, kv := range env {
		v := rewrite(expand(kv[1], vars))
		vars[kv[0]] = v
		c.env = append(c.env, kv[0]+"="+v)
	}
	args := append(append([]string{}, img.args...), spec.Args...)
	if len(spec.Command) > 0 {
		klog.Warningf("pod %s container %s: command %q ignored; running %s", st.key, spec.Name, spec.Command, img.bin)
	}
	for _, a := range args {
		c.args = append(c.args, rewrite(expand(a, vars)))
	}
	c.probe = readinessTarget(spec, vars, img)
	return c, nil
}

// resolveEnv returns env pairs in order: envFrom first, then env.
func (st *podState) resolveEnv(ctx context.Context, pod *corev1.Pod, spec *corev1.Container) ([][2]string, error) {
	core := st.p.client.CoreV1()
	var out [][2]string
	for _, ef := range spec.EnvFrom {
		switch {
		case ef.SecretRef != nil:
			s, err := core.Secrets(pod.Namespace).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: envFrom secret %q: %v", errWaiting, ef.SecretRef.Name, err)
			}
			for _, k := range sortedKeys(s.Data) {
				out = append(out, [2]string{ef.Prefix + k, string(s.Data[k])})
			}
		case ef.ConfigMapRef != nil:
			cm, err := core.ConfigMaps(pod.Namespace).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: envFrom configmap %q: %v", errWaiting, ef.ConfigMapRef.Name, err)
			}
			for _, k := range sortedKeys(cm.Data) {
				out = append(out, [2]string{ef.Prefix + k, cm.Data[k]})
			}
		}
	}
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			out = append(out, [2]string{e.Name, e.Value})
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			v, err := st.fieldRef(pod, vf.FieldRef.FieldPath)
			if err != nil {
				return nil, err
			}
			out = append(out, [2]string{e.Name, v})
		case vf.SecretKeyRef != nil:
			s, err := core.Secrets(pod.Namespace).Get(ctx, vf.SecretKeyRef.Name, metav1.GetOptions{})
			b, ok := []byte(nil), false
			if err == nil {
				b, ok = s.Data[vf.SecretKeyRef.Key]
			}
			if !ok {
				if vf.SecretKeyRef.Optional != nil && *vf.SecretKeyRef.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: secret %q key %q for env %s (%v)", errWaiting, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, e.Name, err)
			}
			out = append(out, [2]string{e.Name, string(b)})
		case vf.ConfigMapKeyRef != nil:
			cm, err := core.ConfigMaps(pod.Namespace).Get(ctx, vf.ConfigMapKeyRef.Name, metav1.GetOptions{})
			v, ok := "", false
			if err == nil {
				v, ok = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			if !ok {
				if vf.ConfigMapKeyRef.Optional != nil && *vf.ConfigMapKeyRef.Optional {
					continue
				}
				return nil, fmt.Errorf("%w: configmap %q key %q for env %s (%v)", errWaiting, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, e.Name, err)
			}
			out = append(out, [2]string{e.Name, v})
		case vf.ResourceFieldRef != nil:
			out = append(out, [2]string{e.Name, "1"})
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (st *podState) fieldRef(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return st.sandbox.ip.String(), nil
	case "status.hostIP", "status.hostIPs":
		return st.p.cfg.podCIDR.Addr().String(), nil
	}
	for _, pre := range []string{"metadata.labels", "metadata.annotations"} {
		if strings.HasPrefix(path, pre+"['") && strings.HasSuffix(path, "']") {
			k := path[len(pre)+2 : len(path)-2]
			if pre == "metadata.labels" {
				return pod.Labels[k], nil
			}
			return pod.Annotations[k], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// expand does Kubernetes' $(VAR) expansion ($$ escapes).
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			if s[i+1] == '$' {
				b.WriteByte('$')
				i++
				continue
			}
			if s[i+1] == '(' {
				if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
					name := s[i+2 : i+2+j]
					if v, ok := vars[name]; ok {
						b.WriteString(v)
						i += j + 2
						continue
					}
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readinessTarget(spec *corev1.Container, vars map[string]string, img image) probeTarget {
	port := func(p intstr.IntOrString) int {
		if p.Type == intstr.Int {
			return p.IntValue()
		}
		for _, cp := range spec.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort)
			}
		}
		return 0
	}
	if rp := spec.ReadinessProbe; rp != nil {
		switch {
		case rp.HTTPGet != nil:
			g := rp.HTTPGet
			return probeTarget{port: port(g.Port), http: true, https: g.Scheme == corev1.URISchemeHTTPS, path: g.Path, headers: g.HTTPHeaders}
		case rp.TCPSocket != nil:
			return probeTarget{port: port(rp.TCPSocket.Port)}
		}
	}
	if img.probe != nil {
		return img.probe(vars)
	}
	for _, cp := range spec.Ports {
		if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
			return probeTarget{port: int(cp.ContainerPort)}
		}
	}
	return probeTarget{}
}

// supervise runs a container, restarting it with backoff (restartPolicy Always).
func (st *podState) supervise(c *container) {
	defer st.wg.Done()
	backoff := time.Second
	for {
		started := time.Now()
		err := st.runOnce(c)
		st.mu.Lock()
		stopping := st.stopping
		st.mu.Unlock()
		if stopping {
			return
		}
		klog.Warningf("pod %s container %s exited: %v; restarting in %s", st.key, c.spec.Name, err, backoff)
		st.p.queue.Add(st.key)
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-st.stopCh:
			return
		case <-time.After(backoff):
		}
		if backoff < 16*time.Second {
			backoff *= 2
		}
		c.mu.Lock()
		c.restarts++
		c.mu.Unlock()
	}
}

func (st *podState) runOnce(c *container) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	stdout, stderr := newCRIWriter(logf, "stdout"), newCRIWriter(logf, "stderr")
	argv := []string{"netns", "exec", st.sandbox.netns}
	if c.saDir != "" {
		argv = append(argv, st.p.self, "bind-exec", c.saDir, saMountPath)
	}
	cmd := exec.Command("ip", append(append(argv, c.bin), c.args...)...)
	cmd.Env = c.env
	cmd.Dir = st.dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.pid, c.running, c.ready, c.started = cmd.Process.Pid, true, false, metav1.Now()
	c.mu.Unlock()
	klog.Infof("pod %s container %s: pid %d: %s %s", st.key, c.spec.Name, cmd.Process.Pid, c.bin, strings.Join(c.args, " "))
	done := make(chan struct{})
	go st.probe(c, done)
	err = cmd.Wait()
	close(done)
	stdout.flush()
	stderr.flush()
	code := int32(-1)
	if cmd.ProcessState != nil {
		code = int32(cmd.ProcessState.ExitCode())
	}
	c.mu.Lock()
	c.running, c.ready, c.pid = false, false, 0
	c.lastExit = &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error", StartedAt: c.started, FinishedAt: metav1.Now()}
	c.mu.Unlock()
	return err
}

func (st *podState) probe(c *container, done chan struct{}) {
	addr := net.JoinHostPort(st.sandbox.ip.String(), strconv.Itoa(c.probe.port))
	every := 200 * time.Millisecond
	for {
		ok := false
		if c.probe.port == 0 {
			select { // no port to check: ready once it has stayed up briefly
			case <-done:
				return
			case <-time.After(300 * time.Millisecond):
			}
			ok = true
		} else {
			ok = probeOnce(c.probe, addr)
		}
		if ok {
			c.mu.Lock()
			c.ready = c.running
			c.mu.Unlock()
			st.p.queue.Add(st.key)
			return
		}
		select {
		case <-done:
			return
		case <-time.After(every):
		}
		if c.probe.http && every < time.Second { // spares the server's request log
			every += every / 2
		}
	}
}

var probeClient = &http.Client{
	Timeout:       time.Second,
	Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func probeOnce(t probeTarget, addr string) bool {
	if !t.http {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}
	u := "http://" + addr
	if t.https {
		u = "https://" + addr
	}
	req, err := http.NewRequest(http.MethodGet, u+"/"+strings.TrimPrefix(t.path, "/"), nil)
	if err != nil {
		return false
	}
	for _, h := range t.headers {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// stop ends every container: SIGTERM to its process group, SIGKILL after grace.
func (st *podState) stop(grace time.Duration) {
	st.mu.Lock()
	if st.stopping {
		st.mu.Unlock()
		st.wg.Wait()
		return
	}
	st.stopping = true
	close(st.stopCh)
	cs := st.containers
	st.mu.Unlock()
	signal := func(sig syscall.Signal) {
		for _, c := range cs {
			c.mu.Lock()
			if c.pid > 0 {
				_ = syscall.Kill(-c.pid, sig)
			}
			c.mu.Unlock()
		}
	}
	signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { st.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		signal(syscall.SIGKILL)
		<-done
	}
}

// reportStatus writes the pod status if it differs from what the API has.
func (p *podlet) reportStatus(ctx context.Context, pod *corev1.Pod, st *podState) error {
	want := st.status(pod)
	if fingerprint(&pod.Status) == fingerprint(want) {
		return nil
	}
	np := pod.DeepCopy()
	// Keep transition times of conditions whose status did not change.
	for i := range want.Conditions {
		for _, old := range pod.Status.Conditions {
			if old.Type == want.Conditions[i].Type && old.Status == want.Conditions[i].Status {
				want.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	np.Status = *want
	_, err := p.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsConflict(err) {
		// The informer will bring the newer object; try again with it.
		if key, kerr := cache.MetaNamespaceKeyFunc(pod); kerr == nil {
			p.queue.AddAfter(key, 100*time.Millisecond)
		}
		return nil
	}
	return err
}

func (st *podState) status(pod *corev1.Pod) *corev1.PodStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := metav1.Now()
	nodeIP := st.p.cfg.podCIDR.Addr().String()
	s := &corev1.PodStatus{
		Phase:     corev1.PodPending,
		HostIP:    nodeIP,
		HostIPs:   []corev1.HostIP{{IP: nodeIP}},
		PodIP:     st.sandbox.ip.String(),
		PodIPs:    []corev1.PodIP{{IP: st.sandbox.ip.String()}},
		StartTime: &st.startTime,
		QOSClass:  pod.Status.QOSClass,
	}
	allReady := st.started
	byName := map[string]*container{}
	for _, c := range st.containers {
		byName[c.spec.Name] = c
	}
	for _, spec := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: spec.Name, Image: spec.Image, ImageID: "loom-podlet://" + spec.Image}
		c := byName[spec.Name]
		if c == nil {
			reason, msg := st.waitReason, st.waitMsg
			if reason == "" {
				reason = "ContainerCreating"
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
			allReady = false
		} else {
			c.mu.Lock()
			cs.RestartCount = c.restarts
			cs.LastTerminationState.Terminated = c.lastExit
			switch {
			case c.failure != "":
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImageNotMapped", Message: c.failure}
			case c.running:
				cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.started}
				cs.ContainerID = fmt.Sprintf("loom-podlet://%d", c.pid)
				cs.Ready = c.ready
				t := true
				cs.Started = &t
			default:
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
				if c.lastExit != nil {
					cs.State.Waiting.Message = fmt.Sprintf("exited with code %d", c.lastExit.ExitCode)
				}
			}
			if !cs.Ready {
				allReady = false
			}
			c.mu.Unlock()
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	if st.started {
		s.Phase = corev1.PodRunning
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: now}
		if ok {
			c.Status = corev1.ConditionTrue
		}
		return c
	}
	s.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, true),
		cond(corev1.PodInitialized, true),
		cond(corev1.PodReady, allReady),
		cond(corev1.ContainersReady, allReady),
		cond(corev1.PodScheduled, true),
	}
	return s
}

func fingerprint(s *corev1.PodStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|", s.Phase, s.PodIP, s.HostIP)
	conds := map[string]string{}
	for _, c := range s.Conditions {
		conds[string(c.Type)] = string(c.Status)
	}
	for _, k := range sortedKeys(conds) {
		fmt.Fprintf(&b, "%s=%s,", k, conds[k])
	}
	for _, c := range s.ContainerStatuses {
		state := "?"
		switch {
		case c.State.Running != nil:
			state = "running"
		case c.State.Waiting != nil:
			state = "waiting:" + c.State.Waiting.Reason + ":" + c.State.Waiting.Message
		case c.State.Terminated != nil:
			state = "terminated"
		}
		fmt.Fprintf(&b, "|%s,%v,%d,%s,%s", c.Name, c.Ready, c.RestartCount, state, c.ContainerID)
	}
	return b.String()
}
