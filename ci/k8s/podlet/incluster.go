package main

// In-cluster API access, as a kubelet gives it: the API server at the node address
// (KUBERNETES_SERVICE_HOST/PORT) and a ServiceAccount token, CA and namespace at
// saMountPath, bind-mounted for the container's process only.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

const saMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// serveAPIRelay forwards nodeIP:port to the API server, which listens on loopback only,
// so pods (which reach nothing but the bridge) can use it and the host exposes no more.
// If something already listens there (an API server bound to 0.0.0.0), pods use that.
func (p *podlet) serveAPIRelay(ctx context.Context, target string) error {
	addr := net.JoinHostPort(p.cfg.podCIDR.Addr().String(), strconv.Itoa(p.apiPort))
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		klog.Infof("API relay: %s is already served; pods use it directly", addr)
		return nil
	}
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); _ = ln.Close() }()
	klog.Infof("API relay: %s -> %s", addr, target)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go relay(c, target)
	}
}

func relay(c net.Conn, target string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		klog.V(2).Infof("API relay: %v", err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}

// apiEnv is the kubelet's environment for the kubernetes Service, pointing at the relay.
func (p *podlet) apiEnv() [][2]string {
	h, port := p.cfg.podCIDR.Addr().String(), strconv.Itoa(p.apiPort)
	url := "tcp://" + net.JoinHostPort(h, port)
	pre := "KUBERNETES_PORT_" + port + "_TCP"
	return [][2]string{
		{"KUBERNETES_SERVICE_HOST", h}, {"KUBERNETES_SERVICE_PORT", port}, {"KUBERNETES_SERVICE_PORT_HTTPS", port},
		{"KUBERNETES_PORT", url}, {pre, url}, {pre + "_PROTO", "tcp"}, {pre + "_PORT", port}, {pre + "_ADDR", h},
	}
}

// ensureMountPoint creates saMountPath on the host if missing (an empty directory to
// mount over) and returns what it created, deepest first, for removal at exit.
func ensureMountPoint() ([]string, error) {
	var created []string
	for d := saMountPath; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	return created, os.MkdirAll(saMountPath, 0o755)
}

func ownsSAMount(spec *corev1.Container) bool {
	for _, m := range spec.VolumeMounts {
		if filepath.Clean(m.MountPath) == saMountPath {
			return true
		}
	}
	return false
}

// serviceAccountDir writes the pod's token, CA and namespace into a directory for its
// containers, or returns "" when no container gets one (automountServiceAccountToken
// false on the pod or, unset there, on the ServiceAccount). A missing ServiceAccount
// is errWaiting.
func (st *podState) serviceAccountDir(ctx context.Context, pod *corev1.Pod) (string, error) {
	if am := pod.Spec.AutomountServiceAccountToken; am != nil && !*am {
		return "", nil
	}
	need := false
	for i := range pod.Spec.Containers {
		need = need || !ownsSAMount(&pod.Spec.Containers[i])
	}
	if !need {
		return "", nil
	}
	name := pod.Spec.ServiceAccountName
	if name == "" {
		name = "default"
	}
	sa, err := st.p.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%w: serviceaccount %q not found in namespace %q (its token goes to %s); the pod starts once it exists",
			errWaiting, name, pod.Namespace, saMountPath)
	}
	if err != nil {
		return "", err
	}
	if am := sa.AutomountServiceAccountToken; pod.Spec.AutomountServiceAccountToken == nil && am != nil && !*am {
		return "", nil
	}
	dir := filepath.Join(st.dir, "serviceaccount")
	st.mu.Lock()
	fresh := st.tokenExpiry.After(time.Now().Add(time.Minute))
	st.mu.Unlock()
	if fresh {
		return dir, nil // written by an earlier, unfinished start
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for f, b := range map[string][]byte{"ca.crt": st.p.caPEM, "namespace": []byte(pod.Namespace)} {
		if err := writeAtomic(dir, f, b, 0o644); err != nil {
			return "", err
		}
	}
	if err := st.writeToken(ctx, pod, name, dir); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("%w: token for serviceaccount %q: %v", errWaiting, name, err)
		}
		return "", err
	}
	return dir, nil
}

// writeToken requests a token (TokenRequest API), bound to the pod, and writes it.
func (st *podState) writeToken(ctx context.Context, pod *corev1.Pod, sa, dir string) error {
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(st.p.cfg.tokenTTL / time.Second))}}
	// The API server binds tokens only to pods that name their account; without the
	// ServiceAccount admission plugin an unnamed "default" stays "", so those get an unbound one.
	if pod.Spec.ServiceAccountName != "" {
		req.Spec.BoundObjectRef = &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := st.p.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := writeAtomic(dir, "token", []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	st.mu.Lock()
	st.tokenIssued, st.tokenExpiry = time.Now(), tr.Status.ExpirationTimestamp.Time
	st.mu.Unlock()
	return nil
}

// refreshToken renews the token once 80% of its lifetime has passed (as the kubelet
// does), retrying every 10 s on errors, until the pod stops.
func (st *podState) refreshToken(pod *corev1.Pod, dir string) {
	defer st.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-st.stopCh; cancel() }()
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	for {
		st.mu.Lock()
		wait := time.Until(st.tokenIssued.Add(st.tokenExpiry.Sub(st.tokenIssued) * 4 / 5))
		st.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := st.writeToken(ctx, pod, sa, dir); err != nil {
			if ctx.Err() != nil {
				return
			}
			klog.Warningf("pod %s: token refresh: %v", st.key, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		}
		klog.V(2).Infof("pod %s: token refreshed", st.key)
	}
}

func writeAtomic(dir, name string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".")
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(f.Name(), mode)
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, name))
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	return err
}

// bindExecMain is `podlet bind-exec SRC DST BIN ARGS...`, run by `ip netns exec` (which
// makes a mount namespace whose mounts do not propagate to the host): it bind-mounts SRC
// read-only on DST and execs BIN.
func bindExecMain(args []string) {
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "podlet bind-exec: "+format+"\n", a...)
		os.Exit(127)
	}
	if len(args) < 3 {
		fail("usage: podlet bind-exec SRC DST BIN [ARGS...]")
	}
	// The parent is the podlet (`ip` exec'd this process): its namespace is the host's.
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	host, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err1 != nil || err2 != nil || self == host {
		fail("refusing to mount: not in a mount namespace of its own (%s, %v, %v)", self, err1, err2)
	}
	src, dst := args[0], args[1]
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		fail("bind-mount %s on %s: %v", src, dst, err)
	}
	if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		fail("remount %s read-only: %v", dst, err)
	}
	err := syscall.Exec(args[2], args[2:], os.Environ())
	fail("exec %s: %v", args[2], err)
}

func ptr[T any](v T) *T { return &v }
